"""The engine: evaluates the award and subsidy rules of plan.yaml.

One evaluator (``_run``) is written once against a small set of operations and executed by two
backends: ``_SCALAR`` (exact Decimal/int arithmetic, one case at a time, with an explanation
trace) and ``_VECTOR`` (numpy over whole columns).  Neither knows any rate, cap or threshold: they
come from the plan data, resolved as of a policy date.  This module never imports xlwings.
"""

from __future__ import annotations

import datetime as dt
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from functools import cache, lru_cache
from typing import TYPE_CHECKING, Any

import numpy as np

from xl_ecom.common.errors import InputError
from xl_ecom.policy import Plan, Rule, load_plan
from xl_ecom.policy.boundaries import BOUNDARY_WORDS, boundary, holds
from xl_ecom.rules.explain import AmountStep, CapStep, ConditionStep, pct, shown, step_text
from xl_ecom.rules.explain import money as money_text
from xl_ecom.rules.model import Body, Cap, Condition, Factor, Fixed, PerUnit, Rate, Tier, Tiers, Unit
from xl_ecom.rules.money import (
    MAX_CENTS,
    MAX_YUAN,
    cents_to_yuan,
    describe,
    mul_rate,
    mul_rate_array,
    parse_number,
    to_cents,
)

if TYPE_CHECKING:
    import pandas as pd

_TRUE = {"是", "true", "TRUE", "True", "1", "y", "Y", "yes", "有"}
_FALSE = {"否", "false", "FALSE", "False", "0", "n", "N", "no", "无"}


_TODAY: list = [0.0, None]  # [local midnight ending the day, the day]


def _today() -> dt.date:
    """dt.date.today(), read from the clock only when the day may have changed."""
    if time.time() >= _TODAY[0]:
        day = dt.date.today()
        _TODAY[:] = [dt.datetime.combine(day + dt.timedelta(days=1), dt.time()).timestamp(), day]
    return _TODAY[1]


def policy_date(on: dt.date | str | None = None) -> dt.date:
    """The date the rules are evaluated as of (default: today)."""
    if on is None or on == "":
        return _today()
    if isinstance(on, dt.datetime):
        return on.date()
    if isinstance(on, dt.date):
        return on
    try:
        return dt.date.fromisoformat(str(on).strip())
    except ValueError:
        raise InputError(f"政策日期“{on}”不是有效日期（格式如 2020-12-31）") from None


def get_rule(rule_id: str, plan: Plan | None = None) -> Rule:
    plan = plan or load_plan()
    key = str(rule_id).strip().upper()
    if key.startswith("="):
        key = key[1:]
    if key not in plan.rules:
        raise InputError(f"没有名为“{rule_id}”的奖补规则（可用：{'、'.join(plan.rules)}）")
    return plan.rules[key]


# --- resolution: plan parameters as of a date, in internal units (money in cents) ----------------

def _internal(kind: str, value) -> Any:
    if kind == "money":
        return int(Decimal(str(value)) * 100)
    dec = Decimal(str(value))
    return int(dec) if dec == dec.to_integral_value() else float(dec)


@dataclass(frozen=True)
class _Resolved:
    rule: Rule
    on: dt.date
    variants: dict  # choice -> resolved body


def _resolve_amount(rule: Rule, a: dict, on: dt.date):
    """The parsed amount of plan.yaml as a typed amount kind of xl_ecom.rules, as of ``on``."""
    match a["type"]:
        case "rate":
            p = a["rate"]
            return Rate(tuple(a["basis"]), Decimal(str(p.at(on))), p.word, p.reference, a.get("rate_input"))
        case "factor":
            p = a["factor"]
            return Factor(tuple(a["basis"]), Decimal(str(p.at(on))), p.reference)
        case "fixed":
            return Fixed(_internal("money", a["amount"].at(on)), a["amount"].reference)
        case "tiers":
            basis_kind = rule.input(a["basis"]).kind
            return Tiers(
                a["basis"],
                tuple(
                    Tier(
                        t["word"],
                        _internal(basis_kind, t["threshold"].at(on)),
                        _internal("money", t["amount"].at(on)),
                        t["threshold"].reference,
                    )
                    for t in a["tiers"]
                ),
            )
        case "per_unit":
            return PerUnit(tuple(Unit(u["input"], _internal("money", u["amount"].at(on))) for u in a["units"]))
        case kind:
            raise TypeError(f"unhandled amount kind {kind!r}")


