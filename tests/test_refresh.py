"""刷新 (xl-ecom refresh): recomputed figures against the scalar engine, generated areas only,
atomic write with backup, lock file, VBA project and ribbon kept, bad input reported by cell,
LibreOffice recalculating the annex from the refreshed 完成数.

The workbook is the real one (xl_ecom.workflows.build); input rows are typed into it with openpyxl.
Expected figures are computed independently, row by row, with the scalar engine
(engine.calculate / calculate_cents with paid_before for the cumulative cap), so the vectorised
path refresh uses is checked against the exact one.
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import re
import zipfile
from decimal import Decimal
from functools import lru_cache
from pathlib import Path

import openpyxl
import pytest

from xl_ecom.ooxml import xlsm
from xl_ecom.policy import load_plan
from xl_ecom.rules import engine
from xl_ecom.workflows import layout, refresh
from xl_ecom.workflows.tables import TABLES, TOURISM_COUNTS, table

PLAN = load_plan()
COUNTIES = PLAN.counties

# ---------------------------------------------------------------------------------------------
# fixture data: boundary cases of every rule, typed as a clerk would
# ---------------------------------------------------------------------------------------------

FIXTURE = {
    "T_SALES": [
        # exactly 1000万: 超 excludes it (no award, not counted); 200万 exactly: 超 excludes; 50万: 达到 includes
        {"county": "寿县", "enterprise": "甲公司", "uplink_sales": 10000000, "platform_retail": 2000000, "livestream_sales": 500000},
        {"county": "寿县", "enterprise": "乙公司", "uplink_sales": 10000000.01, "platform_retail": 2000000.01, "livestream_sales": 499999.99},
        None,  # a blank row between data rows is skipped
        {"county": "凤台县", "enterprise": "丙公司", "uplink_sales": 150000000, "platform_retail": 30000000, "livestream_sales": 1000000},
        {"county": "田家庵区", "enterprise": "丁公司", "uplink_sales": "5000万", "livestream_sales": "120万"},
        {"county": "田家庵区", "enterprise": "戊公司", "uplink_sales": 12345678.9},
        {"county": "毛集区", "enterprise": "己公司", "platform_retail": 2500000},
    ],
    "T_LINKAGE": [
        {"county": "寿县", "enterprise": "甲公司", "partner": "一号合作社", "agreement_years": 2, "annual_purchase": 500000, "online_purchase": 300000},
        {"county": "寿县", "enterprise": "乙公司", "partner": "二号基地", "agreement_years": 1.5, "annual_purchase": 900000},
        {"county": "潘集区", "enterprise": "庚公司", "partner": "三号合作社", "agreement_years": 3, "annual_purchase": 8000000},
    ],
    "T_EXPO": [
        {"county": "大通区", "enterprise": "辛公司", "event": "农交会", "booth_fees": 12345.67, "personnel_costs": 1000.01},
    ],
    "T_PROMO": [
        {"county": "凤台县", "event": "直播一", "date": dt.datetime(2020, 5, 1), "event_sales": 1500000},
        {"county": "寿县", "event": "对接会", "date": dt.datetime(2020, 5, 2), "event_sales": 100000},
        {"county": "凤台县", "event": "直播二", "date": dt.datetime(2020, 6, 1), "event_sales": 1000000},
        {"county": "凤台县", "event": "直播三", "date": dt.datetime(2020, 7, 1), "event_sales": 200000},
    ],
    "T_TRAINING": [
        {"county": "谢家集区", "training": "基础班一", "kind": "基础", "attendees": 80, "costs": 60000},
        {"county": "谢家集区", "training": "基础班二", "kind": "基础", "attendees": 79, "costs": 30000},
        {"county": "八公山区", "training": "高管班", "kind": "高管", "attendees": 10, "costs": 70000},
    ],
    "T_FACILITY": [
        {"county": "潘集区", "enterprise": "壬公司", "project": "冷库", "investment": 6000000, "rent": 500000},
        {"county": "毛集区", "enterprise": "癸公司", "project": "分拣线", "investment": 333333.33},
    ],
    "T_POOR_SITE": [
        {"county": "寿县", "site": "一号网点", "sales": 100000},
        {"county": "寿县", "site": "二号网点", "sales": 99999.99},
    ],
    "T_PURCHASE": [
        {"county": "凤台县", "enterprise": "子公司", "amount": 100000, "order_based": "是"},
        {"county": "凤台县", "enterprise": "丑公司", "amount": 100000, "order_based": "否"},
        {"county": "大通区", "enterprise": "寅公司", "amount": 55555.55},
    ],
    "T_DEMO": [
        {"county": "寿县", "name": "正阳关镇", "kind": "省级电商示范镇"},
        {"county": "寿县", "name": "甲村", "kind": "省级电商示范村"},
        {"county": "寿县", "name": "乙村", "kind": "省级电商示范村"},
        {"county": "寿县", "name": "丙村", "kind": "省级电商示范村"},
        {"county": "凤台县", "name": "丁村", "kind": "省级电商示范村"},
        {"county": "大通区", "name": "上窑镇", "kind": "省级特色旅游名镇"},
        {"county": "大通区", "name": "戊村", "kind": "省级特色旅游名村"},
        {"county": "大通区", "name": "己村", "kind": "省级特色旅游名村"},
    ],
}

POLICY_DATE = dt.date(2020, 12, 31)  # the 设置 default the builder writes


@lru_cache(maxsize=1)
def built_bytes() -> bytes:
    from xl_ecom.workflows import build

    return build.build_bytes()


def write_rows(path: Path, rows_by_table: dict, *, keep_ribbon: bool = True) -> Path:
    """Type ``rows_by_table`` (table key -> list of dicts or None for a blank row) into the input
    tables of the workbook at ``path`` with openpyxl, as a clerk's entries."""
    original = path.read_bytes()
    wb = openpyxl.load_workbook(io.BytesIO(original), keep_vba=True)
    for key, rows in rows_by_table.items():
        t = table(key)
        ws = wb[t.sheet]
        for i, row in enumerate(rows):
            r = layout.INPUT_FIRST_ROW + i
            for c, col in enumerate(t.columns, start=1):
                ws.cell(row=r, column=c).value = None if row is None else row.get(col.key)
    if keep_ribbon:
        from xl_ecom.workflows.collect import save_city_workbook

        data, _ = save_city_workbook(wb, path, original)
    else:
        buf = io.BytesIO()
        wb.save(buf)
        data = buf.getvalue()
    path.write_bytes(data)
    return path


