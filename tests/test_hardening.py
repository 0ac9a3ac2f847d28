"""Hardening of collect (issue #9 "Hardening", issue #8 text amounts), each attack on a real county
workbook (xl_ecom.workflows.counties) edited at the XML level with zipfile, collected through the
real code path (and the CLI), never a mock of the reader."""

from __future__ import annotations

import io
import re
import struct
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import openpyxl
import pytest
from openpyxl.chart import BarChart, Reference

from xl_ecom.ooxml import safeio
from xl_ecom.workflows import build, collect, counties, layout
from xl_ecom.workflows.tables import table

MAIN_NS = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
REL_NS = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
WORKSHEET_CT = "application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"


@pytest.fixture(scope="module")
def issued(tmp_path_factory) -> Path:
    """The county workbooks as the counties command writes them."""
    out = tmp_path_factory.mktemp("issued")
    counties.make_county_workbooks(out)
    return out / counties.SUBDIR


@pytest.fixture(scope="module")
def city_bytes() -> bytes:
    return build.build_bytes()


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


# --- editing packages ------------------------------------------------------------------------------


def parts_of(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as z:
        return {i.filename: z.read(i.filename) for i in z.infolist()}


def write_parts(path: Path, parts: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in parts.items():
            z.writestr(name, data)
    return path


def sheet_part(parts: dict[str, bytes], sheet: str) -> str:
    """The worksheet part of ``sheet`` (workbook.xml → rels)."""
    wb = parts["xl/workbook.xml"].decode()
    rid = re.search(rf'<sheet [^>]*name="{re.escape(sheet)}"[^>]*r:id="(rId\d+)"', wb).group(1)
    rels = parts["xl/_rels/workbook.xml.rels"].decode()
    target = re.search(rf'<Relationship [^>]*Target="([^"]+)"[^>]*Id="{rid}"', rels).group(1)
    return target.lstrip("/")


def set_cells(parts: dict[str, bytes], sheet: str, cells: dict[str, str]) -> None:
    """Replace cells of ``sheet``: ref -> the XML after ``<c r="ref" s="..."`` (type, value)."""
    name = sheet_part(parts, sheet)
    xml = parts[name].decode()
    for ref, body in cells.items():
        new, n = re.subn(
            rf'<c r="{ref}"( s="\d+")?[^>]*?(/>|></c>)', lambda m, ref=ref, body=body: f'<c r="{ref}"{m.group(1) or ""}{body}', xml, count=1
        )
        assert n == 1, ref
        xml = new
    parts[name] = xml.encode()


def text(value: str) -> str:
    return f' t="inlineStr"><is><t>{value}</t></is></c>'


def number(value: str) -> str:
    return f"><v>{value}</v></c>"


def training_row(county: str, attendees: str) -> dict[str, str]:
    """Row 4 of 电商培训: county, name, 基础, attendees (XML body), 30000 yuan."""
    r = layout.INPUT_FIRST_ROW
    return {f"A{r}": text(county), f"B{r}": text("电商基础培训"), f"C{r}": text("基础"), f"D{r}": attendees, f"E{r}": number("30000")}


def filled(issued: Path, folder: Path, county: str, sheet: str, cells: dict[str, str], name: str | None = None) -> Path:
    parts = parts_of(issued / f"{county}.xlsx")
    set_cells(parts, sheet, cells)
    return write_parts(folder / (name or f"{county}.xlsx"), parts)


def good_file(issued: Path, folder: Path, county: str = "八公山区") -> Path:
    return filled(issued, folder, county, "电商培训", training_row(county, number("60")))


def with_chartsheet(issued: Path, folder: Path, county: str, sheet: str) -> Path:
    """``sheet`` replaced by a real chartsheet with a bar chart (openpyxl writes it)."""
    wb = openpyxl.load_workbook(issued / f"{county}.xlsx")
    index = wb.sheetnames.index(sheet)
    wb.remove(wb[sheet])
    chart = BarChart()
    chart.add_data(Reference(wb[counties.SHEET_TARGETS], min_col=3, min_row=3, max_row=8), titles_from_data=True)
    wb.create_chartsheet(sheet, index).add_chart(chart)
    path = folder / f"{county}.xlsx"
    wb.save(path)
    return path


def by_name(report, name: str):
    return next(f for f in report.files if f.name == name)


def lines(report) -> list[str]:
    return [f"{p.sheet}|{p.cell}|{p.severity}|{p.message}" for p in report.all_problems()]


def train_rows(path: Path) -> list[list]:
    wb = openpyxl.load_workbook(path)
    t = table("T_TRAINING")
    return [
        list(v)
        for v in wb[t.sheet].iter_rows(min_row=layout.INPUT_FIRST_ROW, max_col=len(t.columns), values_only=True)
        if any(x is not None for x in v)
    ]


def run_cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "xl_ecom", *map(str, args)], capture_output=True, text=True, timeout=300, check=False)


