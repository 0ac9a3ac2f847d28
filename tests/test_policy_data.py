"""The data file held against the document itself."""

from __future__ import annotations

import re

import pytest
import yaml

from xl_ecom.policy import PLAN_PATH

UNIT_PAREN = re.compile(r"（((?:市|各县区|淮南|中国人民银行)[^（）]*)）")


def _units_in_text(source: str) -> list[list[str]]:
    """Every unit parenthesis in the body text, split into its units, in order."""
    body = source.split("附件：")[0]
    return [re.split("[、，]", m.group(1)) for m in UNIT_PAREN.finditer(body)]


def test_every_department_named_in_the_text_is_in_the_data(source_text, plan):
    named = {u for group in _units_in_text(source_text) for u in group}
    assert named == set(plan.unit_names)


def test_measures_follow_the_parentheses(source_text, plan):
    groups = _units_in_text(source_text)
    assert len(groups) == len(plan.measures)
    for group, measure in zip(groups, plan.measures):
        assert measure.lead == group[0]
        assert list(measure.cooperating) == group[1:]


def test_texts_are_verbatim(source_text, plan):
    flat = source_text.replace("\n", "")
    for m in plan.measures:
        assert m.text in flat, m.id
    for t in plan.targets:
        assert t.text in flat, t.id
    for r in plan.rules.values():
        assert r.text in flat, r.id


def test_parameter_references_quote_the_text(source_text):
    data = yaml.safe_load(PLAN_PATH.read_text(encoding="utf-8"))
    refs = []

    def walk(node):
        if isinstance(node, dict):
            if "values" in node and "reference" in node:
                refs.append(node["reference"])
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(data["rules"])
    assert len(refs) > 20
    flat = source_text.replace("\n", "")
    for ref in refs:
        assert ref in flat, ref


def test_annex_matches_the_document(source_text, plan):
    annex = source_text.split("目标任务分解表", 2)[-1]
    cells = [c.strip() for c in annex.split("\n") if c.strip()]
    rows = []
    for i, cell in enumerate(cells):
        if cell in plan.counties:
            rows.append((cell, int(cells[i + 1]), int(cells[i + 2]), int(cells[i + 3])))
    assert [r[0] for r in rows] == list(plan.counties)
    for county, towns, villages, firms in rows:
        assert plan.annex_value(county, "demo_towns") == towns
        assert plan.annex_value(county, "demo_villages") == villages
        assert plan.annex_value(county, "uplink_enterprises") == firms


def test_annex_totals(plan):
    from xl_ecom.policy.check import annex_totals

    assert annex_totals(plan) == {"demo_towns": 8, "demo_villages": 14, "uplink_enterprises": 9}


@pytest.mark.parametrize(
    "target_id, word, value",
    [
        ("T_UPLINK_ENTERPRISES", "达到", 4),
        ("T_DEMO_TOWNS", "以上", 3),
        ("T_DEMO_VILLAGES", "以上", 15),
        ("T_ONLINE_SALES", "超", 600_000_000),
        ("T_COUNTY_ENTITIES", "达到", 300),
        ("T_SANPIN_YIBIAO", "以上", 41),
        ("T_TRANSPORT_STATIONS", "达到", 2),
        ("T_EXPRESS_POINTS", "达到", 20),
        ("T_EMPLOYMENT_RATE", "左右", 0.6),
        ("T_VOCATIONAL_POINTS", "不少于", 10),
        ("T_TOURISM_TOWNS", "以上", 2),
        ("T_TOURISM_VILLAGES", "以上", 4),
    ],
)
def test_quantified_targets(plan, target_id, word, value):
    t = plan.target(target_id)
    assert (t.word, t.value) == (word, value)
    assert t.lead


def test_deadlines_where_the_text_says_by_end_2020(plan):
    import datetime as dt

    for m in plan.measures:
        if "到2020年底" in m.text:
            assert m.deadline == dt.date(2020, 12, 31), m.id


def test_numbering_is_normalised_but_the_printed_label_is_kept(plan):
    labels = {t["id"]: t["source_label"] for t in plan.tasks}
    assert labels["二（二）"] == "（2）"
    assert labels["二（三）"] == "（3）"
    assert [t["id"] for t in plan.tasks][:8] == [f"二（{n}）" for n in "一二三四五六七八"]


def test_plan_check_reports_the_flaws(plan, source_text):
    from xl_ecom.policy.check import WARNING, check_plan

    findings = check_plan(plan, source_text)
    warnings = [str(f) for f in findings if f.severity == WARNING]
    assert any("示范村" in w and "14" in w and "15" in w for w in warnings)
    assert any("（2）" in w for w in warnings)
    assert any("（3）" in w for w in warnings)
    assert len(warnings) == 3