def city_workbook(tmp_path: Path, rows_by_table=FIXTURE) -> Path:
    path = tmp_path / layout.WORKBOOK_NAME
    path.write_bytes(built_bytes())
    if rows_by_table:
        write_rows(path, rows_by_table)
    return path


# ---------------------------------------------------------------------------------------------
# expected figures: scalar engine, one row at a time
# ---------------------------------------------------------------------------------------------


def expected_awards(rows_by_table=FIXTURE, on=POLICY_DATE) -> dict:
    """{(sheet, row, rule): cents} for every award, computed with the scalar engine."""
    out = {}
    for t in TABLES:
        rows = rows_by_table.get(t.key, [])
        for award in t.awards:
            paid = {}
            for i, row in enumerate(rows):
                if row is None:
                    continue
                kwargs = {inp: row.get(key) for inp, key in award.inputs.items()}
                before = paid.get(row["county"], 0) if award.cumulative_by else 0
                cents = engine.calculate_cents(award.rule, on=on, paid_before=before, **kwargs)
                if cents is None:
                    continue
                if award.cumulative_by:
                    paid[row["county"]] = before + cents
                out[(t.sheet, layout.INPUT_FIRST_ROW + i, award.rule)] = cents
    demo = rows_by_table.get("T_DEMO", [])
    for county in COUNTIES:
        counts = {k: sum(1 for r in demo if r and r["county"] == county and r[col] == v) for k, (_, col, v) in TOURISM_COUNTS.items()}
        out[("示范创建", county, "AWARD_TOURISM")] = engine.calculate_cents("AWARD_TOURISM", on=on, **counts)
    return out


def expected_by_county(rows_by_table=FIXTURE, on=POLICY_DATE) -> dict:
    """{county: {rule: cents}}."""
    awards = expected_awards(rows_by_table, on)
    rows_county = {}
    for key, rows in rows_by_table.items():
        for i, row in enumerate(rows):
            if row:
                rows_county[(table(key).sheet, layout.INPUT_FIRST_ROW + i)] = row["county"]
    out = {c: {} for c in COUNTIES}
    for (sheet, row, rule), cents in awards.items():
        county = row if isinstance(row, str) else rows_county[(sheet, row)]
        out[county][rule] = out[county].get(rule, 0) + cents
    return out


def uplink_count(rows, county, on=POLICY_DATE) -> int:
    """Rows whose uplink sales meet AWARD_UPLINK's threshold: the scalar engine's own test
    (a positive award at rate 1% means the 超1000万元 condition held)."""
    n = 0
    for row in rows:
        if row and row["county"] == county and row.get("uplink_sales") is not None:
            if engine.calculate_cents("AWARD_UPLINK", row["uplink_sales"], on=on) > 0:
                n += 1
    return n


def sheet_values(ws) -> dict:
    return {(c.row, c.column): c.value for row in ws.iter_rows() for c in row if c.value is not None}


def detail_rows(wb) -> dict:
    """奖补明细 → {(sheet, row or county, rule name): yuan}."""
    ws = wb[layout.SHEET_AWARDS]
    out = {}
    for row in ws.iter_rows(min_row=4, values_only=True):
        if row[0] in (None, "合计"):
            continue
        _, county, sheet, r, _name, _clause, rule_name, amount = row[:8]
        key = (sheet, county if r == "县区汇总" else r, rule_name)
        assert key not in out
        out[key] = amount
    return out


def yuan(cents) -> Decimal:
    return (Decimal(int(cents)) / 100).quantize(Decimal("0.01"))