# --- chartsheets -------------------------------------------------------------------------------------


def test_a_chartsheet_in_place_of_the_marker_or_an_input_sheet_refuses_only_that_file(issued, folder, city):
    with_chartsheet(issued, folder, "田家庵区", counties.SHEET_README)
    with_chartsheet(issued, folder, "谢家集区", table("T_TRAINING").sheet)
    good_file(issued, folder)
    proc = run_cli("collect", folder, "--into", city)
    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr
    assert proc.returncode == 1, proc.stdout + proc.stderr
    out = proc.stdout
    assert "【拒收】田家庵区.xlsx" in out and "工作表“填报说明”不是数据工作表（是图表工作表等）" in out
    assert "【拒收】谢家集区.xlsx" in out and "工作表“电商培训”不是数据工作表（是图表工作表等）" in out
    assert "【已汇总】八公山区.xlsx（八公山区，第1版）" in out
    assert train_rows(city) == [["八公山区", "电商基础培训", "基础", 60, 30000]]


# --- numbers no cell can hold ---------------------------------------------------------------------


HUGE = {
    # county -> attendees cell body (XML), what the report says about D4
    "寿县": (number("9" * 401), "参训人数“9999999999999999…99999999（共401个字符）”超过100000000"),
    "凤台县": (number("1e309"), "参训人数“inf”不是有限数值"),
    "大通区": (number("1e5000"), "参训人数“inf”不是有限数值"),
    "潘集区": (text("1e5000"), "参训人数填写的是文本“1e5000”，不是数字"),
    "毛集区": (text("9" * 401), "参训人数填写的是文本“9999999999999999…99999999（共401个字符）”，不是数字"),
    "田家庵区": (text("1e309"), "参训人数填写的是文本“1e309”，不是数字"),
}


def second_row(county: str) -> dict[str, str]:
    """Row 5 of 电商培训: a good row in the same file (so refusing the file is visible)."""
    r = layout.INPUT_FIRST_ROW + 1
    return {f"A{r}": text(county), f"B{r}": text("电商直播培训"), f"C{r}": text("基础"), f"D{r}": number("90"), f"E{r}": number("40000")}


def test_huge_numbers_in_a_count_refuse_that_file_with_a_reason_and_the_batch_goes_on(issued, folder, city):
    for county, (body, _) in HUGE.items():
        filled(issued, folder, county, "电商培训", {**training_row(county, body), **second_row(county)})
    # a 5000-digit integer stored as a number: Python cannot even read it as int (4300-digit limit)
    filled(issued, folder, "谢家集区", "电商培训", training_row("谢家集区", number("9" * 5000)))
    good_file(issued, folder)
    report = collect.collect(folder, into=city)
    assert report.written and not report.fatal
    d4 = f"D{layout.INPUT_FIRST_ROW}"
    for county, (_, said) in HUGE.items():
        f = by_name(report, f"{county}.xlsx")
        assert f.status != collect.MERGED, (county, f.status)
        assert any(m.startswith(f"电商培训|{d4}|错误|{said}") for m in lines(f)), (county, lines(f))
        refusal = [p.message for p in f.problems if "不是 Excel 或 WPS 单元格能保存的数值" in p.message]
        assert refusal and "整个文件未汇总" in refusal[0] and f"电商培训!{d4}" in refusal[0], (county, lines(f))
    huge = by_name(report, "谢家集区.xlsx")
    # Python cannot read a 5000-digit integer at all: the file is refused with the reader's reason
    assert huge.status == collect.REFUSED and "4300 digits" in huge.problems[0].message
    assert huge.problems[0].message.startswith(("读取时出错", "文件“谢家集区.xlsx”无法读取"))
    assert by_name(report, "八公山区.xlsx").status == collect.MERGED
    # neither the bad row nor the good second row of a refused file is merged
    assert train_rows(city) == [["八公山区", "电商基础培训", "基础", 60, 30000]]
    text_out = report.to_text()
    assert "9" * 41 not in text_out  # the values are named briefly, never 400 digits long


