"""The rule model: counts agree with awards, requiredness per variant, the text guard of native
formulas, the strict plan loader and every consumer handling every amount kind."""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import openpyxl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xl_ecom.common.errors import XlEcomError
from xl_ecom.policy import load_plan
from xl_ecom.rules import counts, engine, explain, formulas
from xl_ecom.workflows import refresh

from libreoffice import recalculated

EDGE = [10_000_000.004, 10_000_000.005, 10_000_000.0, 10_000_000.01, 9_999_999.995]


def _award_pays(value) -> bool:
    return engine.calculate_cents("AWARD_UPLINK", value) > 0


def test_engine_count_uses_the_awards_rounded_condition():
    mask = counts.condition_mask("AWARD_UPLINK", {"sales": np.array(EDGE)})
    assert mask.tolist() == [_award_pays(v) for v in EDGE]
    assert mask.tolist() == [False, True, False, True, False]


#: (rule, money input whose threshold gates the award, the threshold in yuan)
GATED = [("AWARD_UPLINK", "sales", 10_000_000), ("AWARD_PLATFORM", "retail", 2_000_000),
         ("AWARD_POOR_SITE", "sales", 100_000), ("AWARD_LIVESTREAM", "sales", 500_000),
         ("AWARD_LIVESTREAM", "sales", 1_000_000)]

near = st.sampled_from(GATED).flatmap(
    lambda g: st.tuples(
        st.just(g),
        st.lists(
            st.one_of(
                st.integers(-30, 30).map(lambda k, t=g[2]: t + k / 1000),  # tenths of a cent around it
                st.integers(-3, 3).map(lambda k, t=g[2]: t + k / 100 + 0.005),  # half cents
                st.floats(0, 3 * g[2], allow_nan=False),
                st.none(),
            ),
            min_size=1,
            max_size=30,
        ),
    )
)


@settings(max_examples=200, deadline=None)
@given(near)
def test_counts_agree_with_awards_near_every_threshold(case):
    """A row is counted exactly when the award pays it, scalar and vector, at every half cent."""
    (rule_id, column, _), values = case
    mask = counts.condition_mask(rule_id, {column: values})
    vector = engine.calculate_columns_cents(rule_id, {column: np.array(values, dtype=float)})
    scalar = [engine.calculate_cents(rule_id, v) for v in values]
    assert mask.tolist() == [c is not None and c > 0 for c in scalar] == [bool(c > 0) for c in vector]


def test_counts_at_the_exact_edges():
    cases = {
        "AWARD_UPLINK": [(10_000_000.004, False), (10_000_000.005, True), (10_000_000.0, False),
                         (10_000_000.01, True), (9_999_999.995, False), (10_000_000.0049999, False)],
        "AWARD_PLATFORM": [(2_000_000.004, False), (2_000_000.005, True), (2_000_000.0, False)],
        "AWARD_POOR_SITE": [(99_999.994, False), (99_999.995, True), (100_000.0, True)],  # 达到: inclusive
        "AWARD_LIVESTREAM": [(499_999.994, False), (499_999.995, True), (1e6, True)],
    }
    for rule_id, rows in cases.items():
        column = "retail" if rule_id == "AWARD_PLATFORM" else "sales"
        values = [v for v, _ in rows]
        assert counts.condition_mask(rule_id, {column: values}).tolist() == [want for _, want in rows], rule_id
        assert [engine.calculate_cents(rule_id, v) > 0 for v in values] == [want for _, want in rows], rule_id


def test_counts_read_cells_as_the_award_does():
    # text amounts as the award reads them, a blank is not counted, a count threshold is not rounded
    got = counts.condition_mask("AWARD_UPLINK", {"sales": ["1000万", "1,000.5万", None, "", "２０００万"]})
    assert got.tolist() == [False, True, False, False, True]
    assert counts.condition_mask("TRAINING_SUBSIDY", {"attendees": [79, 80, 200]}).tolist() == [False, True, True]
    with pytest.raises(XlEcomError, match="50%"):
        counts.condition_mask("AWARD_UPLINK", {"sales": ["50%"]})
    with pytest.raises(XlEcomError, match="没有关于“奖励比例”的门槛"):
        counts.condition_mask("AWARD_UPLINK", {"rate": [0.01]})
    with pytest.raises(XlEcomError, match="没有“董事”这种情形"):
        counts.condition_mask("TRAINING_SUBSIDY", {"attendees": [80]}, variant="董事")


def test_count_criteria_shifts_the_threshold_by_half_a_cent():
    assert formulas.count_criteria("AWARD_UPLINK", "sales") == '">=10000000.005"'
    assert formulas.count_criteria("AWARD_POOR_SITE", "sales") == '">=99999.995"'
    # a count threshold is not rounded
    assert formulas.count_criteria("TRAINING_SUBSIDY", "attendees") == '">=80"'