# ---------------------------------------------------------------------------------------------
# figures
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def refreshed(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("refresh")
    path = city_workbook(tmp)
    before = path.read_bytes()
    report = refresh.refresh_workbook(path)
    return path, before, report


def test_awards_per_row_equal_the_scalar_engine(refreshed):
    path, _, report = refreshed
    wb = openpyxl.load_workbook(path)
    got = detail_rows(wb)
    name = {rid: r.name for rid, r in PLAN.rules.items()}
    expected = {}
    for (sheet, row, rule), cents in expected_awards().items():
        if cents > 0:
            expected[(sheet, row, name[rule])] = yuan(cents)
    assert {k: Decimal(str(v)).quantize(Decimal("0.01")) for k, v in got.items()} == expected
    # the boundary cases really are in the data: 超 excludes 1000万 itself, 达到 includes 50万
    assert ("企业销售", 4, "农村产品上行奖励") not in got
    assert got[("企业销售", 5, "农村产品上行奖励")] == 100000.0
    assert got[("企业销售", 4, "电商直播奖励")] == 50000.0
    # cumulative cap per county in row order: 凤台县 75000 + 25000, then nothing; 寿县 unaffected
    assert got[("促销活动", 4, "产销对接及直播促销活动补助")] == 75000.0
    assert got[("促销活动", 5, "产销对接及直播促销活动补助")] == 5000.0
    assert got[("促销活动", 6, "产销对接及直播促销活动补助")] == 25000.0
    assert ("促销活动", 7, "产销对接及直播促销活动补助") not in got
    # 合计 row
    total = next(r for r in wb[layout.SHEET_AWARDS].iter_rows(min_row=4, values_only=True) if r[0] == "合计")
    assert Decimal(str(total[7])).quantize(Decimal("0.01")) == yuan(sum(expected_awards().values()))
    assert report.result.total_cents == sum(expected_awards().values())


def test_totals_per_county_and_clause(refreshed):
    path, _, _ = refreshed
    wb = openpyxl.load_workbook(path)
    ws = wb[layout.SHEET_SUMMARY]
    header = [c.value for c in ws[3]]
    assert header[0] == "县区" and header[-1] == "合计" or header[-1] is None
    by_county = expected_by_county()
    names = {f"{r.name}（{r.clause}）": rid for rid, r in PLAN.rules.items()}
    rows = {r[0]: r for r in ws.iter_rows(min_row=4, max_row=4 + len(COUNTIES), values_only=True)}
    used_cols = [(j, names[h]) for j, h in enumerate(header) if h in names]
    assert {rid for _, rid in used_cols} == {rid for c in by_county.values() for rid, v in c.items() if v}
    for county in COUNTIES:
        for j, rid in used_cols:
            assert Decimal(str(rows[county][j])).quantize(Decimal("0.01")) == yuan(by_county[county].get(rid, 0)), (county, rid)
        total_col = header.index("合计")
        assert Decimal(str(rows[county][total_col])).quantize(Decimal("0.01")) == yuan(sum(by_county[county].values()))
    # per clause: the second block lists 条款, 奖补项目, …, 笔数, 金额
    start = next(r for r in range(4, ws.max_row + 1) if ws.cell(row=r, column=1).value == "条款")
    clause_rows = {ws.cell(row=r, column=2).value: (ws.cell(row=r, column=1).value, ws.cell(row=r, column=6).value, ws.cell(row=r, column=7).value)
                   for r in range(start + 1, ws.max_row + 1) if ws.cell(row=r, column=2).value}
    awards = expected_awards()
    for rid, rule in PLAN.rules.items():
        cents = [v for (_, _, r), v in awards.items() if r == rid]
        if not any(cents):
            continue
        clause, count, amount = clause_rows[rule.name]
        assert clause == rule.clause
        assert count == sum(1 for v in cents if v > 0)
        assert Decimal(str(amount)).quantize(Decimal("0.01")) == yuan(sum(cents))


def test_progress_against_the_annex(refreshed):
    path, _, report = refreshed
    wb = openpyxl.load_workbook(path)
    annex = wb[layout.SHEET_ANNEX]
    first, _, _ = layout.annex_rows(len(COUNTIES))
    demo = FIXTURE["T_DEMO"]
    expected = {}
    for county in COUNTIES:
        expected[county] = {
            "demo_towns": sum(1 for r in demo if r["county"] == county and r["kind"] == "省级电商示范镇"),
            "demo_villages": sum(1 for r in demo if r["county"] == county and r["kind"] == "省级电商示范村"),
            "uplink_enterprises": uplink_count(FIXTURE["T_SALES"], county),
        }
    assert expected["寿县"]["uplink_enterprises"] == 1  # 甲 (exactly 1000万) is not counted, 乙 is
    assert expected["田家庵区"]["uplink_enterprises"] == 2
    progress = wb[layout.SHEET_PROGRESS]
    for i, county in enumerate(COUNTIES):
        assert annex.cell(row=first + i, column=1).value == county
        assert progress.cell(row=5 + i, column=1).value == county
        for b, col in enumerate(PLAN.annex_columns):
            actual = expected[county][col["key"]]
            target = PLAN.annex_value(county, col["key"])
            assert annex.cell(row=first + i, column=layout.annex_col(b, "完成数")).value == actual
            base = 2 + 4 * b
            assert progress.cell(row=5 + i, column=base).value == target
            assert progress.cell(row=5 + i, column=base + 1).value == actual
            assert progress.cell(row=5 + i, column=base + 2).value == pytest.approx(actual / target)
            assert progress.cell(row=5 + i, column=base + 3).value == target - actual
    # city totals against the text's targets, judged with the targets' own boundary words
    city = {t.target_id: t for t in report.result.city}
    towns = sum(expected[c]["demo_towns"] for c in COUNTIES)
    assert city["T_DEMO_TOWNS"].actual == towns and city["T_DEMO_TOWNS"].met is (towns >= 3)
    assert city["T_UPLINK_ENTERPRISES"].actual == 4 and city["T_UPLINK_ENTERPRISES"].met is True  # 达到4家 includes 4
    assert city["T_TOURISM_VILLAGES"].actual == 2 and city["T_TOURISM_VILLAGES"].met is False
    assert city["T_EMPLOYMENT_RATE"].met is None  # 左右 is not a boundary
    texts = [progress.cell(row=r, column=2).value for r in range(1, progress.max_row + 1)]
    for t in PLAN.targets:
        assert t.text in texts
    header = texts.index("目标（方案原文）") + 1
    col = {progress.cell(row=header, column=c).value: c for c in range(1, progress.max_column + 1) if progress.cell(row=header, column=c).value}
    row = texts.index(PLAN.target("T_UPLINK_ENTERPRISES").text) + 1
    assert progress.cell(row=row, column=col["是否达到"]).value == "已达到"
    assert progress.cell(row=row, column=col["实际完成"]).value == 4
    # a rate shows as a percentage and money as money, not as a rounded count
    rate_row = texts.index(PLAN.target("T_EMPLOYMENT_RATE").text) + 1
    assert progress.cell(row=rate_row, column=col["目标值"]).number_format == "0.0%"
    money_row = texts.index(PLAN.target("T_ONLINE_SALES").text) + 1
    assert progress.cell(row=money_row, column=col["实际完成"]).number_format == "#,##0.00"
    assert f"B{row}:E{row}" in {str(r) for r in progress.merged_cells.ranges}


def test_progress_chart_is_a_native_bar_chart_of_the_counties(refreshed):
    path, _, _ = refreshed
    with zipfile.ZipFile(path) as z:
        charts = [n for n in z.namelist() if re.match(r"xl/charts/chart\d+\.xml$", n)]
        assert len(charts) == 1
        xml = z.read(charts[0]).decode("utf-8")
        wb_xml = z.read("xl/workbook.xml").decode("utf-8")
    from defusedxml import ElementTree as ET

    ns = "{http://schemas.openxmlformats.org/drawingml/2006/chart}"
    root = ET.fromstring(xml)
    bar = root.find(f".//{ns}barChart")
    assert bar is not None and bar.find(f"{ns}barDir").get("val") == "col"
    assert len(bar.findall(f"{ns}ser")) == len(PLAN.annex_columns)
    refs = [f.text for f in root.iter(f"{ns}f")]
    assert refs and all(r.startswith(f"'{layout.SHEET_PROGRESS}'!") for r in refs)
    wb = openpyxl.load_workbook(path)
    ws = wb[layout.SHEET_PROGRESS]
    # the category range holds the 8 counties in annex order
    cat = next(r for r in refs if "$A$" in r)
    m = re.search(r"\$A\$(\d+):\$A\$(\d+)", cat)
    assert [ws.cell(row=r, column=1).value for r in range(int(m.group(1)), int(m.group(2)) + 1)] == list(COUNTIES)
    assert layout.SHEET_PROGRESS in wb_xml


# ---------------------------------------------------------------------------------------------
# only generated areas are written
# ---------------------------------------------------------------------------------------------


def _cell_state(c):
    return (c.value, c.number_format, c.data_type) + tuple(repr(x) for x in (c.font, c.fill, c.border, c.alignment, c.protection))


def _sheet_state(ws, skip=()):
    cells = {(c.row, c.column): _cell_state(c) for row in ws.iter_rows() for c in row if (c.row, c.column) not in skip}
    return {
        "cells": cells,
        "merged": sorted(str(r) for r in ws.merged_cells.ranges),
        "validations": sorted((str(dv.sqref), dv.type, dv.formula1) for dv in ws.data_validations.dataValidation),
        "tables": sorted((t.name, t.ref) for t in ws.tables.values()),
        "conditional": sorted(str(r.sqref) for r in ws.conditional_formatting),
        "freeze": ws.freeze_panes,
        "print_titles": ws.print_title_rows,
        "widths": {k: v.width for k, v in ws.column_dimensions.items()},
        "code_name": ws.sheet_properties.codeName,
    }


def test_nothing_outside_the_generated_areas_changes(refreshed):
    path, before, _ = refreshed
    old = openpyxl.load_workbook(io.BytesIO(before))
    new = openpyxl.load_workbook(path)
    first, _, _ = layout.annex_rows(len(COUNTIES))
    done = {(first + i, layout.annex_col(b, "完成数")) for i in range(len(COUNTIES)) for b in range(len(PLAN.annex_columns))}
    assert [n for n in new.sheetnames if n not in refresh.GENERATED_SHEETS] == old.sheetnames
    for name in old.sheetnames:
        skip = done if name == layout.SHEET_ANNEX else ()
        assert _sheet_state(new[name], skip) == _sheet_state(old[name], skip), name
    # the 完成数 cells themselves keep their formatting; only the value is new
    for (r, c) in done:
        assert _cell_state(new[layout.SHEET_ANNEX].cell(row=r, column=c))[1:] == _cell_state(old[layout.SHEET_ANNEX].cell(row=r, column=c))[1:]
    assert sorted(new.defined_names) == sorted(old.defined_names)
    # the input rows are still exactly what the clerk typed
    for t in TABLES:
        ws = new[t.sheet]
        for i, row in enumerate(FIXTURE.get(t.key, [])):
            for c, col in enumerate(t.columns, start=1):
                expected = None if row is None else row.get(col.key)
                assert ws.cell(row=layout.INPUT_FIRST_ROW + i, column=c).value == expected


def test_refresh_twice_gives_the_same_sheets(tmp_path):
    path = city_workbook(tmp_path)
    refresh.refresh_workbook(path, backup=False)
    first = openpyxl.load_workbook(path)
    snap = {n: sheet_values(first[n]) for n in refresh.GENERATED_SHEETS}
    names = first.sheetnames
    refresh.refresh_workbook(path, backup=False)
    second = openpyxl.load_workbook(path)
    assert second.sheetnames == names
    for n in refresh.GENERATED_SHEETS:
        assert sheet_values(second[n]) == snap[n]
    with zipfile.ZipFile(path) as z:
        assert len([n for n in z.namelist() if re.match(r"xl/charts/chart\d+\.xml$", n)]) == 1
    # generated sheets sit right after the annex
    i = names.index(layout.SHEET_ANNEX)
    assert names[i + 1 : i + 4] == list(refresh.SHEET_ORDER)


# ---------------------------------------------------------------------------------------------
# the package: VBA project and ribbon
# ---------------------------------------------------------------------------------------------


def _ribbon_rel(data: bytes):
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        rels = xlsm.relationships(z.read(xlsm.PACKAGE_RELS_PART))
        ui = [r for r in rels if r.get("Type") == xlsm.CUSTOM_UI_REL_TYPE]
        part = z.read(xlsm.CUSTOM_UI_PART) if xlsm.CUSTOM_UI_PART in z.namelist() else None
        vba = z.read(xlsm.VBA_PROJECT_PART) if xlsm.VBA_PROJECT_PART in z.namelist() else None
        ct = z.read("[Content_Types].xml").decode("utf-8")
    return ui, part, vba, ct


def test_vba_project_and_ribbon_survive(refreshed, tmp_path):
    path, before, _ = refreshed
    ui0, part0, vba0, _ = _ribbon_rel(before)
    ui1, part1, vba1, ct1 = _ribbon_rel(path.read_bytes())
    assert ui0 and part0 and vba0  # the built workbook has them
    assert [r["Target"] for r in ui1] == [r["Target"] for r in ui0]
    assert part1 == part0
    assert vba1 == vba0
    assert xlsm.MACRO_MAIN_CONTENT_TYPE in ct1
    # and the test can fail: a plain openpyxl keep_vba round trip loses the ribbon relationship
    plain = tmp_path / "plain.xlsm"
    plain.write_bytes(before)
    wb = openpyxl.load_workbook(plain, keep_vba=True)
    buf = io.BytesIO()
    wb.save(buf)
    assert _ribbon_rel(buf.getvalue())[0] == []
    # oletools reads the VBA back: the ribbon callback still runs xl_ecom.frontends.macros.refresh
    from oletools.olevba import VBA_Parser

    parser = VBA_Parser(str(path))
    try:
        code = "\n".join(src for (_, _, _, src) in parser.extract_macros())
    finally:
        parser.close()
    assert 'RunPython "import xl_ecom.frontends.macros; xl_ecom.frontends.macros.refresh()"' in code


# ---------------------------------------------------------------------------------------------
# CLI: atomic write, backup, lock file, bad input
# ---------------------------------------------------------------------------------------------


def run_cli(argv, capsys):
    parser = argparse.ArgumentParser(prog="xl-ecom")
    sub = parser.add_subparsers()
    refresh.add_cli(sub)
    args = parser.parse_args(argv)
    code = args.func(args)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_writes_atomically_and_keeps_a_backup(tmp_path, capsys):
    path = city_workbook(tmp_path)
    before = path.read_bytes()
    code, out, err = run_cli(["refresh", str(path)], capsys)
    assert code == 0, err
    assert "已刷新" in out and "奖补合计" in out
    backups = list(tmp_path.glob("目标任务分解表.备份*.xlsm"))
    assert len(backups) == 1 and backups[0].read_bytes() == before
    assert str(backups[0].name) in out
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([path.name, backups[0].name])  # no temp files left
    assert path.read_bytes() != before
    openpyxl.load_workbook(path)  # a complete workbook


def test_cli_refuses_a_workbook_open_in_excel(tmp_path, capsys):
    path = city_workbook(tmp_path)
    before = path.read_bytes()
    (tmp_path / f"~${path.name}").write_bytes(b"owner")
    code, out, err = run_cli(["refresh", str(path)], capsys)
    assert code == 2
    assert "正在 Excel" in err and f"~${path.name}" in err
    assert path.read_bytes() == before
    assert not list(tmp_path.glob("*备份*"))


BAD = {
    "T_SALES": [
        {"county": "寿县", "enterprise": "甲", "uplink_sales": "一千万"},
        {"county": "合肥市", "enterprise": "乙", "uplink_sales": 1},
        {"county": "寿县", "enterprise": "丙", "platform_retail": -5},
    ],
    "T_TRAINING": [{"county": "寿县", "training": "班", "kind": "中级", "attendees": 80.5, "costs": 100}],
    "T_PROMO": [{"event": "无县区", "event_sales": 100}],
}


def test_bad_input_is_reported_by_cell_and_nothing_is_written(tmp_path, capsys):
    path = city_workbook(tmp_path, BAD)
    before = path.read_bytes()
    code, out, err = run_cli(["refresh", str(path)], capsys)
    assert code == 2
    assert "Traceback" not in err + out
    assert "未刷新" in err
    expected = [
        ("企业销售", "D4", "一千万"),
        ("企业销售", "A5", "合肥市"),
        ("企业销售", "E6", "不能为负数"),
        ("电商培训", "C4", "中级"),
        ("电商培训", "D4", "应为整数"),
        ("促销活动", "A4", "县区为空"),
    ]
    for sheet, cell, words in expected:
        assert re.search(rf"“{sheet}”单元格 {cell}：[^\n]*{words}", err), (sheet, cell, err)
    assert path.read_bytes() == before
    assert not list(tmp_path.glob("*备份*"))


def test_formula_typed_in_an_input_cell_is_explained(tmp_path, capsys):
    path = city_workbook(tmp_path, {"T_POOR_SITE": [{"county": "寿县", "site": "网点", "sales": "=50000*2"}]})
    code, _, err = run_cli(["refresh", str(path)], capsys)
    assert code == 2 and "“贫困村网点”单元格 D4" in err and "公式" in err


def test_policy_date_comes_from_the_settings_sheet(tmp_path, capsys):
    path = city_workbook(tmp_path)
    wb = openpyxl.load_workbook(path, keep_vba=True)
    ws = wb["设置"]
    row = next(r for r in range(1, ws.max_row + 1) if ws.cell(row=r, column=1).value == "政策日期")
    ws.cell(row=row, column=2).value = dt.datetime(2019, 6, 30)
    from xl_ecom.workflows.collect import save_city_workbook

    path.write_bytes(save_city_workbook(wb, path, path.read_bytes())[0])
    code, _, err = run_cli(["refresh", str(path)], capsys)
    assert code == 2 and "2019-06-30" in err and "生效日期" in err and "Traceback" not in err
    code, out, _ = run_cli(["refresh", str(path), "--date", "2020-12-31"], capsys)
    assert code == 0 and "政策日期：2020-12-31" in out


def test_missing_file_and_wrong_workbook(tmp_path, capsys):
    code, _, err = run_cli(["refresh", str(tmp_path / "无.xlsm")], capsys)
    assert code == 2 and "找不到工作簿" in err
    other = tmp_path / "其他.xlsx"
    openpyxl.Workbook().save(other)
    code, _, err = run_cli(["refresh", str(other)], capsys)
    assert code == 2 and "目标任务分解表" in err


# ---------------------------------------------------------------------------------------------
# the vectorised core against the scalar engine on random tables
# ---------------------------------------------------------------------------------------------

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

money = st.one_of(
    st.none(),
    st.sampled_from([0, 100000, 99999.99, 500000, 1000000, 2000000, 10000000, 10000000.01]),
    st.decimals(min_value=0, max_value=50_000_000, places=2).map(float),
)


@st.composite
def tables(draw):
    rows = {}
    rows["T_SALES"] = draw(st.lists(st.fixed_dictionaries({
        "county": st.sampled_from(COUNTIES), "enterprise": st.text("甲乙丙", min_size=1, max_size=3),
        "uplink_sales": money, "platform_retail": money, "livestream_sales": money}), max_size=12))
    rows["T_PROMO"] = draw(st.lists(st.fixed_dictionaries({
        "county": st.sampled_from(COUNTIES[:3]), "event": st.just("活动"), "event_sales": money}), max_size=15))
    rows["T_TRAINING"] = draw(st.lists(st.fixed_dictionaries({
        "county": st.sampled_from(COUNTIES), "training": st.just("班"), "kind": st.sampled_from(["基础", "高管", None]),
        "attendees": st.integers(0, 200), "costs": money}), max_size=8))
    rows["T_PURCHASE"] = draw(st.lists(st.fixed_dictionaries({
        "county": st.sampled_from(COUNTIES), "enterprise": st.just("企业"), "amount": money,
        "order_based": st.sampled_from(["是", "否", None])}), max_size=8))
    return rows


def frames_of(rows_by_table):
    problems = []
    frames = {}
    for t in TABLES:
        rows = rows_by_table.get(t.key, [])
        grid = [t.headers + [a.header for a in t.awards]]
        grid += [[None if r is None else r.get(c.key) for c in t.columns] for r in rows]
        frames[t.key] = refresh.frames_from_rows(t, grid, problems)
    assert problems == []
    return frames


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tables())
def test_vector_core_equals_scalar_engine(rows_by_table):
    result = refresh.compute(frames_of(rows_by_table), on=POLICY_DATE)
    got = {}
    for rec in result.awards.itertuples():
        key = (rec.sheet, rec.county if rec.row == 0 else rec.row, rec.rule)
        got[key] = int(rec.cents)
    # frames skip blank rows; row numbers are sheet rows as in expected_awards
    assert got == expected_awards(rows_by_table)