def _resolve_body(rule: Rule, body: dict, on: dt.date) -> Body:
    conditions = tuple(
        Condition(c["input"], c["word"], _internal(rule.input(c["input"]).kind, c["threshold"].at(on)), c["threshold"].reference)
        for c in body["conditions"]
    )
    cap = body["cap"]
    limit = None
    if cap is not None:
        limit = Cap(_internal("money", cap.at(on)), cap.word, cap.reference, cap.cumulative, cap.group_by)
    return Body(conditions, _resolve_amount(rule, body["amount"], on), limit)


@lru_cache(maxsize=256)
def _resolve_cached(plan_id: int, rule_id: str, on: dt.date, plan: Plan) -> _Resolved:
    rule = plan.rules[rule_id]
    return _Resolved(rule, on, {k: _resolve_body(rule, b, on) for k, b in rule.variants.items()})


def resolve(rule_id: str, on=None, plan: Plan | None = None) -> _Resolved:
    plan = plan or load_plan()
    rule = get_rule(rule_id, plan)
    return _resolve_cached(id(plan), rule.id, policy_date(on), plan)


# --- the two backends ------------------------------------------------------------------------------

@lru_cache(maxsize=4096)
def _ratio(rate: Decimal) -> tuple[int, int]:
    return rate.as_integer_ratio()


class _ScalarOps:
    vector = False

    @staticmethod
    def where(cond, a, b):
        return a if cond else b

    @staticmethod
    def gate(raw, eligible):
        return raw if eligible else 0

    @staticmethod
    def cap(raw, cents):
        return raw if raw <= cents else cents

    @staticmethod
    def minimum(a, b):
        return a if a <= b else b

    @staticmethod
    def select(conds, values, default):
        for c, v in zip(conds, values):
            if c:
                return v
        return default

    @staticmethod
    def mul_rate(cents, rate):
        # a rate of few digits (every plan rate): exact integer half-up, as the vector path
        p, q = _ratio(rate)
        if q <= 10**12:
            return (2 * cents * p + q) // (2 * q)
        return mul_rate(cents, rate)

    @staticmethod
    def cumcap(raw, cap, paid_before):
        room = cap - paid_before
        return raw if raw <= room else max(room, 0)


class _VectorOps:
    """Whole columns.  ``raw`` amounts are always arrays the evaluator owns (never an input), so
    gating and capping run in place: on a million rows a fresh array costs more than the pass."""

    vector = True
    where = staticmethod(np.where)
    minimum = staticmethod(np.minimum)

    @staticmethod
    def gate(raw, eligible):
        return np.multiply(raw, eligible, out=raw)

    @staticmethod
    def cap(raw, cents):
        return np.minimum(raw, cents, out=raw)

    @staticmethod
    def select(conds, values, default):
        return np.select(conds, values, default)

    @staticmethod
    def mul_rate(cents, rate):
        """Finite whole cents × rate, half up.  A plan rate p/q runs as exact int64
        ``(2·c·p + q) // 2q``; a rate column goes through money.mul_rate_array."""
        if isinstance(rate, Decimal):
            whole = cents.astype(np.int64)  # a copy: the evaluator owns what it returns
            if rate == 1:
                return whole
            p, q = _ratio(rate)
            if p * MAX_CENTS * 2 + q < 2**62:
                whole *= 2 * p
                whole += q
                whole //= 2 * q
                return whole
        return mul_rate_array(cents, rate)

    @staticmethod
    def cumcap(raw, cap, groups):
        """Paid in row order (per group) until ``cap`` is reached: min(total, cap) − min(total
        before this row, cap).  ``raw`` is finite (blanks were zeroed before)."""
        if groups is None:
            total = np.cumsum(raw)
        else:
            import pandas as pd  # imported when first needed: a CLI command without grouped caps starts faster

            total = pd.Series(raw).groupby(np.asarray(groups), sort=False).cumsum().to_numpy()
        before = np.subtract(total, raw)
        np.minimum(before, cap, out=before)
        paid = np.minimum(total, cap)  # (pandas may hand back a read-only total)
        paid -= before
        return paid


