"""Input/output cases for every rule (tests/cases/rules.yaml), through every way in:
scalar engine, vectorised engine, UDF, and the CLI's calc."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest
import yaml

from xl_ecom.rules import engine
from xl_ecom.frontends import udfs
from xl_ecom.common.errors import InputError

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