# ---------------------------------------------------------------------------------------------
# LibreOffice: the annex's native formulas, recalculated from the refreshed 完成数, agree
# ---------------------------------------------------------------------------------------------


def test_libreoffice_recalculates_the_annex_from_refreshed_counts(refreshed, tmp_path):
    from libreoffice import recalculated

    path, _, report = refreshed
    xlsx = tmp_path / "刷新后.xlsm"
    xlsx.write_bytes(path.read_bytes())
    (out,) = recalculated([xlsx], tmp_path / "lo")
    wb = openpyxl.load_workbook(out, data_only=True)
    annex = wb[layout.SHEET_ANNEX]
    progress = wb[layout.SHEET_PROGRESS]
    first, total, _ = layout.annex_rows(len(COUNTIES))
    for i, county in enumerate(COUNTIES):
        for b, col in enumerate(PLAN.annex_columns):
            rate = annex.cell(row=first + i, column=layout.annex_col(b, "完成率")).value
            gap = annex.cell(row=first + i, column=layout.annex_col(b, "差额")).value
            assert rate == pytest.approx(progress.cell(row=5 + i, column=2 + 4 * b + 2).value), (county, col["key"])
            assert gap == progress.cell(row=5 + i, column=2 + 4 * b + 3).value
    for b, col in enumerate(PLAN.annex_columns):
        assert annex.cell(row=total, column=layout.annex_col(b, "完成数")).value == sum(
            report.result.actuals[c][col["key"]] for c in COUNTIES
        )
    # #11: the annex formulas carry the values of the 完成数 written (a previewer shows them), the
    # values LibreOffice computes — not the blanks the build cached before anything was done
    from libreoffice import cached_disagreements, formula_results

    cached = {ref: v for (sheet, ref), v in formula_results(xlsx).items() if sheet == layout.SHEET_ANNEX}
    assert len(cached) == len(PLAN.annex_columns) * (2 * (len(COUNTIES) + 1) + 4) and "(no value)" not in cached.values()
    assert not cached_disagreements(xlsx, wb, skip=lambda sheet, ref: sheet != layout.SHEET_ANNEX)
    assert any(isinstance(v, float) and v > 0 for v in cached.values())