def test_impossible_number_knows_what_a_cell_can_hold():
    from xl_ecom.workflows.collect import impossible_number

    for value in (float("inf"), float("-inf"), float("nan"), 10**15, -(10**20), "1e309", "1e5000", "9" * 401, " 1,000,000,000,000,000 "):
        assert impossible_number(value), value
    for value in (0, 60, 10**15 - 1, 1e308, 1.5, "50万", "1e5", "60", "", None, True, "9" * 15):
        assert not impossible_number(value), value


# --- XML and zip limits -----------------------------------------------------------------------------


def test_an_external_dtd_subset_without_entities_is_refused(issued, folder, city):
    parts = parts_of(issued / "寿县.xlsx")
    name = sheet_part(parts, "电商培训")
    xml = parts[name].decode()
    parts[name] = ('<?xml version="1.0" encoding="UTF-8"?>\n<!DOCTYPE worksheet SYSTEM "http://example.invalid/ws.dtd">\n' + xml).encode()
    bad = write_parts(folder / "寿县.xlsx", parts)
    with pytest.raises(safeio.UntrustedFileError, match="DTD"):
        safeio.open_untrusted(bad)
    good_file(issued, folder)
    report = collect.collect(folder, into=city)
    f = by_name(report, "寿县.xlsx")
    assert f.status == collect.REFUSED and "含有 DTD/实体声明" in f.problems[0].message and name in f.problems[0].message
    assert by_name(report, "八公山区.xlsx").status == collect.MERGED