def test_native_count_equals_native_award(tmp_path):
    """LibreOffice: the COUNTIFS of the county target sheet and the award formula agree."""
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "data"
    crit = formulas.count_criteria("AWARD_UPLINK", "sales")
    for i, v in enumerate(EDGE, start=1):
        ws.cell(i, 1, v)
        ws.cell(i, 2, formulas.compile_rule("AWARD_UPLINK", {"sales": f"A{i}"}))
        ws.cell(i, 3, f"=COUNTIFS(A{i}:A{i},{crit})")
    ws.cell(10, 1, f"=COUNTIFS(A1:A{len(EDGE)},{crit})")
    ws.cell(10, 2, f'=COUNTIF(B1:B{len(EDGE)},">0")')
    src = tmp_path / "edge.xlsx"
    wb.save(src)
    out = recalculated([src], tmp_path / "out")[0]
    got = openpyxl.load_workbook(out, data_only=True)["data"]
    for i, v in enumerate(EDGE, start=1):
        paid = got.cell(i, 2).value > 0
        assert bool(got.cell(i, 3).value) == paid == _award_pays(v), (v, got.cell(i, 2).value)
    assert got.cell(10, 1).value == got.cell(10, 2).value == 2


def test_executive_training_needs_no_headcount():
    assert engine.calculate("TRAINING_SUBSIDY", None, 68000, "高管") == Decimal("68000.00")
    assert engine.calculate("TRAINING_SUBSIDY", None, 68000, "基础") is None
    assert engine.calculate("TRAINING_SUBSIDY", None, None, "高管") is None
    got = engine.calculate_columns(
        "TRAINING_SUBSIDY", {"attendees": [np.nan, np.nan, 90], "costs": [68000, 68000, 68000], "kind": ["高管", "基础", ""]}
    )
    assert got[0] == 68000 and np.isnan(got[1]) and got[2] == 50000


def test_native_executive_training_and_text_guard(tmp_path):
    wb = openpyxl.Workbook()
    ws = wb.active
    rows = [(None, 68000, "高管"), (None, 68000, "基础"), (90, 68000, None), (90, "5万", None), (None, None, "高管")]
    for i, row in enumerate(rows, start=1):
        for j, v in enumerate(row, start=1):
            if v is not None:
                ws.cell(i, j, v)
        ws.cell(i, 4, formulas.compile_rule("TRAINING_SUBSIDY", {"attendees": f"A{i}", "costs": f"B{i}", "kind": f"C{i}"}))
    ws.cell(6, 1, "50万")
    ws.cell(6, 4, formulas.compile_rule("AWARD_UPLINK", {"sales": "A6"}))
    src = tmp_path / "train.xlsx"
    wb.save(src)
    got = openpyxl.load_workbook(recalculated([src], tmp_path / "out")[0], data_only=True).active
    assert [got.cell(i, 4).value for i in range(1, 7)] == [68000, None, 50000, "请填数字", None, "请填数字"]


def test_text_guard_can_be_turned_off():
    assert "请填数字" not in formulas.compile_rule("AWARD_UPLINK", {"sales": "A1"}, guard_text=False)


# --- the strict plan loader ----------------------------------------------------------------------

import copy  # noqa: E402
import datetime as dt  # noqa: E402

import yaml  # noqa: E402

from xl_ecom.common.errors import PlanError  # noqa: E402
from xl_ecom.policy import _AMOUNT_KEYS, PLAN_PATH, parse_plan  # noqa: E402
from xl_ecom.workflows import build, departments  # noqa: E402

RAW = yaml.safe_load(PLAN_PATH.read_text(encoding="utf-8"))
D = dt.date(2020, 1, 1)


def _error(data) -> str:
    with pytest.raises(PlanError) as err:
        parse_plan(data, "revised.yaml")
    return str(err.value)


def test_a_misspelt_key_names_file_rule_and_key():
    data = copy.deepcopy(RAW)
    cap = data["rules"]["SUBSIDY_PROMO"]["body"]["cap"]
    cap["cumulatve"] = cap.pop("cumulative")
    msg = _error(data)
    assert "revised.yaml" in msg and "SUBSIDY_PROMO" in msg and "“cumulatve”" in msg and "未知键" in msg


def test_a_missing_key_names_file_rule_and_key():
    data = copy.deepcopy(RAW)
    del data["rules"]["AWARD_PLATFORM"]["body"]["amount"]["rate"]["unit"]
    msg = _error(data)
    assert "revised.yaml" in msg and "AWARD_PLATFORM" in msg and "缺少键“unit”" in msg
    data = copy.deepcopy(RAW)
    del data["rules"]["AWARD_POOR_SITE"]["text"]
    msg = _error(data)
    assert "AWARD_POOR_SITE" in msg and "缺少键“text”" in msg