# ---------------------------------------------------------------------------------------------
# the package edit: only owned parts change; the fast reader reads what openpyxl reads; the
# package writer and the openpyxl writer lay out the same cells
# ---------------------------------------------------------------------------------------------

OWNED = {"xl/workbook.xml", "xl/_rels/workbook.xml.rels", "[Content_Types].xml", "xl/styles.xml", "docProps/app.xml", "xl/calcChain.xml"}


def test_every_part_refresh_does_not_own_is_byte_identical(refreshed):
    path, before, _ = refreshed
    pkg = refresh.Package(before)
    owned = OWNED | {pkg.sheet_part(layout.SHEET_ANNEX)}
    with zipfile.ZipFile(io.BytesIO(before)) as a, zipfile.ZipFile(path) as b:
        old, new = set(a.namelist()), set(b.namelist())
        assert old <= new
        for name in sorted(old - owned):
            assert a.read(name) == b.read(name), name
        added = new - old
    # what was added: the three sheets, their drawing/chart and relationship parts
    assert all(re.match(r"xl/(worksheets|drawings|charts)/(_rels/)?(sheet|drawing|chart)\d+\.xml(\.rels)?$", n) for n in added), added
    assert len([n for n in added if n.startswith("xl/worksheets/sheet")]) == 3


