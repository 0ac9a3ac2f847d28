"""Properties every rule must keep, checked with hypothesis over generated cases."""

from __future__ import annotations

from decimal import Decimal

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xl_ecom.policy import load_plan
from xl_ecom.rules import engine
from xl_ecom.rules.model import Fixed, Tiers

PLAN = load_plan()
RULES = sorted(PLAN.rules)
ON = "2020-12-31"

cents_st = st.integers(min_value=0, max_value=500_000_000_00)
money_st = st.one_of(
    cents_st.map(lambda c: c / 100),
    st.floats(min_value=0, max_value=1e9, allow_nan=False, allow_infinity=False),
)


def value_st(spec):
    if spec.kind == "money":
        return money_st
    if spec.kind == "count":
        return st.integers(min_value=0, max_value=300)
    if spec.kind == "years":
        return st.integers(min_value=0, max_value=20).map(lambda h: h / 2)
    if spec.kind == "choice":
        return st.sampled_from(spec.choices)
    if spec.kind == "rate":
        return st.none()  # the ceiling; lower rates are covered in test_rules
    raise AssertionError(spec.kind)


@st.composite
def case(draw, rule_id=None):
    rule_id = rule_id or draw(st.sampled_from(RULES))
    rule = PLAN.rules[rule_id]
    return rule_id, [draw(value_st(s)) for s in rule.inputs]


def _max_amount(rule_id) -> int | None:
    """The most a single case can receive, from the resolved plan (None: no cap)."""
    resolved = engine.resolve(rule_id, ON)
    caps = []
    for body in resolved.variants.values():
        a = body.amount
        if body.limit is not None:
            caps.append(body.limit.cents)
        elif isinstance(a, Tiers):
            caps.append(max(t.amount for t in a.tiers))
        elif isinstance(a, Fixed):
            caps.append(a.amount)
        else:
            return None
    return max(caps)


@settings(max_examples=400, deadline=None)
@given(case())
def test_never_negative_never_above_the_cap(c):
    rule_id, args = c
    cents = engine.calculate_cents(rule_id, *args, on=ON)
    assert cents is not None and cents >= 0
    top = _max_amount(rule_id)
    if top is not None:
        assert cents <= top


def _money_basis(rule_id):
    rule = PLAN.rules[rule_id]
    return [i for i, s in enumerate(rule.inputs) if s.kind == "money"]


@settings(max_examples=400, deadline=None)
@given(case(), st.integers(min_value=0, max_value=100_000_000_00))
def test_monotone_in_each_amount(c, extra_cents):
    rule_id, args = c
    base = engine.calculate_cents(rule_id, *args, on=ON)
    for i in _money_basis(rule_id):
        more = list(args)
        more[i] = float(Decimal(str(args[i])) + Decimal(extra_cents) / 100)
        assert engine.calculate_cents(rule_id, *more, on=ON) >= base


@settings(max_examples=300, deadline=None)
@given(case())
def test_zero_below_each_money_threshold(c):
    rule_id, args = c
    rule = PLAN.rules[rule_id]
    resolved = engine.resolve(rule_id, ON)
    variant = args[[s.name for s in rule.inputs].index(rule.switch)] if rule.switch else ""
    body = resolved.variants[variant]
    for cond in body.conditions:
        spec = rule.input(cond.input)
        i = [s.name for s in rule.inputs].index(spec.name)
        below = list(args)
        if spec.kind == "money":
            below[i] = (cond.threshold - 1) / 100  # one cent under: fails both 以上 and 超
        else:
            below[i] = float(cond.threshold) - (1 if spec.kind == "count" else 0.5)
        if below[i] < 0:
            continue
        assert engine.calculate_cents(rule_id, *below, on=ON) == 0
    a = body.amount
    if isinstance(a, Tiers):
        i = [s.name for s in rule.inputs].index(a.basis)
        below = list(args)
        below[i] = (min(t.threshold for t in a.tiers) - 1) / 100
        assert engine.calculate_cents(rule_id, *below, on=ON) == 0


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.sampled_from(RULES).flatmap(lambda r: st.lists(case(r), min_size=1, max_size=40)))
def test_scalar_equals_vectorised(cases):
    rule_id = cases[0][0]
    rule = PLAN.rules[rule_id]
    rows = [args for _, args in cases]
    scalar = engine.calculate_sequence(rule_id, rows, on=ON)
    data = {}
    for j, spec in enumerate(rule.inputs):
        col = [r[j] for r in rows]
        if spec.kind == "choice":
            data[spec.name] = np.array(col, dtype=object)
        elif spec.kind == "rate":
            continue
        else:
            data[spec.name] = np.array(col, dtype=float)
    vector = engine.calculate_columns_cents(rule_id, data, on=ON)
    assert [int(v) for v in vector] == scalar