@pytest.mark.parametrize(
    "edit, key",
    [
        (lambda r: r["AWARD_UPLINK"]["body"]["cap"]["values"].__setitem__(D, "100万"), "values"),
        (lambda r: r["AWARD_UPLINK"]["body"]["cap"].__setitem__("unit", "万元"), "unit"),
        (lambda r: r["AWARD_UPLINK"]["inputs"][0].__setitem__("optional", "是"), "optional"),
        (lambda r: r["AWARD_UPLINK"]["body"]["conditions"][0].__setitem__("input", "salse"), "input"),
        (lambda r: r["AWARD_UPLINK"]["body"]["amount"].__setitem__("type", "percent"), "percent"),
        (lambda r: r["AWARD_UPLINK"]["body"]["conditions"][0]["threshold"].__setitem__("unit", "比例"), "unit"),
        (lambda r: r["AWARD_UPLINK"]["body"]["cap"].__setitem__("cumulatve", True), "cumulatve"),
    ],
)
def test_a_wrong_type_names_file_rule_and_key(edit, key):
    data = copy.deepcopy(RAW)
    edit(data["rules"])
    msg = _error(data)
    assert "revised.yaml" in msg and "AWARD_UPLINK" in msg and key in msg


def test_plan_readings_live_in_the_data():
    plan = load_plan()
    assert plan.rules["SUBSIDY_PROMO"].cumulative_by == "county"
    from xl_ecom.workflows.tables import TABLES

    promo = [a for t in TABLES for a in t.awards if a.rule == "SUBSIDY_PROMO"]
    assert promo and all(a.cumulative_by == "county" for a in promo)
    assert set(plan.rules["AWARD_TOURISM"].paid_per["counts"]) == {"towns", "villages"}
    assert plan.target("T_ONLINE_SALES").actual["column"] == "uplink_sales"
    assert refresh.ONLINE_SALES_TARGET == ("T_ONLINE_SALES", "T_SALES", "uplink_sales")
    # 上浮20% is one factor parameter, shared by the three region variants
    text = PLAN_PATH.read_text(encoding="utf-8")
    assert text.count("reference: 上浮20%") == 1
    uplift = plan.rules["REGION_UPLIFT"].variants
    assert uplift["贫困县"]["amount"]["type"] == "factor"
    assert engine.calculate("REGION_UPLIFT", 1000, "贫困县") == Decimal("1200.00")


# --- every consumer handles every amount kind ----------------------------------------------------

def _p(value, unit="元", **kw):
    return {"values": {D: value}, "unit": unit, "reference": "测试", **kw}


SAMPLES = {
    "rate": {"type": "rate", "basis": "x", "rate": _p(0.1, "比例")},
    "fixed": {"type": "fixed", "amount": _p(500)},
    "tiers": {"type": "tiers", "basis": "x", "tiers": [{"word": "以上", "threshold": _p(1000), "amount": _p(300)}]},
    "per_unit": {"type": "per_unit", "units": [{"input": "n", "amount": _p(20)}]},
    "factor": {"type": "factor", "basis": "x", "factor": _p(1.2, "系数")},
}


def _kind_plan():
    data = copy.deepcopy(RAW)
    for kind, amount in SAMPLES.items():
        data["rules"][f"K_{kind.upper()}"] = {
            "clause": "二（一）",
            "measure": "二（一）-1",
            "name": f"测试{kind}",
            "text": "测试",
            "inputs": [{"name": "x", "label": "金额", "kind": "money"}, {"name": "n", "label": "个数", "kind": "count"}],
            "body": {
                "conditions": [{"input": "x", "word": "超", "threshold": _p(100)}],
                "amount": amount,
                "cap": _p(100000, word="最高"),
            },
        }
    return parse_plan(data)


def test_every_amount_kind_has_a_sample():
    assert set(SAMPLES) == set(_AMOUNT_KEYS)