def test_fast_reader_reads_what_openpyxl_reads(refreshed):
    path, _, _ = refreshed
    pkg = refresh.Package(path.read_bytes())
    wb = openpyxl.load_workbook(path, read_only=True)
    for name in pkg.sheet_names:
        ref = [list(r) + [None] * (40 - len(r)) for r in wb[name].iter_rows(max_col=40, values_only=True)]
        while ref and all(v is None for v in ref[-1]):
            ref.pop()
        assert pkg.rows(name, 1, 40) == ref, name
    wb.close()


def test_package_writer_and_openpyxl_writer_agree(refreshed):
    path, before, _ = refreshed
    wb = openpyxl.load_workbook(io.BytesIO(before))
    problems = []
    frames = refresh.read_tables(wb, problems)
    assert problems == []
    result = refresh.compute(frames, on=POLICY_DATE)
    refresh.write_openpyxl(wb, refresh.generated_sheets(result), refresh.annex_updates(result))
    other = openpyxl.load_workbook(path)
    for name in refresh.GENERATED_SHEETS:
        assert sheet_values(wb[name]) == sheet_values(other[name]), name
        assert sorted(map(str, wb[name].merged_cells.ranges)) == sorted(map(str, other[name].merged_cells.ranges))
        assert wb[name].print_title_rows == other[name].print_title_rows
        assert wb[name]["A4"].number_format == other[name]["A4"].number_format
    assert other.sheetnames == wb.sheetnames


def test_formula_like_names_stay_text_in_the_generated_sheets(tmp_path):
    rows = {"T_POOR_SITE": [{"county": "寿县", "site": "=HYPERLINK(\"http://x\",\"点我\")", "sales": 100000},
                            {"county": "寿县", "site": "@SUM(1)", "sales": 200000}]}
    path = city_workbook(tmp_path, rows)
    refresh.refresh_workbook(path, backup=False)
    wb = openpyxl.load_workbook(path)
    ws = wb[layout.SHEET_AWARDS]
    names = {ws.cell(row=r, column=5).value: ws.cell(row=r, column=5).data_type for r in range(4, 6)}
    assert names == {'=HYPERLINK("http://x","点我")': "s", "@SUM(1)": "s"}
    # the openpyxl writer too
    wb2 = openpyxl.load_workbook(path)
    problems = []
    result = refresh.compute(refresh.read_tables(wb2, problems), on=POLICY_DATE)
    refresh.write_openpyxl(wb2, refresh.generated_sheets(result), refresh.annex_updates(result))
    assert wb2[layout.SHEET_AWARDS].cell(row=4, column=5).data_type == "s"


def test_a_workbook_saved_by_libreoffice_refreshes_to_the_same_figures(refreshed, tmp_path):
    """Another writer's XML (LibreOffice: shared strings, its own attribute layout) is read alike."""
    from libreoffice import convert

    path, before, report = refreshed
    src = tmp_path / "原件.xlsm"
    src.write_bytes(before)
    (lo,) = convert([src], tmp_path / "lo", "xlsx")
    with zipfile.ZipFile(lo) as z:
        assert "xl/sharedStrings.xml" in z.namelist()
    again = refresh.refresh_workbook(lo, backup=False)
    assert again.result.total_cents == report.result.total_cents
    assert again.result.by_county.equals(report.result.by_county)
    assert again.result.actuals == report.result.actuals
    a = again.result.awards.sort_values(["sheet", "row", "rule"]).reset_index(drop=True)
    b = report.result.awards.sort_values(["sheet", "row", "rule"]).reset_index(drop=True)
    assert a[["sheet", "row", "county", "name", "rule", "cents"]].equals(b[["sheet", "row", "county", "name", "rule", "cents"]])
    openpyxl.load_workbook(lo)  # still a valid workbook after the package edit


