"""A range argument goes through the engine's vector path and must equal the per-cell scalar path."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xl_ecom.common.errors import InputError
from xl_ecom.frontends import udfs
from xl_ecom.policy import load_plan
from xl_ecom.rules import engine

PLAN = load_plan()


def _cell(spec):
    if spec.kind == "money":
        return st.one_of(st.none(), st.integers(0, 30_000_000), st.floats(0, 30_000_000, allow_nan=False).map(lambda x: round(x, 2)),
                         st.sampled_from(["50万", "1,000,000.5", "５０．５万", "", "50%", "-1", "1_000"]))
    if spec.kind in ("count", "years"):
        return st.one_of(st.none(), st.integers(0, 200), st.integers(0, 6).map(float), st.sampled_from(["3", "1.5"]))
    if spec.kind == "rate":
        return st.one_of(st.none(), st.sampled_from([0.005, 0.01, "1%", 0.5, "0.3%"]))
    return st.one_of(st.none(), st.sampled_from(list(spec.choices) + ["是", "否", "无效"]))


def _per_cell(rule_id, rows):
    try:
        return [("" if c is None else float(engine.cents_to_yuan(c))) for c in engine.calculate_sequence(rule_id, rows)]
    except InputError as e:
        return ("error", str(e))


@st.composite
def cases(draw):
    rule_id = draw(st.sampled_from(sorted(PLAN.rules)))
    rule = PLAN.rules[rule_id]
    n = draw(st.integers(2, 12))
    columns = []
    for spec in rule.inputs:
        if draw(st.booleans()):
            columns.append(draw(st.lists(_cell(spec), min_size=n, max_size=n)))
        else:
            columns.append(draw(_cell(spec)))  # a scalar broadcast over the range
    if not any(isinstance(c, list) for c in columns):
        columns[0] = [columns[0]] * n
    return rule_id, n, columns


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_range_equals_per_cell(case):
    rule_id, n, columns = case
    rows = list(zip(*(c if isinstance(c, list) else [c] * n for c in columns)))
    want = _per_cell(rule_id, rows)
    try:
        got = udfs.RULE_UDFS[rule_id](*columns)
    except InputError as e:
        got = ("error", str(e))
    assert got == want


def test_cumulative_cap_in_row_order_and_blanks():
    got = udfs.SUBSIDY_PROMO([600000, None, 600000, 600000, 600000, 600000])
    assert got == [30000.0, "", 30000.0, 30000.0, 10000.0, 0.0]


def test_column_shape_and_errors_name_the_cell():
    assert udfs.AWARD_UPLINK([[2e7], [None], [3e7]], [[None], [0.005], ["1%"]]) == [[200000.0], [""], [300000.0]]
    try:
        udfs.AWARD_UPLINK([1, 2, "10,00"])
    except InputError as e:
        assert "“10,00”" in str(e)
    else:
        raise AssertionError("expected an error")
    try:
        udfs.AWARD_UPLINK([1, float("nan")])
    except InputError as e:
        assert "“nan”" in str(e)
    else:
        raise AssertionError("expected an error")


def test_an_omitted_choice_column_takes_its_default_before_required_inputs_are_judged():
    # found by hypothesis: TRAINING_SUBSIDY(range of blanks, 0) — 基础 needs 参训人数, so the result is blank
    import numpy as np

    from xl_ecom.frontends import udfs
    from xl_ecom.rules import engine

    cents = engine.calculate_columns_cents("TRAINING_SUBSIDY", {"attendees": np.array([np.nan, np.nan]), "costs": np.array([0.0, 0.0])})
    assert np.isnan(cents).all()
    assert udfs.TRAINING_SUBSIDY([[None], [None]], 0) == [[""], [""]]
    assert udfs.TRAINING_SUBSIDY([[None], [None]], 0, "高管") == [[0.0], [0.0]]


def test_rule_udfs_declare_two_dimensional_ranges_and_a_column_comes_back_as_a_column():
    """With xlwings' default options a one-column range arrives flattened and a list is written
    back as a row; every rule UDF argument declares ndim=2, so the shape is kept.  Checked on the
    metadata xlwings' own Windows decorators record and through its conversion stages."""
    from xlwings.conversion.standard import AdjustDimensionsStage, Ensure2DStage

    from xl_ecom.frontends import addin

    class Ctx:
        def __init__(self, value):
            self.value, self.meta = value, {}

    module = addin.load_udf_module()
    for name in PLAN.rules:
        args = getattr(module, name).__xlfunc__["args"]
        assert [a["options"] for a in args] == [udfs.RANGE_OPTIONS] * len(args) == [{"ndim": 2}] * len(args), name
    column = [[2e7], [None], [3e7]]
    c = Ctx(column)
    Ensure2DStage()(c)
    AdjustDimensionsStage(udfs.RANGE_OPTIONS)(c)
    assert c.value == column
    out = Ctx(udfs.AWARD_UPLINK(c.value))
    Ensure2DStage()(out)
    assert out.value == [[200000.0], [""], [300000.0]]
    single = Ctx(12345678.9)  # a single cell or a typed-in number
    Ensure2DStage()(single)
    AdjustDimensionsStage(udfs.RANGE_OPTIONS)(single)
    assert udfs.AWARD_UPLINK(single.value) == 123456.79


def test_a_column_with_a_row_not_of_one_cell_is_refused_and_the_collector_is_restored():
    import gc

    import pytest

    for bad in ([[5e5], [1e6, 2]], [[5e5], []], [[5e5], 3]):
        with pytest.raises(InputError, match="区域各行长度不一致"):
            udfs.AWARD_LIVESTREAM(bad)
    assert gc.isenabled()
    gc.disable()
    try:
        assert udfs.AWARD_LIVESTREAM([[5e5], [1e6]]) == [[50000.0], [100000.0]]
        assert not gc.isenabled()  # paused by the caller: left paused
    finally:
        gc.enable()