def _hidden_sheets(src: Path, dst: Path, count: int, size: int = 1024 * 1024) -> Path:
    """``count`` hidden worksheets of ``size`` bytes each added to a county workbook."""
    parts = parts_of(src)
    wb = parts["xl/workbook.xml"].decode()
    rels = parts["xl/_rels/workbook.xml.rels"].decode()
    ct = parts["[Content_Types].xml"].decode()
    head = f'<worksheet xmlns="{MAIN_NS}"><sheetData>'
    tail = "</sheetData></worksheet>"
    sheets, links, types = [], [], []
    row = "<row><c><v>1</v></c></row>"  # rows without r= are valid; deflate shrinks them ~1000:1
    for i in range(count):
        body = (head + row * ((size - len(head) - len(tail)) // len(row)) + tail).encode()
        part = f"xl/worksheets/hidden{i}.xml"
        parts[part] = body
        sheets.append(f'<sheet xmlns:r="{REL_NS}" name="隐藏{i}" sheetId="{100 + i}" state="hidden" r:id="rIdH{i}"/>')
        links.append(f'<Relationship Type="{REL_NS}/worksheet" Target="/{part}" Id="rIdH{i}"/>')
        types.append(f'<Override PartName="/{part}" ContentType="{WORKSHEET_CT}"/>')
    parts["xl/workbook.xml"] = wb.replace("</sheets>", "".join(sheets) + "</sheets>").encode()
    parts["xl/_rels/workbook.xml.rels"] = rels.replace("</Relationships>", "".join(links) + "</Relationships>").encode()
    parts["[Content_Types].xml"] = ct.replace("</Types>", "".join(types) + "</Types>").encode()
    with zipfile.ZipFile(dst, "w") as z:
        for name, data in parts.items():
            z.writestr(name, data, compress_type=zipfile.ZIP_DEFLATED, compresslevel=9)
    return dst


def test_380_hidden_1mib_sheets_are_refused_within_2_seconds(issued, folder, city):
    bomb = _hidden_sheets(issued / "寿县.xlsx", folder / "寿县.xlsx", 380)
    assert bomb.stat().st_size < 2 * 1024 * 1024  # a small attachment (about 1.4 MB as in the issue)
    with zipfile.ZipFile(bomb) as z:
        assert sum(i.file_size for i in z.infolist()) > 380 * 1024 * 1024
    good_file(issued, folder)
    t0 = time.perf_counter()
    report = collect.check_folder(folder)
    elapsed = time.perf_counter() - t0
    f = by_name(report, "寿县.xlsx")
    assert f.status == collect.REFUSED
    assert "拒绝打开" in f.problems[0].message
    assert by_name(report, "八公山区.xlsx").status == collect.READY
    t0 = time.perf_counter()
    with pytest.raises(safeio.UntrustedFileError):
        safeio.open_untrusted(bomb)
    assert time.perf_counter() - t0 < 2.0
    assert elapsed < 10.0  # with the good file's full read


@pytest.mark.parametrize("limit", ["parts", "sheets", "total"])
def test_each_limit_alone_refuses_a_package_before_it_is_inflated(issued, tmp_path, monkeypatch, limit):
    bomb = _hidden_sheets(issued / "寿县.xlsx", tmp_path / "寿县.xlsx", 120, size=64 * 1024)
    # lift the other limits so the one under test is the one that refuses
    monkeypatch.setattr(safeio, "MAX_MEMBERS", 10_000 if limit != "parts" else 150)
    monkeypatch.setattr(safeio, "MAX_SHEETS", 10_000 if limit != "sheets" else 100)
    monkeypatch.setattr(safeio, "MAX_TOTAL_UNCOMPRESSED", 10**12 if limit != "total" else 4 * 1024 * 1024)
    monkeypatch.setattr(safeio, "TOTAL_RATIO_FLOOR", 10**12)
    words = {"parts": "个部件，超过上限150个", "sheets": "个工作表部件，超过上限100个", "total": "解压后总大小超过4.0MB"}[limit]
    inflated = []
    real_open = zipfile.ZipFile.open

    def spy(self, name, *a, **k):  # records what gets inflated (the real zipfile does the work)
        inflated.append(getattr(name, "filename", name))
        return real_open(self, name, *a, **k)

    monkeypatch.setattr(zipfile.ZipFile, "open", spy)
    with pytest.raises(safeio.UntrustedFileError, match=words):
        safeio.inspect_package(bomb)
    assert inflated == []  # refused from the zip headers alone


def _lie_about_size(path: Path, member: str, declared: int) -> None:
    """Patch the central directory and local header of ``member`` to declare ``declared`` bytes."""
    data = bytearray(path.read_bytes())
    encoded = member.encode()
    i = data.find(b"PK\x01\x02")  # central directory entries
    while i != -1:
        n = struct.unpack_from("<H", data, i + 28)[0]
        if bytes(data[i + 46:i + 46 + n]) == encoded:
            struct.pack_into("<I", data, i + 24, declared)
            local = struct.unpack_from("<I", data, i + 42)[0]
            struct.pack_into("<I", data, local + 22, declared)
            break
        i = data.find(b"PK\x01\x02", i + 4)
    else:
        raise AssertionError(member)
    path.write_bytes(bytes(data))


def test_a_member_whose_header_lies_about_its_size_is_refused_while_inflating(issued, tmp_path):
    bad = tmp_path / "寿县.xlsx"
    bad.write_bytes((issued / "寿县.xlsx").read_bytes())
    parts = parts_of(bad)
    name = sheet_part(parts, "企业销售")
    _lie_about_size(bad, name, 1000)
    with zipfile.ZipFile(bad) as z:  # the headers now claim a small part
        assert z.getinfo(name).file_size == 1000
    with pytest.raises(safeio.UntrustedFileError) as exc:
        safeio.open_untrusted(bad)
    assert name in str(exc.value) and ("已损坏" in str(exc.value) or "不符" in str(exc.value))


# --- file names ---------------------------------------------------------------------------------------


def test_hidden_files_are_reported_and_control_characters_in_names_are_escaped(issued, folder, city):
    good_file(issued, folder)
    (folder / "._寿县.xlsx").write_bytes(b"\x00\x05\x16\x07 AppleDouble")
    (folder / ".寿县.xlsx").write_bytes((issued / "寿县.xlsx").read_bytes())
    esc = "\x1b[2J\x1b[31m凤台县.xlsx"
    filled(issued, folder, "凤台县", "电商培训", training_row("凤台县", text("50万")), name=esc)
    (folder / "大通区\n【已汇总】假.xlsx").write_bytes(b"not a zip")
    (folder / "潘集区\u202eslx.xlsx").write_bytes(b"PK\x03\x04 broken")
    proc = run_cli("collect", folder, "--into", city)
    out = proc.stdout
    assert "Traceback" not in out + proc.stderr
    for hidden in ("._寿县.xlsx", ".寿县.xlsx"):
        assert re.search(rf"“{re.escape(hidden)}”.*文件名以“.”开头，是隐藏文件", out), hidden
    assert "\x1b" not in out and "\u202e" not in out
    assert "\\x1b[2J\\x1b[31m凤台县.xlsx" in out
    assert "大通区\\n【已汇总】假.xlsx" in out
    assert "潘集区\\u202eslx.xlsx" in out
    # no line of the report starts with a forged status
    assert not any(line.startswith("【已汇总】假") for line in out.splitlines())
    assert "【已汇总】八公山区.xlsx（八公山区，第1版）" in out
    # the escaped file's own rows: text amount flagged, not merged
    assert re.search(r"【有错】\\x1b\[2J\\x1b\[31m凤台县\.xlsx（凤台县，第1版）：有效0行，有错未汇总1行", out), out


# --- one bad file never stops the others ------------------------------------------------------------


def test_an_unforeseen_error_inside_one_file_refuses_only_that_file(issued, folder, city, monkeypatch):
    """Fault injection at the row checks (a path no specific check foresaw): the file gets a reason."""
    filled(issued, folder, "寿县", "电商培训", training_row("寿县", number("60")))
    good_file(issued, folder)
    real = collect.check_table

    def failing(ws, t, **kw):
        if kw.get("file") == "寿县.xlsx":
            raise RecursionError("maximum recursion depth exceeded")
        return real(ws, t, **kw)

    monkeypatch.setattr(collect, "check_table", failing)
    report = collect.collect(folder, into=city)
    f = by_name(report, "寿县.xlsx")
    assert f.status == collect.REFUSED and "读取时出错（RecursionError" in f.problems[0].message
    assert by_name(report, "八公山区.xlsx").status == collect.MERGED
    assert train_rows(city) == [["八公山区", "电商基础培训", "基础", 60, 30000]]


# --- #8: text amounts, as the county file's own formulas read them --------------------------------


def test_a_text_amount_is_left_out_as_the_county_file_shows_it(issued, folder, city, tmp_path):
    """"50万" in a money cell: the county workbook's award cell (recalculated by LibreOffice) shows
    请填数字 and 奖补汇总 counts the row as left out; collect flags the cell and value and does not
    merge the row."""
    from libreoffice import recalculated

    r = layout.INPUT_FIRST_ROW
    cells = {
        f"A{r}": text("寿县"), f"B{r}": text("寿县八公山豆制品电商"), f"D{r}": text("50万"),
        f"A{r + 1}": text("寿县"), f"B{r + 1}": text("寿县瓦埠湖农品网店"), f"D{r + 1}": number("12000000"),
    }
    path = filled(issued, folder, "寿县", "企业销售", cells)
    recalc = recalculated([path], tmp_path / "lo")[0]
    wb = openpyxl.load_workbook(recalc, data_only=True)
    t = table("T_SALES")
    award = len(t.columns) + 1  # 上行 award column
    ws = wb[t.sheet]
    assert ws.cell(r, award).value == counties.FLAG_NUMBER
    assert isinstance(ws.cell(r + 1, award).value, (int, float)) and ws.cell(r + 1, award).value > 0
    summary = wb[counties.SHEET_SUMMARY]
    left_out = sum(
        summary.cell(i, counties.SUMMARY_LEFT_OUT_COL).value or 0
        for i in range(counties.SUMMARY_FIRST_ROW, summary.max_row + 1)
        if summary.cell(i, 1).value == "合计"
    )
    assert left_out == 1

    report = collect.collect(folder, into=city)
    f = by_name(report, "寿县.xlsx")
    assert f.counts() == (1, 1)
    assert any(
        m.startswith(f"企业销售|D{r}|错误|上行网络销售额(元)填写的是文本“50万”，不是数字") and "请填数字" in m and "500000" in m
        for m in lines(f)
    ), lines(f)
    wb = openpyxl.load_workbook(city)
    got = [v[:4] for v in wb[t.sheet].iter_rows(min_row=r, max_col=4, values_only=True) if v[0]]
    assert got == [("寿县", "寿县瓦埠湖农品网店", None, 12000000)]


def test_the_city_workbook_still_reads_text_amounts_with_a_warning(city_bytes):
    """validate on the city workbook (awards by the engine, which reads 50万) keeps its reading."""
    from xl_ecom.workflows import validate

    wb = openpyxl.load_workbook(io.BytesIO(city_bytes))
    t = table("T_SALES")
    r = layout.INPUT_FIRST_ROW
    for j, v in enumerate(["寿县", "万元企业", None, "50万"], start=1):
        wb[t.sheet].cell(r, j).value = v
    problems = validate.validate_workbook(wb, tables=[t], include_plan=False)
    assert [(p.cell, p.severity) for p in problems if "50万" in p.message] == [(f"D{r}", "警告")]
