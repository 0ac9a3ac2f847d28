"""The rule model: counts agree with awards, requiredness per variant, the text guard of native
formulas, the strict plan loader and every consumer handling every amount kind."""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import openpyxl
import pytest

from libreoffice import recalculated
from xl_ecom import engine, formulas, refresh
from xl_ecom.policy import load_plan

EDGE = [10_000_000.004, 10_000_000.005, 10_000_000.0, 10_000_000.01, 9_999_999.995]


def _award_pays(value) -> bool:
    return engine.calculate_cents("AWARD_UPLINK", value) > 0


def test_engine_count_uses_the_awards_rounded_condition():
    plan = load_plan()
    mask = refresh._condition_mask("AWARD_UPLINK", "sales", np.array(EDGE), None, plan)
    assert mask.tolist() == [_award_pays(v) for v in EDGE]
    assert mask.tolist() == [False, True, False, True, False]


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
