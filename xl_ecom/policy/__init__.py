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

from xl_ecom.boundaries import boundary
from xl_ecom.errors import InputError, PlanError

PLAN_PATH = Path(__file__).with_name("plan.yaml")


@dataclass(frozen=True)
class Param:
    """A dated parameter: {word, values: {date: value}, reference}."""

    values: tuple[tuple[dt.date, Any], ...]
    word: str | None = None
    reference: str | None = None
    cumulative: bool = False

    @classmethod
    def parse(cls, raw: dict, where: str) -> "Param":
        if not isinstance(raw, dict) or "values" not in raw:
            raise PlanError(f"{where}：参数缺少 values")
        values = []
        for since, value in raw["values"].items():
            if not isinstance(since, dt.date):
                raise PlanError(f"{where}：生效日期“{since}”不是日期")
            values.append((since, value))
        values.sort()
        word = raw.get("word")
        if word is not None:
            boundary(word)  # fail early on an unknown word
        return cls(tuple(values), word, raw.get("reference"), bool(raw.get("cumulative", False)))

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


def _parse_body(raw: dict, where: str) -> dict:
    body: dict = {"conditions": [], "amount": None, "cap": None}
    for i, cond in enumerate(raw.get("conditions", []) or []):
        boundary(cond["word"])
        body["conditions"].append(
            {"input": cond["input"], "word": cond["word"], "threshold": Param.parse(cond["threshold"], f"{where} 门槛{i + 1}")}
        )
    amount = dict(raw["amount"])
    kind = amount["type"]
    if kind == "rate":
        amount["rate"] = Param.parse(amount["rate"], f"{where} 比例")
        basis = amount["basis"]
        amount["basis"] = tuple(basis) if isinstance(basis, list) else (basis,)
    elif kind == "fixed":
        amount["amount"] = Param.parse(amount["amount"], f"{where} 定额")
    elif kind == "tiers":
        amount["tiers"] = tuple(
            {
                "word": t["word"],
                "threshold": Param.parse(t["threshold"], f"{where} 分档门槛"),
                "amount": Param.parse(t["amount"], f"{where} 分档金额"),
            }
            for t in amount["tiers"]
        )
    elif kind == "per_unit":
        amount["units"] = tuple(
            {"input": u["input"], "amount": Param.parse(u["amount"], f"{where} 单价")} for u in amount["units"]
        )
    else:
        raise PlanError(f"{where}：未知计算方式“{kind}”")
    body["amount"] = amount
    if raw.get("cap") is not None:
        body["cap"] = Param.parse(raw["cap"], f"{where} 上限")
    return body


def _parse_rule(rule_id: str, raw: dict) -> Rule:
    inputs = tuple(
        InputSpec(
            name=i["name"],
            label=i["label"],
            kind=i["kind"],
            optional=bool(i.get("optional", False)),
            default=i.get("default"),
            default_input=i.get("default_input"),
            choices=tuple(i.get("choices", ()) or ()),
        )
        for i in raw["inputs"]
    )
    if "variants" in raw:
        variants = {str(k): _parse_body(v, f"{rule_id}/{k}") for k, v in raw["variants"].items()}
    else:
        variants = {"": _parse_body(raw["body"], rule_id)}
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
    )


def parse_plan(data: dict) -> Plan:
    measures = []
    for task in data["tasks"]:
        for m in task["measures"]:
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
        return parse_plan(yaml.safe_load(fh))


def load_plan(path: str | os.PathLike | None = None) -> Plan:
    """The plan (cached). Default: $XL_ECOM_PLAN or the built-in plan.yaml."""
    chosen = path or os.environ.get("XL_ECOM_PLAN") or _DEFAULT_KEY
    plan = _by_key.get(chosen)
    if plan is None:
        plan = _by_key[chosen] = _load(str(Path(chosen).resolve()))
    return plan


_DEFAULT_KEY = str(PLAN_PATH)
_by_key: dict = {}
