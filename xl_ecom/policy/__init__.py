"""The plan as data: load xl_ecom/policy/plan.yaml into read-only objects.

A revised plan is new data: add a dated value under ``values`` (or point XL_ECOM_PLAN at another
file with the same structure) and the engine evaluates as of the policy date.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from xl_ecom.common.errors import InputError, PlanError
from xl_ecom.policy.boundaries import boundary

PLAN_PATH = Path(__file__).with_name("plan.yaml")


UNITS = ("元", "比例", "系数", "人", "个", "年")
INPUT_KINDS = ("money", "count", "years", "rate", "choice")


def _keys(raw, where: str, required: tuple = (), optional: tuple = ()) -> dict:
    """Check a mapping of the plan: every required key present, no key outside the allowed ones."""
    if not isinstance(raw, dict):
        raise PlanError(f"{where}：应为映射（键: 值），实为“{raw!r}”")
    allowed = (*required, *optional)
    for key in raw:
        if key not in allowed:
            raise PlanError(f"{where}：未知键“{key}”（可用：{'、'.join(map(str, allowed))}）")
    for key in required:
        if key not in raw:
            raise PlanError(f"{where}：缺少键“{key}”")
    return raw


def _typed(raw: dict, key: str, types, where: str, what: str):
    value = raw.get(key)
    if value is not None and (not isinstance(value, types) or (isinstance(value, bool) and bool not in _as_tuple(types))):
        raise PlanError(f"{where}：键“{key}”应为{what}，实为“{value!r}”")
    return value


def _as_tuple(types) -> tuple:
    return types if isinstance(types, tuple) else (types,)


@dataclass(frozen=True)
class Param:
    """A dated parameter: {word, values: {date: value}, unit, reference}; a cap may be cumulative
    (``cumulative: true``) and then declares the column grouping it (``group_by: county``)."""

    values: tuple[tuple[dt.date, Any], ...]
    word: str | None = None
    reference: str | None = None
    cumulative: bool = False
    unit: str | None = None
    group_by: str | None = None
    description: str | None = None

    _KEYS = ("word", "reference", "description")
    _CAP_KEYS = ("cumulative", "group_by")

    @classmethod
    def parse(cls, raw: dict, where: str, cap: bool = False) -> Param:
        _keys(raw, where, ("values", "unit"), cls._KEYS + (cls._CAP_KEYS if cap else ()))
        if not isinstance(raw["values"], dict) or not raw["values"]:
            raise PlanError(f"{where}：键“values”应为 {{生效日期: 数值}}，实为“{raw['values']!r}”")
        values = []
        for since, value in raw["values"].items():
            if not isinstance(since, dt.date):
                raise PlanError(f"{where}：生效日期“{since}”不是日期")
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise PlanError(f"{where}：键“values”中{since}的值应为数值，实为“{value!r}”")
            values.append((since, value))
        values.sort()
        word = _typed(raw, "word", str, where, "界限用语")
        if word is not None:
            boundary(word)  # fail early on an unknown word
        _typed(raw, "reference", str, where, "原文短语")
        _typed(raw, "description", str, where, "文字")
        unit = raw["unit"]
        if unit not in UNITS:
            raise PlanError(f"{where}：键“unit”的单位“{unit}”无效（可用：{'、'.join(UNITS)}）")
        cumulative = _typed(raw, "cumulative", bool, where, "true/false") or False
        group_by = _typed(raw, "group_by", str, where, "列名")
        if group_by and not cumulative:
            raise PlanError(f"{where}：键“group_by”只用于累计上限（cumulative: true）")
        return cls(tuple(values), word, raw.get("reference"), cumulative, unit, group_by, raw.get("description"))

    def at(self, on: dt.date):
        chosen = None
        for since, value in self.values:
            if since <= on:
                chosen = value
        if chosen is None:
            raise InputError(f"政策日期“{on.isoformat()}”早于该参数的生效日期“{self.values[0][0].isoformat()}”")
        return chosen


@dataclass(frozen=True)
class Measure:
    id: str
    task_id: str
    task_title: str
    source_label: str
    text: str
    lead: str
    cooperating: tuple[str, ...]
    deadline: dt.date | None
    revision_basis: str | None
    note: str | None

    @property
    def units(self) -> tuple[str, ...]:
        return (self.lead, *self.cooperating)

    def role_of(self, unit: str) -> str | None:
        if unit == self.lead:
            return "牵头"
        if unit in self.cooperating:
            return "配合"
        return None


@dataclass(frozen=True)
class Target:
    id: str
    clause: str
    name: str
    text: str
    word: str
    value: Any
    unit: str
    deadline: dt.date | None
    measure: str | None
    lead: str | None
    cooperating: tuple[str, ...]
    note: str | None
    actual: dict | None = None  # {table, column}: the actual figure is the sum of that money column


@dataclass(frozen=True)
class InputSpec:
    name: str
    label: str
    kind: str
    optional: bool = False
    default: Any = None
    default_input: str | None = None
    choices: tuple[str, ...] = ()


@dataclass(frozen=True, eq=False)
class Rule:
    id: str
    clause: str
    measure: str
    name: str
    text: str
    payment: str
    inputs: tuple[InputSpec, ...]
    switch: str | None
    variants: dict  # choice value -> body dict (parsed: conditions/amount/cap with Param objects)
    note: str | None = None
    paid_per: dict | None = None  # {group: county, counts: {input: {table, column, value, target}}}

    @property
    def input_names(self) -> tuple[str, ...]:
        return tuple(i.name for i in self.inputs)

    def input(self, name: str) -> InputSpec:
        for spec in self.inputs:
            if spec.name == name:
                return spec
        raise KeyError(name)

    @property
    def cumulative(self) -> bool:
        return any(b.get("cap") is not None and b["cap"].cumulative for b in self.variants.values())

    @property
    def cumulative_by(self) -> str | None:
        """The column a cumulative cap is grouped by (declared in the plan as ``group_by``)."""
        for b in self.variants.values():
            if b.get("cap") is not None and b["cap"].cumulative and b["cap"].group_by:
                return b["cap"].group_by
        return None


@dataclass(frozen=True, eq=False)
class Plan:
    meta: dict
    departments: tuple[dict, ...]
    annex_columns: tuple[dict, ...]
    annex_rows: tuple[dict, ...]
    targets: tuple[Target, ...]
    tasks: tuple[dict, ...]
    measures: tuple[Measure, ...]
    rules: dict[str, Rule] = field(default_factory=dict)

    @property
    def counties(self) -> tuple[str, ...]:
        return tuple(r["county"] for r in self.annex_rows)

    @property
    def unit_names(self) -> tuple[str, ...]:
        return tuple(d["name"] for d in self.departments)

    def target(self, target_id: str) -> Target:
        for t in self.targets:
            if t.id == target_id:
                return t
        raise KeyError(target_id)

    def measure(self, measure_id: str) -> Measure:
        for m in self.measures:
            if m.id == measure_id:
                return m
        raise KeyError(measure_id)

    def measures_for(self, unit: str) -> list[Measure]:
        return [m for m in self.measures if m.role_of(unit)]

    def rules_for_measure(self, measure_id: str) -> list[Rule]:
        return [r for r in self.rules.values() if r.measure == measure_id]

    def targets_for_measure(self, measure_id: str) -> list[Target]:
        return [t for t in self.targets if t.measure == measure_id]

    def rule_units(self, rule: Rule) -> tuple[str, ...]:
        return self.measure(rule.measure).units

    def annex_value(self, county: str, column_key: str):
        for row in self.annex_rows:
            if row["county"] == county:
                return row[column_key]
        raise KeyError(county)

    def clause_ids(self) -> list[str]:
        return [t["id"] for t in self.tasks]


_AMOUNT_KEYS = {
    # type: (required keys besides type, optional keys)
    "rate": (("basis", "rate"), ("rate_input",)),
    "fixed": (("amount",), ()),
    "tiers": (("basis", "tiers"), ()),
    "per_unit": (("units",), ()),
    "factor": (("basis", "factor"), ()),
}


#: the units a parameter compared with (or multiplying) an input of each kind may declare
_KIND_UNITS = {"money": ("元",), "count": ("人", "个"), "years": ("年",), "rate": ("比例",)}


def _unit_for(param: Param, kind: str | None, where: str) -> Param:
    allowed = _KIND_UNITS.get(kind or "", ())
    if allowed and param.unit not in allowed:
        raise PlanError(f"{where}：键“unit”为“{param.unit}”，与输入类型不符（应为：{'、'.join(allowed)}）")
    return param


def _input_ref(name, inputs: tuple, where: str, key: str) -> str:
    if not isinstance(name, str) or name not in inputs:
        raise PlanError(f"{where}：键“{key}”引用的输入“{name}”不在 inputs 中（可用：{'、'.join(inputs)}）")
    return name


def _parse_body(raw: dict, where: str, inputs: tuple = (), kinds: dict | None = None) -> dict:
    kinds = kinds or {}
    _keys(raw, where, ("amount",), ("conditions", "cap"))
    body: dict = {"conditions": [], "amount": None, "cap": None}
    conditions = raw.get("conditions") or []
    if not isinstance(conditions, list):
        raise PlanError(f"{where}：键“conditions”应为列表")
    for i, cond in enumerate(conditions):
        w = f"{where} 门槛{i + 1}"
        _keys(cond, w, ("input", "word", "threshold"))
        boundary(cond["word"])
        name = _input_ref(cond["input"], inputs, w, "input")
        threshold = _unit_for(Param.parse(cond["threshold"], w), kinds.get(name), w)
        body["conditions"].append({"input": name, "word": cond["word"], "threshold": threshold})
    amount = dict(_keys(raw["amount"], f"{where} amount", ("type",), ("basis", "rate", "rate_input", "amount", "tiers", "units", "factor")))
    kind = amount["type"]
    if kind not in _AMOUNT_KEYS:
        raise PlanError(f"{where}：未知计算方式“{kind}”（可用：{'、'.join(_AMOUNT_KEYS)}）")
    req, opt = _AMOUNT_KEYS[kind]
    _keys(amount, f"{where} amount（{kind}）", ("type", *req), opt)
    if kind in ("rate", "factor"):
        w = f"{where} {'比例' if kind == 'rate' else '系数'}"
        amount[kind] = _unit_for(Param.parse(amount[kind], w), "rate" if kind == "rate" else None, w)
        if kind == "factor" and amount[kind].unit != "系数":
            raise PlanError(f"{w}：键“unit”应为“系数”")
        basis = amount["basis"]
        basis = tuple(basis) if isinstance(basis, list) else (basis,)
        amount["basis"] = tuple(_input_ref(b, inputs, where, "basis") for b in basis)
        if amount.get("rate_input") is not None:
            _input_ref(amount["rate_input"], inputs, where, "rate_input")
    elif kind == "fixed":
        amount["amount"] = _unit_for(Param.parse(amount["amount"], f"{where} 定额"), "money", f"{where} 定额")
    elif kind == "tiers":
        _input_ref(amount["basis"], inputs, where, "basis")
        amount["tiers"] = tuple(
            {
                "word": _keys(t, f"{where} 分档{i + 1}", ("word", "threshold", "amount"))["word"],
                "threshold": _unit_for(Param.parse(t["threshold"], f"{where} 分档门槛"), kinds.get(amount["basis"]), f"{where} 分档门槛"),
                "amount": _unit_for(Param.parse(t["amount"], f"{where} 分档金额"), "money", f"{where} 分档金额"),
            }
            for i, t in enumerate(amount["tiers"])
        )
        for t in amount["tiers"]:
            boundary(t["word"])
    else:  # per_unit
        amount["units"] = tuple(
            {
                "input": _input_ref(_keys(u, f"{where} 单价{i + 1}", ("input", "amount"))["input"], inputs, where, "input"),
                "amount": _unit_for(Param.parse(u["amount"], f"{where} 单价"), "money", f"{where} 单价"),
            }
            for i, u in enumerate(amount["units"])
        )
    body["amount"] = amount
    if raw.get("cap") is not None:
        body["cap"] = _unit_for(Param.parse(raw["cap"], f"{where} 上限", cap=True), "money", f"{where} 上限")
    return body


_INPUT_KEYS = (("name", "label", "kind"), ("optional", "default", "default_input", "choices", "ceiling_of"))
_RULE_KEYS = (("clause", "measure", "name", "text", "inputs"), ("payment", "body", "switch", "variants", "note", "paid_per"))


def _parse_paid_per(raw, where: str, inputs: tuple) -> dict | None:
    """A rule paid per county from counts of input rows: {group, counts: {input: {table, column, value, target}}}."""
    if raw is None:
        return None
    _keys(raw, where, ("group", "counts"))
    counts = {}
    for name, c in _keys(raw["counts"], f"{where} counts", (), inputs).items():
        _keys(c, f"{where} counts {name}", ("table", "column", "value", "target"))
        counts[name] = dict(c)
    return {"group": raw["group"], "counts": counts}


def _parse_rule(rule_id: str, raw: dict) -> Rule:
    where = f"规则 {rule_id}"
    _keys(raw, where, *_RULE_KEYS)
    for key in ("clause", "measure", "name", "text"):
        _typed(raw, key, str, where, "文字")
    if not isinstance(raw["inputs"], list) or not raw["inputs"]:
        raise PlanError(f"{where}：键“inputs”应为非空列表")
    specs = []
    for n, i in enumerate(raw["inputs"]):
        w = f"{where} 输入{n + 1}"
        _keys(i, w, *_INPUT_KEYS)
        if i["kind"] not in INPUT_KINDS:
            raise PlanError(f"{w}：键“kind”的类型“{i['kind']}”无效（可用：{'、'.join(INPUT_KINDS)}）")
        _typed(i, "optional", bool, w, "true/false")
        _typed(i, "choices", list, w, "列表")
        specs.append(
            InputSpec(
                name=i["name"],
                label=i["label"],
                kind=i["kind"],
                optional=bool(i.get("optional", False)),
                default=i.get("default"),
                default_input=i.get("default_input"),
                choices=tuple(i.get("choices", ()) or ()),
            )
        )
    inputs = tuple(specs)
    names = tuple(i.name for i in inputs)
    kinds = {i.name: i.kind for i in inputs}
    if ("body" in raw) == ("variants" in raw):
        raise PlanError(f"{where}：应有键“body”或“variants”之一")
    if "variants" in raw:
        if "switch" not in raw:
            raise PlanError(f"{where}：有 variants 时缺少键“switch”")
        _input_ref(raw["switch"], names, where, "switch")
        declared = _keys(raw["variants"], f"{where} variants", (), tuple(raw["variants"]))
        variants = {str(k): _parse_body(v, f"{where}/{k}", names, kinds) for k, v in declared.items()}
    else:
        if "switch" in raw:
            raise PlanError(f"{where}：键“switch”只用于 variants")
        variants = {"": _parse_body(raw["body"], where, names, kinds)}
    return Rule(
        id=rule_id,
        clause=raw["clause"],
        measure=raw["measure"],
        name=raw["name"],
        text=raw["text"],
        payment=raw.get("payment", ""),
        inputs=inputs,
        switch=raw.get("switch"),
        variants=variants,
        note=raw.get("note"),
        paid_per=_parse_paid_per(raw.get("paid_per"), f"{where} paid_per", names),
    )


_TOP_KEYS = (("meta", "departments", "annex", "targets", "tasks", "rules"), ())
_TARGET_KEYS = (("id", "clause", "name", "text", "word", "value", "unit"), ("measure", "deadline", "departments", "note", "actual"))
_TASK_KEYS = (("id", "title", "measures"), ("source_label", "revision_basis", "note"))
_MEASURE_KEYS = (("id", "text", "lead"), ("cooperating", "deadline", "note"))


def parse_plan(data: dict, source: str | os.PathLike | None = None) -> Plan:
    """The plan from its YAML data.  Any unknown or missing key, or a value of the wrong type,
    raises a PlanError naming the file, the rule (or target/measure) and the key."""
    name = Path(source).name if source else PLAN_PATH.name
    try:
        return _parse_plan(data)
    except PlanError as exc:
        raise PlanError(f"方案文件“{name}”，{exc}") from None
    except (KeyError, TypeError, AttributeError) as exc:
        raise PlanError(f"方案文件“{name}”结构有误：{exc!r}") from None


def _parse_plan(data: dict) -> Plan:
    _keys(data, "顶层", *_TOP_KEYS)
    measures = []
    for task in data["tasks"]:
        _keys(task, f"任务 {task.get('id', '?')}", *_TASK_KEYS)
        for m in task["measures"]:
            _keys(m, f"措施 {m.get('id', '?')}", *_MEASURE_KEYS)
            measures.append(
                Measure(
                    id=m["id"],
                    task_id=task["id"],
                    task_title=task["title"],
                    source_label=task.get("source_label", ""),
                    text=m["text"],
                    lead=m["lead"],
                    cooperating=tuple(m.get("cooperating", []) or []),
                    deadline=m.get("deadline"),
                    revision_basis=task.get("revision_basis"),
                    note=m.get("note"),
                )
            )
    targets = []
    for t in data["targets"]:
        w = f"目标 {t.get('id', '?')}"
        _keys(t, w, *_TARGET_KEYS)
        if isinstance(t["value"], bool) or not isinstance(t["value"], (int, float)):
            raise PlanError(f"{w}：键“value”应为数值，实为“{t['value']!r}”")
        if t.get("actual") is not None:
            _keys(t["actual"], f"{w} actual", ("table", "column"), ("note",))
        deps = t.get("departments")
        if deps is None and t.get("measure"):
            m = next(x for x in measures if x.id == t["measure"])
            deps = {"lead": m.lead, "cooperating": list(m.cooperating)}
        deps = deps or {}
        targets.append(
            Target(
                id=t["id"],
                clause=t["clause"],
                name=t["name"],
                text=t["text"],
                word=t["word"],
                value=t["value"],
                unit=t["unit"],
                deadline=t.get("deadline"),
                measure=t.get("measure"),
                lead=deps.get("lead"),
                cooperating=tuple(deps.get("cooperating", []) or []),
                note=t.get("note"),
                actual=t.get("actual"),
            )
        )
    rules = {rid: _parse_rule(rid, raw) for rid, raw in data["rules"].items()}
    return Plan(
        meta=dict(data["meta"]),
        departments=tuple(data["departments"]),
        annex_columns=tuple(data["annex"]["columns"]),
        annex_rows=tuple(data["annex"]["rows"]),
        targets=tuple(targets),
        tasks=tuple(data["tasks"]),
        measures=tuple(measures),
        rules=rules,
    )


@lru_cache(maxsize=8)
def _load(path: str) -> Plan:
    with open(path, encoding="utf-8") as fh:
        return parse_plan(yaml.safe_load(fh), path)


def load_plan(path: str | os.PathLike | None = None) -> Plan:
    """The plan (cached). Default: $XL_ECOM_PLAN or the built-in plan.yaml."""
    chosen = path or os.environ.get("XL_ECOM_PLAN") or _DEFAULT_KEY
    plan = _by_key.get(chosen)
    if plan is None:
        plan = _by_key[chosen] = _load(str(Path(chosen).resolve()))
    return plan


_DEFAULT_KEY = str(PLAN_PATH)
_by_key: dict = {}