_SCALAR = _ScalarOps()
#: each boundary word's comparison (policy.boundaries), looked up once per word
_OPS = {word: b.op for word, b in BOUNDARY_WORDS.items()}
_VECTOR = _VectorOps()


def _run(body: Body, v: Mapping[str, Any], ops, *, cum_state=None, trace: list | None = None, within=True):
    """Evaluate one resolved rule body.  ``v`` holds internal values (money in cents).

    Returns cents (int for the scalar backend, float array for the vector backend).  ``within``
    (vector backend): a mask of the rows this body applies to; the others get 0.
    """
    eligible = within
    for c in body.conditions:
        value = v[c.input]
        ok = (_OPS.get(c.word) or boundary(c.word).op)(value, c.threshold)
        eligible = ok if eligible is True else (eligible & ok)
        if trace is not None:
            trace.append(ConditionStep(c, value, bool(ok)))
    a = body.amount
    match a:
        case Rate() | Factor():
            basis = v[a.basis[0]]
            for name in a.basis[1:]:
                basis = basis + v[name]
            chosen = v.get(a.rate_input) if a.rate_input else None
            rate = a.rate if chosen is None else chosen
            raw = ops.mul_rate(basis, rate)
            if trace is not None:
                trace.append(AmountStep(a, basis, rate, raw))
        case Fixed():
            raw = a.amount
            if ops.vector:
                n = np.shape(eligible) or (len(next(x for x in v.values() if isinstance(x, np.ndarray))),)
                raw = np.full(n, float(raw))
            if trace is not None:
                trace.append(AmountStep(a, None, None, raw))
        case Tiers():
            basis = v[a.basis]
            conds = [holds(basis, t.word, t.threshold) for t in a.tiers]
            raw = ops.select(conds, [t.amount for t in a.tiers], 0)
            if trace is not None:
                trace.append(AmountStep(a, basis, None, raw))
        case PerUnit():
            raw = 0
            for u in a.units:
                raw = raw + v[u.input] * u.amount
            if trace is not None:
                trace.append(AmountStep(a, {u.input: v[u.input] for u in a.units}, None, raw))
        case _:
            raise TypeError(f"unhandled amount kind {a!r}")
    if eligible is not True:
        raw = ops.gate(raw, eligible)
    limit = body.limit
    if limit is None:
        return raw
    if limit.cumulative:
        paid = ops.cumcap(raw, limit.cents, cum_state)
    else:
        paid = ops.cap(raw, limit.cents)
    if trace is not None:
        trace.append(CapStep(body, limit, raw, paid, cum_state))
    return paid


# --- input normalisation -------------------------------------------------------------------------

def _choice(spec, value):
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return spec.default if spec.default is not None else ""
    if isinstance(value, (bool, np.bool_)) and set(spec.choices) >= {"是", "否"}:
        return "是" if value else "否"
    text = describe(value).strip() if not isinstance(value, str) else value.strip()
    if text == "" and spec.default is not None:
        return spec.default
    if set(spec.choices) >= {"是", "否"}:
        if text in _TRUE:
            return "是"
        if text in _FALSE:
            return "否"
    if text in spec.choices:
        return text
    shown = "、".join(c if c else "（空白）" for c in spec.choices)
    raise InputError(f"{spec.label}“{text}”无效，应为：{shown}")


_HALF_CENT_WINDOW = 1e-9


