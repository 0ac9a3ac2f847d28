"""Input/output cases for every rule (tests/cases/rules.yaml), through every way in:
scalar engine, vectorised engine, UDF, and the CLI's calc."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest
import yaml

from xl_ecom.common.errors import InputError
from xl_ecom.frontends import udfs
from xl_ecom.rules import engine

CASES = yaml.safe_load((Path(__file__).parent / "cases" / "rules.yaml").read_text(encoding="utf-8"))
ERRORS = yaml.safe_load((Path(__file__).parent / "cases" / "errors.yaml").read_text(encoding="utf-8"))
FLAT = [(rule, case) for rule, cases in CASES.items() for case in cases]


def _id(item):
    rule, case = item
    return f"{rule}-{case['args']}"


def test_every_rule_has_cases(plan):
    assert set(CASES) == set(plan.rules)
    for rule, cases in CASES.items():
        assert len(cases) >= 3, rule


@pytest.mark.parametrize("item", FLAT, ids=[_id(i) for i in FLAT])
def test_udf_and_scalar_engine(item):
    rule, case = item
    got = udfs.RULE_UDFS[rule](*case["args"])
    assert got == case["expected"], case.get("why")
    if not isinstance(case["args"][0], list):
        cents = engine.calculate_cents(rule, *case["args"])
        expected = None if case["expected"] == "" else int(Decimal(str(case["expected"])) * 100)
        assert cents == expected


@pytest.mark.parametrize("item", FLAT, ids=[_id(i) for i in FLAT])
def test_vector_engine_agrees(item, plan):
    rule, case = item
    spec = plan.rules[rule]
    args = case["args"]
    if isinstance(args[0], list):
        data = {spec.inputs[0].name: np.array(args[0], dtype=float)}
        expected = case["expected"]
    else:
        data = {}
        for inp, value in zip(spec.inputs, args):
            if value is None:
                continue
            if inp.kind == "choice":
                data[inp.name] = np.array([value], dtype=object)
            elif isinstance(value, str):
                data[inp.name] = np.array([value], dtype=object)
            else:
                data[inp.name] = np.array([value], dtype=float)
        for inp in spec.inputs:
            if inp.name not in data and not inp.optional and not inp.default_input:
                data[inp.name] = np.array([np.nan])
        expected = [case["expected"]]
    got = engine.calculate_columns(rule, data)
    for g, e in zip(got, expected):
        if e == "":
            assert np.isnan(g)
        else:
            assert round(g * 100) == int(Decimal(str(e)) * 100)


@pytest.mark.parametrize("case", ERRORS, ids=[f"{c['rule']}-{c['args']}" for c in ERRORS])
def test_bad_input_names_the_value(case):
    with pytest.raises(InputError) as info:
        udfs.RULE_UDFS[case["rule"]](*case["args"])
    message = str(info.value)
    for part in case["contains"]:
        assert part in message


def test_issue_example_rounding():
    assert engine.calculate("AWARD_UPLINK", "12,345,678.90") == Decimal("123456.79")


def test_ceiling_rate_is_the_default_and_lower_rates_apply():
    top = engine.calculate("AWARD_UPLINK", 50_000_000)
    assert top == Decimal("500000.00")
    assert engine.calculate("AWARD_UPLINK", 50_000_000, 0.01) == top
    assert engine.calculate("AWARD_UPLINK", 50_000_000, "0.5%") == Decimal("250000.00")


def test_policy_date_before_the_plan_is_refused():
    with pytest.raises(InputError, match="2019-06-30"):
        engine.calculate("AWARD_LIVESTREAM", 800000, on="2019-06-30")


def test_revised_plan_is_data_not_code(tmp_path, plan):
    """A dated value added to the YAML changes results from its date on, with no code change."""
    from xl_ecom.policy import PLAN_PATH, load_plan

    text = PLAN_PATH.read_text(encoding="utf-8")
    revised = text.replace(
        "rate: {word: 以内, values: {2020-01-01: 0.01}, unit: 比例, reference: 1%以内}",
        "rate: {word: 以内, values: {2020-01-01: 0.01, 2021-01-01: 0.02}, unit: 比例, reference: 1%以内}",
    )
    assert revised != text
    path = tmp_path / "plan-2021.yaml"
    path.write_text(revised, encoding="utf-8")
    p2021 = load_plan(path)
    assert engine.calculate("AWARD_UPLINK", 20_000_000, on="2020-12-31", plan=p2021) == Decimal("200000.00")
    assert engine.calculate("AWARD_UPLINK", 20_000_000, on="2021-01-01", plan=p2021) == Decimal("400000.00")
    assert engine.calculate("AWARD_UPLINK", 20_000_000, on="2021-01-01") == Decimal("200000.00")


def test_sequence_of_ranges_keeps_shape():
    col = udfs.AWARD_LIVESTREAM([[499999.99], [500000], [None], [1e6]])
    assert col == [[0.0], [50000.0], [""], [100000.0]]
    row = udfs.AWARD_LIVESTREAM([[499999.99, 500000]])
    assert row == [[0.0, 50000.0]]
    assert udfs.AWARD_LIVESTREAM([[800000]]) == 50000.0
    assert udfs.TRAINING_SUBSIDY([[80], [79]], [[60000], [60000]], "基础") == [[50000.0], [0.0]]


def test_mismatched_ranges_are_refused():
    with pytest.raises(InputError, match="大小不一致"):
        udfs.TRAINING_SUBSIDY([[80], [79]], [[1], [2], [3]])


def test_promo_cap_runs_down_a_column():
    assert udfs.SUBSIDY_PROMO([[1e6], [1e6], [5e5]]) == [[50000.0], [50000.0], [0.0]]


# --- the vector path's own normalisation (finite cents, blank masks, choice rows) -----------------

def test_vector_choice_columns_mix_exact_spelt_and_blank_choices():
    """Exact choices are matched by comparison, everything else normalised once per value; the
    result equals the scalar path row by row (2-choice and 4-choice columns)."""
    import pandas as pd

    kinds = np.array(["是", "否", None, " 是", "TRUE", "0", True, np.nan, "否"], dtype=object)
    amounts = np.full(len(kinds), 100_000.0)
    got = engine.calculate_columns_cents("SUBSIDY_POVERTY_PURCHASE", {"amount": amounts, "order_based": kinds})
    want = [engine.calculate_cents("SUBSIDY_POVERTY_PURCHASE", 100_000, k) for k in kinds]
    assert got.tolist() == want
    regions = ["", "贫困县", None, "行蓄洪区 ", "大别山革命老区", "贫困县"]
    frame = pd.DataFrame({"amount": [1000.0] * len(regions), "region_type": regions})
    got = engine.calculate_columns_cents("REGION_UPLIFT", frame)  # a DataFrame works as the mapping
    assert got.tolist() == [engine.calculate_cents("REGION_UPLIFT", 1000, r) for r in regions]
    assert got.tolist() == [100000, 120000, 100000, 120000, 120000, 120000]
    with pytest.raises(InputError, match="“董事”无效"):
        engine.calculate_columns_cents("TRAINING_SUBSIDY", {"attendees": [80, 80], "costs": [1, 1], "kind": ["基础", "董事"]})


def test_vector_path_leaves_its_inputs_alone_and_refuses_infinities():
    costs = np.array([60_000.0, 70_000.0])
    sales = np.array([2e7, np.nan])
    engine.calculate_columns_cents("TRAINING_SUBSIDY", {"attendees": np.array([90.0, 10.0]), "costs": costs, "kind": "高管"})
    engine.calculate_columns_cents("AWARD_UPLINK", {"sales": sales})
    assert costs.tolist() == [60_000.0, 70_000.0] and sales[0] == 2e7 and np.isnan(sales[1])
    for rule, column in (("AWARD_UPLINK", "sales"), ("AWARD_TOURISM", "towns")):
        data = {"sales": [1.0, np.inf]} if column == "sales" else {"towns": [1.0, np.inf], "villages": [0.0, 0.0]}
        with pytest.raises(InputError, match="inf"):
            engine.calculate_columns_cents(rule, data)
    with pytest.raises(InputError, match="“-1”不能为负数"):
        engine.calculate_columns_cents("AWARD_TOURISM", {"towns": [np.nan, -1.0], "villages": [0.0, 0.0]})
    with pytest.raises(InputError, match="“1.5”应为整数"):
        engine.calculate_columns_cents("AWARD_TOURISM", {"towns": [1.5], "villages": [0.0]})


def test_vector_half_cents_are_exact():
    """Every element at a half cent goes to the exact path: x.xx5 yuan rounds up, as Decimal does."""
    yuan = np.array([k / 1000 for k in range(5, 100_000, 10)])  # 0.005, 0.015, … (none exact in binary)
    got = engine.calculate_columns_cents("SUBSIDY_FACILITY", {"investment": yuan})
    want = [engine.calculate_cents("SUBSIDY_FACILITY", float(y)) for y in yuan]
    assert got.tolist() == want


def test_vector_cumulative_cap_per_group_equals_the_scalar_sequence_of_each_group():
    sales = [1.5e6, 1e5, 1e6, 2e5, 3e5, 9e5, 4e5]
    county = ["凤台县", "寿县", "凤台县", "凤台县", "寿县", "凤台县", "寿县"]
    got = engine.calculate_columns_cents("SUBSIDY_PROMO", {"event_sales": np.array(sales)}, groups=np.array(county, dtype=object))
    import pandas as pd

    frame = pd.DataFrame({"event_sales": sales})
    assert engine.calculate_columns_cents("SUBSIDY_PROMO", frame, groups=pd.Series(county)).tolist() == got.tolist()
    for name in set(county):
        rows = [(s,) for s, c in zip(sales, county) if c == name]
        assert [int(x) for x, c in zip(got, county) if c == name] == engine.calculate_sequence("SUBSIDY_PROMO", rows)