def test_reader_falls_back_to_openpyxl_for_unusual_xml(refreshed):
    """Cells without references (allowed by the format) are read through openpyxl instead."""
    path, _, _ = refreshed
    pkg = refresh.Package(path.read_bytes())
    name = table("T_SALES").sheet
    expected = pkg.rows(name, layout.INPUT_HEADER_ROW, 12)
    part = pkg.sheet_part(name)
    pkg.parts[part] = re.sub(rb'(<c) r="[A-Z]+\d+"', rb"\1", pkg.parts[part])
    assert pkg.rows(name, layout.INPUT_HEADER_ROW, 12) == expected


def test_generated_sheets_print_officially(refreshed):
    path, _, _ = refreshed
    wb = openpyxl.load_workbook(path)
    # 奖补明细 repeats its header; 奖补汇总 and 完成情况 stack tables, so no header repeats over the wrong one
    for name, titles, body_row in ((layout.SHEET_AWARDS, "$3:$3", 4), (layout.SHEET_SUMMARY, None, 4), (layout.SHEET_PROGRESS, None, 5)):
        ws = wb[name]
        assert str(ws.page_setup.paperSize) == ws.PAPERSIZE_A4 and ws.page_setup.orientation == "landscape"
        assert ws.sheet_properties.pageSetUpPr.fitToPage and ws.page_setup.fitToWidth == 1
        assert ws.print_title_rows == titles
        assert "&P" in ws.oddFooter.center.text and "&N" in ws.oddFooter.center.text
        assert ws["A1"].font.name == "宋体" and ws["A1"].font.b
        body = ws.cell(row=body_row, column=1)
        assert body.font.name == "仿宋" and body.border.left.style == "thin"
        assert ws["A3"].fill.fgColor.rgb.endswith("D9E1F2")
    assert wb[layout.SHEET_AWARDS].freeze_panes == "A4"
    assert wb[layout.SHEET_AWARDS]["H4"].number_format == "#,##0.00"


def test_a_plain_xlsx_city_workbook_refreshes_too(tmp_path):
    from xl_ecom.workflows import build

    path = tmp_path / "目标任务分解表.xlsx"
    path.write_bytes(build.build_xlsx_bytes())
    write_rows(path, {"T_POOR_SITE": FIXTURE["T_POOR_SITE"]}, keep_ribbon=False)
    report = refresh.refresh_workbook(path, backup=False)
    assert report.result.total_cents == 1_000_000
    wb = openpyxl.load_workbook(path)
    assert wb[layout.SHEET_AWARDS]["E4"].value == "一号网点"
    with zipfile.ZipFile(path) as z:
        assert xlsm.VBA_PROJECT_PART not in z.namelist()


def test_set_numbers_fills_missing_cells_in_column_order():
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "表"
    ws["A5"], ws["E5"], ws["B6"] = "寿县", "后", 1
    ws["D5"].number_format = "0.0"
    buf = io.BytesIO()
    wb.save(buf)
    pkg = refresh.Package(buf.getvalue())
    pkg.set_numbers("表", {(5, 3): 7, (5, 4): 2.5, (5, 6): 1, (6, 2): 9})
    out = openpyxl.load_workbook(io.BytesIO(pkg.to_bytes()))["表"]
    assert [out.cell(row=5, column=c).value for c in range(1, 7)] == ["寿县", None, 7, 2.5, "后", 1]
    assert out["D5"].number_format == "0.0"  # the cell keeps its style
    assert out["B6"].value == 9
    with pytest.raises(refresh.RefreshError, match="第9行不存在"):
        pkg.set_numbers("表", {(9, 1): 1})


def test_totals_per_clause_add_up_the_rules_of_each_clause(refreshed):
    path, _, _ = refreshed
    ws = openpyxl.load_workbook(path)[layout.SHEET_SUMMARY]
    header = next(r for r in range(1, ws.max_row + 1) if ws.cell(row=r, column=2).value == "任务")
    got = {}
    for r in range(header + 1, ws.max_row + 1):
        clause = ws.cell(row=r, column=1).value
        if clause and clause != "合计":
            got[clause] = Decimal(str(ws.cell(row=r, column=5).value)).quantize(Decimal("0.01"))
    expected = {}
    for (_, _, rule), cents in expected_awards().items():
        clause = PLAN.rules[rule].clause
        expected[clause] = expected.get(clause, 0) + cents
    assert got == {c: yuan(v) for c, v in expected.items() if v}
    titles = {t["id"]: t["title"] for t in PLAN.tasks}
    for r in range(header + 1, ws.max_row):
        assert ws.cell(row=r, column=2).value == titles[ws.cell(row=r, column=1).value]


# ---------------------------------------------------------------------------------------------
# issue #8 leftovers: read seam, progress protocol, one neutraliser, formula-like names (#9),
# the city's native promo cap with blank 县区 rows
# ---------------------------------------------------------------------------------------------


def test_frames_from_a_source_of_dataframes_compute_what_the_workbook_computes(refreshed):
    """read.frames_from_source is where the ledger's current_rows(table_key) plugs in: one DataFrame
    per table, column keys plus provenance columns, gives the same result as the workbook's sheets."""
    import pandas as pd

    _, _, report = refreshed

    def source(key):
        rows = [(i, r) for i, r in enumerate(FIXTURE.get(key, [])) if r is not None]
        cols = [c.key for c in table(key).columns]
        df = pd.DataFrame([{k: r.get(k) for k in cols} for _, r in rows], columns=cols)
        df["_row"] = [layout.INPUT_FIRST_ROW + i for i, _ in rows]
        df["_unit"], df["_submission"] = "寿县", 7
        return df

    problems = []
    frames = refresh.frames_from_source(source, problems)
    assert problems == []
    result = refresh.compute(frames, on=POLICY_DATE)
    assert result.total_cents == report.result.total_cents
    assert result.by_county.equals(report.result.by_county)
    assert result.actuals == report.result.actuals
    cols = ["sheet", "row", "county", "name", "rule", "cents"]
    a = result.awards.sort_values(["sheet", "row", "rule"]).reset_index(drop=True)[cols]
    b = report.result.awards.sort_values(["sheet", "row", "rule"]).reset_index(drop=True)[cols]
    assert a.equals(b)
    # a source without a table, or without a column, is a problem naming it
    problems = []
    refresh.frames_from_source(lambda key: None if key == "T_SALES" else source(key).drop(columns=["county"]), problems)
    assert any(p.sheet == table("T_SALES").sheet and "没有这张输入表" in p.message for p in problems)
    assert any("缺少列“县区”" in p.message for p in problems)