def _cents_of_number(value) -> int | None:
    """Cents of a plain float/int amount when float arithmetic gives them exactly: away from a
    half cent, rint(x·100) is the half-up cent (the vector path's test, see _money_cents).
    None: not such a value (text, NaN, ±inf, negative, too large, at a half cent)."""
    t = type(value)
    if t is int:
        return value * 100 if 0 <= value <= _MAX_YUAN_INT else None
    if t is not float or not 0.0 <= value <= _MAX_YUAN:
        return None
    scaled = value * 100.0
    cents = round(scaled)
    if abs(scaled - cents) < 0.5 - (_HALF_CENT_WINDOW + scaled * 4e-15):
        return cents
    return None


def _scalar_value(spec, value):
    if spec.kind == "money":
        cents = _cents_of_number(value)
        return to_cents(value, spec.label, nan_blank=False) if cents is None else cents
    if spec.kind == "choice":
        return _choice(spec, value)
    if spec.kind == "count":
        t = type(value)
        if (t is int and value >= 0) or (t is float and value.is_integer() and value >= 0.0):
            return int(value)
    dec = parse_number(value, spec.label, percent_ok=spec.kind == "rate", nan_blank=False)
    if dec is None:
        return None
    if dec < 0:
        raise InputError(f"{spec.label}“{describe(value)}”不能为负数")
    if spec.kind == "count" and dec != dec.to_integral_value():
        raise InputError(f"{spec.label}“{describe(value)}”应为整数")
    if spec.kind == "count":
        return int(dec)
    return dec


def _check_rate(rule: Rule, body: Body, rate) -> None:
    a = body.amount
    if rate is None or not isinstance(a, Rate) or a.rate_input is None:
        return
    ceiling = a.rate
    if rate > ceiling:
        raise InputError(
            f"{rule.input(a.rate_input).label}“{_pct(rate)}”超过条款{rule.clause}规定的上限{_pct(ceiling)}"
            f"（“{a.rate_ref}”）"
        )


def percent(rate) -> str:
    """0.015 → '1.5%'."""
    return pct(rate)


_pct = pct


def _body_inputs(body: Body) -> set:
    """The inputs a resolved rule body reads: its conditions and what its amount kind reads."""
    used = {c.input for c in body.conditions}
    a = body.amount
    match a:
        case Rate() | Factor():
            used |= set(a.basis)
        case Tiers():
            used.add(a.basis)
        case PerUnit():
            used |= {u.input for u in a.units}
        case Fixed():
            pass
        case _:
            raise TypeError(f"unhandled amount kind {a!r}")
    return used


@cache
def _typed_variants(rule: Rule) -> dict[str, Body]:
    """The rule's variants as typed bodies (each parameter's latest value): which inputs a body
    reads does not depend on the date."""
    return {k: _resolve_body(rule, b, dt.date.max) for k, b in rule.variants.items()}


@cache
def required_inputs(rule: Rule, variant: str = "") -> tuple[str, ...]:
    """Inputs whose blank gives a blank result for ``variant``: the required inputs (not optional,
    no default_input) that the variant's conditions or basis read, plus those no variant reads.
    So 高管 training, which has no headcount condition, needs no 参训人数."""
    bodies = _typed_variants(rule)
    used_any = set().union(*(_body_inputs(b) for b in bodies.values()))
    used = _body_inputs(bodies[variant])
    return tuple(
        s.name
        for s in rule.inputs
        if not s.optional and not s.default_input and (s.name in used or s.name not in used_any)
    )