@pytest.mark.parametrize("kind", sorted(SAMPLES))
def test_every_consumer_handles_every_kind(kind):
    plan = _kind_plan()
    rid = f"K_{kind.upper()}"
    on = D
    cents = engine.calculate_cents(rid, 2000, 3, on=on, plan=plan)
    expected = {"rate": 20000, "fixed": 50000, "tiers": 30000, "per_unit": 6000, "factor": 240000}[kind]
    assert cents == expected
    col = engine.calculate_columns_cents(rid, {"x": [2000.0, 50.0], "n": [3.0, 3.0]}, on=on, plan=plan)
    assert col.tolist() == [expected, 0]
    text = engine.explain(rid, 2000, 3, on=on, plan=plan).to_text()
    assert text.endswith(f"{expected // 100:,}.00元")
    amount_line = {"rate": "比例 10%", "fixed": "定额：500.00元", "tiers": "分档：≥1,000.00元给予300.00元",
                   "per_unit": "定额：个数 3 × 20.00元 = 60.00元", "factor": "系数 1.2"}[kind]
    assert amount_line in text
    unmet = explain.unmet_threshold(plan.rules[rid], engine.explain(rid, 50, 3, on=on, plan=plan).steps)
    assert unmet.startswith("金额 50.00元，须>100.00元")
    assert formulas.compile_rule(rid, {"x": "A1", "n": "B1"}, on=on, plan=plan).startswith("=IF(")
    assert departments.rule_terms(rid, on=on, plan=plan)
    assert departments.rule_summary(rid, on=on, plan=plan)
    assert build.rule_cases(rid, on=on, plan=plan)
    xs = [100.004, 100.005, 999.995, 5000]
    paid = [engine.calculate_cents(rid, x, 3, on=on, plan=plan) > 0 for x in xs]
    assert counts.condition_mask(rid, {"x": xs}, on=on, plan=plan).tolist() == paid
    # refresh's target counts are the same test (a tiered amount's lowest tier included)
    assert refresh._condition_mask(rid, "x", np.array(xs), on, plan).tolist() == paid
    assert paid == ([False, False, True, True] if kind == "tiers" else [False, True, True, True])
    body = engine.resolve(rid, on=on, plan=plan).variants[""]
    assert engine._body_inputs(body) == ({"x", "n"} if kind == "per_unit" else {"x"})
    assert formulas.count_criteria(rid, "x", on=on, plan=plan) == '">=100.005"'


def test_model_kinds_match_the_loader_kinds_and_unknown_kinds_fail_loudly():
    from xl_ecom.rules import AMOUNT_KINDS, Body

    assert {k.type for k in AMOUNT_KINDS} == set(SAMPLES) == set(_AMOUNT_KEYS)

    class Bogus:
        type = "bogus"

    plan = load_plan()
    rule = plan.rules["AWARD_POOR_SITE"]
    body = Body((), Bogus())
    with pytest.raises(TypeError, match="unhandled amount kind"):
        engine._run(body, {"sales": 1}, engine._SCALAR)
    with pytest.raises(TypeError, match="unhandled amount kind"):
        departments._body_terms(rule, "", body)
    with pytest.raises(TypeError, match="unhandled amount kind"):
        engine._body_inputs(body)
    with pytest.raises(TypeError, match="unhandled amount kind"):
        explain.amount_text(rule, explain.AmountStep(Bogus(), 1, None, 1))
    with pytest.raises(TypeError, match="unhandled amount kind"):
        counts._gates(body)
    with pytest.raises(TypeError, match="unhandled explanation step"):
        explain.step_text(rule, ("condition", None, 1, True))
    with pytest.raises(TypeError, match="unhandled explanation step"):
        explain.unmet_threshold(rule, [("condition", None, 1, False)])


def test_explanation_steps_are_typed():
    """EXPLAIN's steps are typed (one per condition, the amount, the cap), read by their fields; no
    step reads as the earlier tuple form, and no model class as the earlier dict form."""
    ex = engine.explain("AWARD_UPLINK", 30_000_000)
    kinds = [type(s) for s in ex.steps]
    assert kinds == [explain.ConditionStep, explain.AmountStep, explain.CapStep]
    cond, amount, cap = ex.steps
    assert (cond.condition.input, cond.value, cond.ok) == ("sales", 3_000_000_000, True)
    assert amount.amount.type == "rate" and cap.paid <= cap.raw
    assert set(explain.STEP_KINDS) == set(kinds)
    with pytest.raises(TypeError):
        tuple(cond)
    with pytest.raises(TypeError):
        amount.amount["type"]


def test_native_compiler_and_case_generator_fail_loudly_on_an_unknown_kind(monkeypatch):
    from xl_ecom.rules import Body

    class Bogus:
        type = "bogus"

    plan = load_plan()
    resolved = engine.resolve("AWARD_POOR_SITE", plan=plan)
    fake = engine._Resolved(resolved.rule, resolved.on, {"": Body((), Bogus())})
    monkeypatch.setattr(engine, "_resolve_cached", lambda *a: fake)
    with pytest.raises(TypeError, match="unhandled amount kind"):
        formulas.compile_rule("AWARD_POOR_SITE", {"sales": "A1"}, plan=plan)
    with pytest.raises(TypeError, match="unhandled amount kind"):
        build.rule_cases("AWARD_POOR_SITE", plan=plan)
    with pytest.raises(TypeError, match="unhandled amount kind"):
        departments.rule_terms("AWARD_POOR_SITE", plan=plan)


def test_executive_training_udf():
    from xl_ecom.frontends import udfs

    assert udfs.TRAINING_SUBSIDY(None, 68000, "高管") == 68000
    assert udfs.TRAINING_SUBSIDY(None, 68000, "基础") in ("", None)