def test_refresh_reports_every_phase_through_the_one_progress_protocol(tmp_path):
    from xl_ecom.common.progress import status_text

    path = city_workbook(tmp_path)
    calls = []
    refresh.refresh_workbook(path, backup=False, progress=lambda m, done=None, total=None: calls.append((m, done, total)))
    shown = [status_text(*c) for c in calls]
    assert shown[0] == "打开工作簿" and shown[-1] == "保存"
    reads = [c for c in calls if c[0].startswith("读取")]
    assert [(d, t) for _, d, t in reads] == [(i, len(TABLES)) for i in range(1, len(TABLES) + 1)]
    assert f"读取“{TABLES[0].sheet}”（1/{len(TABLES)}）" in shown
    assert "检查数据" in shown and "汇总" in shown
    computing = [c for c in calls if c[0].startswith("计算")]
    assert computing and computing[-1][1] == computing[-1][2] == len(computing)
    writes = [c for c in calls if c[0].startswith("写入")]
    assert [(d, t) for _, d, t in writes] == [(1, 3), (2, 3), (3, 3)]
    assert all(isinstance(m, str) and m for m, _, _ in calls)


@pytest.mark.parametrize("typed", ["=1000*2", "＝1000*2", " =A1*2", "\u3000＝A1", "@SUM(A1)", "+A1"])
def test_formula_text_in_a_number_cell_is_recognised_by_the_one_neutraliser(tmp_path, typed):
    path = city_workbook(tmp_path, {"T_POOR_SITE": [{"county": "寿县", "site": "一号网点", "sales": typed}]})
    with pytest.raises(refresh.RefreshError) as info:
        refresh.refresh_workbook(path, backup=False)
    (problem,) = info.value.problems
    assert problem.cell == "D4" and f"是公式“{typed}”" in problem.message and "命令行刷新不计算公式" in problem.message


def test_a_signed_number_as_text_is_a_number_not_a_formula(tmp_path):
    path = city_workbook(tmp_path, {"T_POOR_SITE": [{"county": "寿县", "site": "一号网点", "sales": "-5"}]})
    with pytest.raises(refresh.RefreshError) as info:
        refresh.refresh_workbook(path, backup=False)
    (problem,) = info.value.problems
    assert "是公式" not in problem.message


FORMULA_LIKE_NAMES = ["=1+1", "＝HYPERLINK(\"http://x\",\"点我\")", " +x", "@SUM(A1)"]


def test_formula_like_enterprise_names_keep_their_quote_prefix_in_the_generated_sheets(tmp_path):
    """#9: text copied from county files into 奖补明细 stays text, with Excel's quote prefix, in the
    package writer and in the openpyxl writer; plain names get no prefix."""
    rows = [{"county": "寿县", "enterprise": name, "uplink_sales": 20_000_000} for name in FORMULA_LIKE_NAMES]
    rows.append({"county": "寿县", "enterprise": "平常公司", "uplink_sales": 20_000_000})
    path = city_workbook(tmp_path, {"T_SALES": rows})
    refresh.refresh_workbook(path, backup=False)

    def names(ws):
        out = {}
        for r in range(4, ws.max_row + 1):
            c = ws.cell(row=r, column=5)
            if ws.cell(row=r, column=3).value == table("T_SALES").sheet:
                out.setdefault(c.value, set()).add((c.data_type, c.quotePrefix))
        return out

    wb = openpyxl.load_workbook(path)
    found = names(wb[layout.SHEET_AWARDS])
    for name in FORMULA_LIKE_NAMES:  # the detail sheet shows the name without surrounding blanks
        assert found[name.strip()] == {("s", True)}, name
    assert found["平常公司"] == {("s", False)}
    wb2 = openpyxl.load_workbook(path)
    result = refresh.compute(refresh.read_tables(wb2, []), on=POLICY_DATE)
    refresh.write_openpyxl(wb2, refresh.generated_sheets(result), refresh.annex_updates(result))
    buf = io.BytesIO()
    wb2.save(buf)
    again = names(openpyxl.load_workbook(buf)[layout.SHEET_AWARDS])
    for name in FORMULA_LIKE_NAMES:
        assert again[name.strip()] == {("s", True)}, name


def test_city_promo_formula_groups_blank_county_rows_under_one_cap_as_the_engine_does(tmp_path):
    """The city master's native 活动补助 formula: blank-县区 rows share one cumulative cap (10万) instead
    of a fresh cap each; recalculated by LibreOffice, every row equals the engine run with blank
    县区 rows grouped together."""
    import numpy as np

    from xl_ecom.rules.engine import calculate_columns_cents

    from libreoffice import recalculated

    amounts = [1_500_000, 600_000, 999_999.99, 400_000.02, 0, 2_000_000, 100_000, 300_000, 1_999_999.9, 50_000]
    counties_cycle = [None, "寿县", None, "凤台县", None, "寿县", "", None, "凤台县", None]
    rows = []
    for k in range(30):
        county = counties_cycle[k % len(counties_cycle)]
        rows.append({"county": county, "event": f"活动{k}", "event_sales": amounts[(k * 7) % len(amounts)]})
    path = city_workbook(tmp_path, {"T_PROMO": rows})
    (lo,) = recalculated([path], tmp_path / "lo")
    ws = openpyxl.load_workbook(lo, data_only=True)[table("T_PROMO").sheet]
    t = table("T_PROMO")
    award_col = len(t.columns) + 1
    got = [ws.cell(row=layout.INPUT_FIRST_ROW + i, column=award_col).value for i in range(len(rows))]
    groups = np.array([r["county"] or "" for r in rows], dtype=object)
    cents = calculate_columns_cents("SUBSIDY_PROMO", {"event_sales": np.array([r["event_sales"] for r in rows], dtype=float)},
                                    on=POLICY_DATE, groups=groups)
    assert [round(g * 100) for g in got] == [int(c) for c in cents]
    blank = [i for i, r in enumerate(rows) if not r["county"]]
    assert sum(int(cents[i]) for i in blank) == 10_000_000  # the blank rows together reach the cap once
    assert sum(round(got[i] * 100) for i in blank) == 10_000_000