def _normalise(rule: Rule, args: Sequence, kwargs: Mapping) -> dict | None:
    specs = rule.inputs
    if len(args) > len(specs):
        raise InputError(f"{rule.id} 最多接受{len(specs)}个参数（{'、'.join(i.label for i in specs)}），收到{len(args)}个")
    if kwargs:
        names = rule.input_names
        raw = dict(zip(names, args))
        for k, val in kwargs.items():
            if k not in names:
                raise InputError(f"{rule.id} 没有参数“{k}”")
            raw[k] = val
        given = [raw.get(n) for n in names]
    else:
        given = list(args) + [None] * (len(specs) - len(args))
    values = {spec.name: _scalar_value(spec, x) for spec, x in zip(specs, given)}
    if None not in values.values():
        return values
    required = required_inputs(rule, values[rule.switch] if rule.switch else "")
    for spec in specs:
        if values[spec.name] is None:
            if spec.default_input:
                values[spec.name] = values[spec.default_input]
            elif spec.name in required:
                return None  # a blank required input gives a blank result
    return values


# --- public scalar API -----------------------------------------------------------------------------

@dataclass
class Explanation:
    rule: Rule
    on: dt.date
    inputs: dict
    variant: str
    steps: list = field(default_factory=list)
    result_cents: int | None = None
    units: tuple[str, ...] = ()

    @property
    def result(self) -> Decimal | None:
        return None if self.result_cents is None else cents_to_yuan(self.result_cents)

    def to_text(self) -> str:
        r = self.rule
        lines = [f"【{r.name}】条款：{r.clause}（{self.rule.measure}）", f"原文：{r.text}"]
        if self.units:
            lines.append(f"牵头单位：{self.units[0]}" + (f"；配合单位：{'、'.join(self.units[1:])}" if len(self.units) > 1 else ""))
        lines.append(f"政策日期：{self.on.isoformat()}")
        given = []
        for spec in r.inputs:
            val = self.inputs.get(spec.name)
            given.append(f"{spec.label}={shown(spec.kind, val)}")
        lines.append("输入：" + "；".join(given))
        if self.variant:
            lines.append(f"适用情形：{self.variant}")
        for step in self.steps:
            lines.append(step_text(r, step))
        if self.result_cents is None:
            lines.append("结果：（空白，必填输入为空）")
        else:
            lines.append(f"结果：{money_text(self.result_cents)}元")
        return "\n".join(lines)


def _evaluate(rule_id, args, kwargs, on, plan, paid_before=0, want_trace=False):
    plan = plan or load_plan()
    rule = plan.rules.get(rule_id) or get_rule(rule_id, plan)
    resolved = _resolve_cached(id(plan), rule.id, policy_date(on), plan)
    values = _normalise(rule, args, kwargs)
    variant = values[rule.switch] if (values is not None and rule.switch) else ""
    if values is None:
        return rule, resolved, values, variant, [], None
    body = resolved.variants[variant]
    a = body.amount
    if isinstance(a, Rate) and a.rate_input:
        _check_rate(rule, body, values.get(a.rate_input))
    trace = [] if want_trace else None
    cents = _run(body, values, _SCALAR, cum_state=paid_before, trace=trace)
    return rule, resolved, values, variant, trace, int(cents)


def calculate_cents(rule_id: str, *args, on=None, plan: Plan | None = None, paid_before: int = 0, **kwargs) -> int | None:
    """The amount in cents for one case (None when a required input is blank)."""
    return _evaluate(rule_id, args, kwargs, on, plan, paid_before)[-1]


def calculate(rule_id: str, *args, on=None, plan: Plan | None = None, **kwargs) -> Decimal | None:
    """The amount in yuan (Decimal, 2 places) for one case."""
    cents = calculate_cents(rule_id, *args, on=on, plan=plan, **kwargs)
    return None if cents is None else cents_to_yuan(cents)


def calculate_sequence(rule_id: str, rows: Iterable[Sequence], on=None, plan: Plan | None = None) -> list[int | None]:
    """Cents for each case in order; a cumulative cap is applied in row order."""
    paid = 0
    out = []
    for args in rows:
        cents = calculate_cents(rule_id, *args, on=on, plan=plan, paid_before=paid)
        out.append(cents)
        if cents is not None:
            paid += cents
    return out


def explain(rule_id: str, *args, on=None, plan: Plan | None = None, paid_before: int = 0, **kwargs) -> Explanation:
    plan = plan or load_plan()
    rule, resolved, values, variant, trace, cents = _evaluate(rule_id, args, kwargs, on, plan, paid_before, True)
    return Explanation(
        rule=rule,
        on=resolved.on,
        inputs=values or {},
        variant=variant,
        steps=trace,
        result_cents=cents,
        units=plan.rule_units(rule),
    )


# --- public vector API -----------------------------------------------------------------------------
#
# Columns are normalised once into finite float64 arrays (money in whole cents) plus a separate
# blank mask, and choice columns into codes; the rule then runs on those without NaN handling.

def _column(spec, data, n: int):
    col = data.get(spec.name) if hasattr(data, "get") else None
    if col is None:
        return None
    if np.isscalar(col):
        col = [col] * n
    return col


def _floats(spec, col, *, money: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """A column as float64 (text parsed cell by cell) and its blank mask (None: no blank)."""
    arr = np.asarray(col)
    if arr.dtype.kind not in "fiu":
        if money:
            cents = [to_cents(x, spec.label) for x in arr.tolist()]
            arr = np.array([np.nan if c is None else c / 100 for c in cents], dtype="float64")
        else:
            numbers = [parse_number(x, spec.label, percent_ok=spec.kind == "rate") for x in arr.tolist()]
            arr = np.array([np.nan if v is None else float(v) for v in numbers], dtype="float64")
    elif arr.dtype != np.float64:
        arr = arr.astype("float64")
    if not arr.size or not np.isnan(arr.min()):  # min is NaN exactly when a NaN is present
        return arr, None
    blank = np.isnan(arr)
    return np.where(blank, 0.0, arr), blank


def _check_range(spec, x: np.ndarray, limit: float | None) -> float:
    """Refuse ±inf, negatives and (money) amounts over the limit, naming the first such value."""
    if not x.size:
        return 0.0
    lo, hi = float(x.min()), float(x.max())
    if np.isinf(lo) or np.isinf(hi):
        raise InputError(f"{spec.label}“{x[np.isinf(x)][0]}”不是有限数值")
    if lo < 0:
        raise InputError(f"{spec.label}“{describe(float(x[x < 0][0]))}”不能为负数")
    if limit is not None and hi > limit:
        raise InputError(f"{spec.label}“{describe(float(x[x > limit][0]))}”超过1万亿元，请核对单位（金额以元为单位）")
    return hi


_MAX_YUAN = float(MAX_YUAN)
_MAX_YUAN_INT = int(MAX_YUAN)


def _money_cents(spec, col) -> tuple[np.ndarray, np.ndarray | None]:
    """Yuan → whole cents rounded half up, exactly as :func:`to_cents` rounds each value.

    ``rint`` is exact except at a half cent, so only elements within float error of one (the
    window of money._near_half) are handed to the exact scalar path."""
    x, blank = _floats(spec, col, money=True)
    hi = _check_range(spec, x, _MAX_YUAN)
    scaled = x * 100.0
    cents = np.rint(scaled)
    d = np.subtract(scaled, cents, out=scaled)
    window = 0.5 - (_HALF_CENT_WINDOW + hi * 100.0 * 4e-15)
    if d.size and (d.max() >= window or -d.min() >= window):
        fix = np.flatnonzero(np.abs(d) >= window)
        cents[fix] = [to_cents(float(v), spec.label) for v in x[fix]]
    return cents, blank


def _number_values(spec, col) -> tuple[np.ndarray, np.ndarray | None]:
    x, blank = _floats(spec, col, money=False)
    _check_range(spec, x, None)
    if spec.kind == "count" and x.size:
        frac = np.not_equal(np.floor(x), x)
        if frac.any():
            raise InputError(f"{spec.label}“{describe(float(x[frac][0]))}”应为整数")
    return x, blank


@dataclass(frozen=True)
class _Choices:
    """A normalised choice column: for each choice, the rows holding it."""

    rows: dict  # choice -> bool array
    n: int

    def mask(self, names) -> np.ndarray | bool:
        """Rows whose choice is one of ``names`` (True/False when all or none are)."""
        found = [self.rows[c] for c in names if c in self.rows]
        if not found:
            return False
        if len(found) == 1:
            m = found[0]
        else:
            m = np.logical_or.reduce(found)
        if len(found) == len(self.rows) or m.all():
            return True
        return m if m.any() else False

    def labels(self) -> np.ndarray:
        out = np.empty(self.n, dtype=object)
        for c, rows in self.rows.items():
            out[rows] = c
        return out


def _is_series(col) -> bool:
    """A pandas Series (pandas is loaded whenever a caller could have made one)."""
    pd = sys.modules.get("pandas")
    return pd is not None and isinstance(col, pd.Series)


def _choice_rows(spec, col, n: int) -> _Choices:
    """Validate and normalise a choice column.

    With two choices, a cell holding one exactly is matched by one comparison per choice, and the
    rest (blanks, 是/否 spellings, padded text, invalid values) are normalised one check per
    distinct value; with more, or for a DataFrame column (factorised in its own storage, with no
    object copy), every distinct value is checked once (pd.factorize)."""
    if col is None:
        return _Choices({_choice(spec, None): np.ones(n, dtype=bool)}, n)
    choices = tuple(dict.fromkeys(spec.choices))
    rest = None
    series = _is_series(col)
    if series or len(choices) > 2:
        import pandas as pd

        codes, uniques = pd.factorize(col if series else np.asarray(col, dtype=object), use_na_sentinel=True)
        size = len(codes)
        rows = {c: np.zeros(size, dtype=bool) for c in choices}
    else:
        arr = col if isinstance(col, np.ndarray) and col.dtype == object else np.asarray(col, dtype=object)
        size = len(arr)
        rows = {c: np.equal(arr, c) for c in choices}
        exact = np.logical_or.reduce(list(rows.values()))
        if exact.all():
            return _Choices(rows, size)
        rest = np.flatnonzero(~exact)
        import pandas as pd

        codes, uniques = pd.factorize(arr[rest], use_na_sentinel=True)
    uniques = list(uniques)
    labels = [_choice(spec, u) for u in uniques] + [_choice(spec, None)]
    for k, label in enumerate(labels):
        hit = codes == (k if k < len(uniques) else -1)
        if rest is None:
            rows[label] |= hit
        elif hit.any():
            rows[label][rest[hit]] = True
    return _Choices(rows, size)


@dataclass(frozen=True)
class _VectorPlan:
    """What the vector path needs of a rule as of a date, worked out once."""

    resolved: _Resolved
    bodies: tuple  # (body, variant names) for distinct bodies (the three uplifted regions run once)
    needed_by: dict  # input name -> variants whose result is blank when it is blank
    rate_inputs: frozenset


@lru_cache(maxsize=256)
def _vector_plan(plan_id: int, rule_id: str, on: dt.date, plan: Plan) -> _VectorPlan:
    resolved = _resolve_cached(plan_id, rule_id, on, plan)
    rule = resolved.rule
    distinct: dict = {}
    for name, body in resolved.variants.items():
        distinct.setdefault(body, (body, []))[1].append(name)
    needed_by = {s.name: tuple(v for v in rule.variants if s.name in required_inputs(rule, v)) for s in rule.inputs}
    return _VectorPlan(
        resolved,
        tuple((b, tuple(names)) for b, names in distinct.values()),
        needed_by,
        frozenset(s.name for s in rule.inputs if s.kind == "rate"),
    )


def calculate_columns(
    rule_id: str,
    data: Mapping[str, Any] | pd.DataFrame,
    on=None,
    plan: Plan | None = None,
    groups=None,
) -> np.ndarray:
    """Vectorised: amounts in yuan (float64, NaN where a required input is blank).

    ``data`` maps input names to columns (arrays, Series, lists or scalars broadcast).  For a rule
    with a cumulative cap, the cap runs in row order, separately per value of ``groups`` if given.
    """
    cents = calculate_columns_cents(rule_id, data, on=on, plan=plan, groups=groups)
    return cents / 100.0


def calculate_columns_cents(rule_id, data, on=None, plan=None, groups=None) -> np.ndarray:
    plan = plan or load_plan()
    rule = get_rule(rule_id, plan)
    prep = _vector_plan(id(plan), rule.id, policy_date(on), plan)
    inputs = [c for c in (data.get(s.name) for s in rule.inputs) if c is not None]
    lengths = [len(c) for c in inputs if not np.isscalar(c)]
    n = max(lengths) if lengths else 1
    values: dict = {}
    blanks: dict = {}
    for spec in rule.inputs:
        col = _column(spec, data, n)
        if spec.kind == "choice":  # an omitted choice column takes its default
            values[spec.name] = _choice_rows(spec, col, n)
            continue
        if col is None:
            values[spec.name] = blanks[spec.name] = None
        elif spec.kind == "money":
            values[spec.name], blanks[spec.name] = _money_cents(spec, col)
        else:
            values[spec.name], blanks[spec.name] = _number_values(spec, col)
    switch = values[rule.switch] if rule.switch else None
    blank = None
    for spec in rule.inputs:
        if spec.kind == "choice":
            continue
        name = spec.name
        arr, nan = values[name], blanks[name]
        if spec.default_input and (arr is None or nan is not None):
            other = spec.default_input
            if arr is None:
                values[name], blanks[name] = values[other], blanks[other]
            else:
                values[name] = np.where(nan, values[other], arr)
                blanks[name] = nan if blanks[other] is None else (nan & blanks[other])
            continue
        if spec.optional:
            continue
        needed_by = prep.needed_by[name]
        if not needed_by:
            continue
        if arr is None:
            if len(needed_by) == len(rule.variants):
                raise InputError(f"{rule.id} 缺少必填输入“{spec.label}”")
            values[name], nan = np.zeros(n), np.ones(n, dtype=bool)
        if nan is None:
            continue
        if len(needed_by) != len(rule.variants):
            assert switch is not None  # variants differ only by a switch
            nan = nan & switch.mask(needed_by)
        blank = nan if blank is None else (blank | nan)
    out = None
    for body, names in prep.bodies:
        mask = True if switch is None else switch.mask(names)
        if mask is False:
            continue
        a = body.amount
        v = values
        if isinstance(a, Rate) and a.rate_input:
            v = dict(values)
            rates, nan = values.get(a.rate_input), blanks.get(a.rate_input)
            if rates is not None:
                chosen = rates if nan is None else rates[~nan]
                if mask is not True:
                    chosen = rates[mask if nan is None else (mask & ~nan)]
                too_high = chosen > float(a.rate)
                if too_high.any():
                    _check_rate(rule, body, Decimal(repr(float(chosen[too_high][0]))))
                if nan is not None:
                    v[a.rate_input] = np.where(nan, float(a.rate), rates)
        if body.cumulative and mask is not True:
            # a cumulative cap runs over this variant's rows only
            sub = {k: (arr[mask] if isinstance(arr, np.ndarray) else arr) for k, arr in v.items()}
            g = None if groups is None else np.asarray(groups)[mask]
            if out is None:
                out = np.zeros(n)
            out[mask] += _run(body, sub, _VECTOR, cum_state=g)
            continue
        g = None if groups is None else np.asarray(groups)
        # rows of other variants are not eligible for this body: they get 0 here and add up
        res = np.asarray(_run(body, v, _VECTOR, cum_state=g, within=mask))
        if out is None:
            own = any(np.may_share_memory(res, np.asarray(c)) for c in inputs if not np.isscalar(c))
            if own or res.shape != (n,) or res.dtype != np.float64:
                out = np.array(np.broadcast_to(res, (n,)), dtype="float64")
            else:
                out = res
        else:
            np.add(out, res, out=out)
    if out is None:
        out = np.zeros(n)
    if blank is not None and blank.any():
        out[blank] = np.nan
    return out
