"""Printing every generated workbook (issue #11): each file rendered to PDF by LibreOffice, read back
with pdfinfo/pdftotext (poppler-utils).

Page counts measured when this was written (LibreOffice 7.x, Debian): city workbook 26 pages (71
before), after 刷新 33 (76 before; 奖补汇总 and 完成情况 start each stacked table on a new page),
empty county workbook 14 (58 before), the 市商务局 department workbook 6.  The bounds below sit a
little above those numbers, so an empty 200-row grid coming back (4+ pages per input table) fails.
"""

from __future__ import annotations

import datetime as dt
import io
import re
import shutil
import subprocess
import zipfile
from pathlib import Path

import openpyxl
import pytest
from test_refresh import city_workbook

from xl_ecom.workflows import build, counties, departments, layout, refresh, sheets
from xl_ecom.workflows.tables import TABLES, table

from libreoffice import convert

COUNTY = "田家庵区"
SALES_ROWS = 70  # enough 企业销售 rows for the table to run over more than one page
PAGE_BOUNDS = {"city": 28, "city_refreshed": 35, "county_empty": 15, "county_filled": 18, "department": 8}


def _pdftotext(pdf: Path) -> list[str]:
    exe = shutil.which("pdftotext")
    if not exe:
        raise AssertionError("pdftotext is not installed: apt-get install -y poppler-utils")
    text = subprocess.run([exe, "-enc", "UTF-8", str(pdf), "-"], capture_output=True, text=True, check=True).stdout
    pages = text.split("\f")
    if pages and not pages[-1].strip():
        pages = pages[:-1]
    return pages


def _page_count(pdf: Path) -> int:
    exe = shutil.which("pdfinfo")
    if not exe:
        raise AssertionError("pdfinfo is not installed: apt-get install -y poppler-utils")
    out = subprocess.run([exe, str(pdf)], capture_output=True, text=True, check=True).stdout
    return int(re.search(r"^Pages:\s+(\d+)", out, re.M).group(1))


def _flat(text: str) -> str:
    return re.sub(r"\s+", "", text)


def _holds_headers(page: str, headers) -> bool:
    flat = _flat(page)
    return all(_flat(h) in flat for h in headers)


def _filled_county(path: Path) -> Path:
    """A county workbook a clerk filled: 70 企业销售 rows, 3 促销活动 rows, print areas fitted."""
    wb = counties.county_workbook(COUNTY)
    sales, promo = table("T_SALES"), table("T_PROMO")
    ws = wb[sales.sheet]
    for i in range(SALES_ROWS):
        r = layout.INPUT_FIRST_ROW + i
        values = {"county": COUNTY, "enterprise": f"测试企业{i + 1:03d}", "credit_code": f"91340400MA2N{i:06d}",
                  "uplink_sales": 1_000_000 + i, "platform_retail": 0, "livestream_sales": 0}
        for c, col in enumerate(sales.columns, start=1):
            ws.cell(row=r, column=c, value=values[col.key])
    ws = wb[promo.sheet]
    for i in range(3):
        values = {"county": COUNTY, "event": f"直播促销{i + 1}", "date": dt.date(2020, 6, 1 + i), "event_sales": 200_000}
        for c, col in enumerate(promo.columns, start=1):
            ws.cell(row=layout.INPUT_FIRST_ROW + i, column=c, value=values[col.key])
    for t in TABLES:
        sheets.fit_input_print_area(wb[t.sheet], t)
    wb.save(path)
    return path


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("printing")
    files = {}
    files["city"] = tmp / "city.xlsm"
    files["city"].write_bytes(build.build_bytes())
    refreshed = city_workbook(tmp_path_factory.mktemp("printing-refresh"))
    refresh.refresh_workbook(refreshed, backup=False)
    files["city_refreshed"] = tmp / "city_refreshed.xlsm"
    shutil.copyfile(refreshed, files["city_refreshed"])
    files["county_empty"] = tmp / "county_empty.xlsx"
    counties.county_workbook(COUNTY).save(files["county_empty"])
    files["county_filled"] = _filled_county(tmp / "county_filled.xlsx")
    files["department"] = tmp / "department.xlsx"
    departments.department_workbook("市商务局").save(files["department"])
    names = list(files)
    pdfs = convert([files[n] for n in names], tmp / "pdf", "pdf")
    return {n: (files[n], pdf, _pdftotext(pdf)) for n, pdf in zip(names, pdfs)}


@pytest.mark.parametrize("name", list(PAGE_BOUNDS))
def test_page_counts_have_no_empty_grids(rendered, name):
    _, pdf, pages = rendered[name]
    count = _page_count(pdf)
    assert count == len(pages)
    assert count <= PAGE_BOUNDS[name], f"{name}: {count} pages"
    assert all(_flat(p) for p in pages), f"{name}: an empty page"


def test_empty_county_workbook_prints_one_page_per_input_table(rendered):
    _, _, pages = rendered["county_empty"]
    for t in TABLES:
        # the title, the header and the one blank row on one page, not 200 rows of formulas
        on = [i for i, p in enumerate(pages) if _flat(t.title) in _flat(p) and _holds_headers(p, t.headers)]
        assert len(on) == 1, (t.title, on)
        assert len(_flat(pages[on[0]])) < 600, (t.title, pages[on[0]])


def test_county_totals_print_near_the_front(rendered):
    """A county workbook prints its award totals (奖补汇总) right after its targets, before the task
    list and the input tables: within the first third of the pages, empty or filled."""
    for name in ("county_empty", "county_filled"):
        _, _, pages = rendered[name]
        first = min(i for i, p in enumerate(pages) if _flat(f"{COUNTY}奖补测算汇总") in _flat(p))
        tables = min(i for i, p in enumerate(pages) for t in TABLES if _flat(t.title) in _flat(p) and _holds_headers(p, t.headers))
        assert first < tables and first < len(pages) / 3, (name, first, len(pages))


def test_filled_rows_print_and_every_page_holds_the_header(rendered):
    _, _, pages = rendered["county_filled"]
    sales = table("T_SALES")
    with_rows = [i for i, p in enumerate(pages) if "测试企业" in p]
    assert len(with_rows) >= 2, "70 rows should run over at least two pages"
    assert with_rows == list(range(with_rows[0], with_rows[-1] + 1))
    text = "".join(pages[i] for i in with_rows)
    for n in range(1, SALES_ROWS + 1):
        assert f"测试企业{n:03d}" in text  # every filled row printed, none cut by the print area
    for i in with_rows:  # the header row repeats over the same table on every page
        assert _holds_headers(pages[i], sales.headers), f"page {i + 1}"
    promo = [p for p in pages if "直播促销3" in p]
    assert len(promo) == 1 and _holds_headers(promo[0], table("T_PROMO").headers)


def test_print_areas_follow_the_filled_rows(rendered):
    path, _, _ = rendered["city_refreshed"]
    wb = openpyxl.load_workbook(path)
    for t in TABLES:
        ws = wb[t.sheet]
        last = 0
        for r in range(layout.INPUT_FIRST_ROW, ws.max_row + 1):
            if any(ws.cell(row=r, column=c).value not in (None, "") for c in range(1, len(t.columns) + 1)):
                last = r
        expected = max(last, layout.INPUT_FIRST_ROW)
        letter = openpyxl.utils.get_column_letter(len(t.columns) + len(t.awards))
        assert ws.print_area == f"'{t.sheet}'!$A$1:${letter}${expected}", t.sheet
    built = openpyxl.load_workbook(rendered["city"][0])
    for t in TABLES:  # a new workbook: the header and one row
        assert built[t.sheet].print_area.endswith(f"${layout.INPUT_FIRST_ROW}"), t.sheet


def test_no_header_repeats_over_the_wrong_table(rendered):
    path, _, pages = rendered["city_refreshed"]
    wb = openpyxl.load_workbook(path)
    for name in (layout.SHEET_SUMMARY, layout.SHEET_PROGRESS):
        assert not wb[name].print_title_rows, name
    # the by-task table of 奖补汇总 is never printed under the county table's header row
    for p in pages:
        flat = _flat(p)
        if "兑现方式" in flat and "奖补汇总" not in flat:
            assert "农村产品上行奖励（二（一））" not in flat


def test_no_clipped_headers(rendered):
    _, _, pages = rendered["city_refreshed"]
    text = _flat("".join(pages))
    for header in ("产销对接及直播促销活动补助（二（三））", "年上行超1000万元企业完成率"):
        assert header in text, header
    wb = openpyxl.load_workbook(rendered["city_refreshed"][0])
    ws = wb[layout.SHEET_PROGRESS]
    assert max(ws.row_dimensions[r].height or 0 for r in (3, 4)) >= sheets.header_height(["年上行超1000万元企业完成率"], [11])


def test_header_height_fits_the_wrapped_text():
    assert sheets.header_height(["县区"], [12]) == sheets.HEADER_ROW_HEIGHT
    three = sheets.header_height(["年上行超1000万元企业完成率"], [11])
    assert three > sheets.HEADER_ROW_HEIGHT
    assert sheets.header_height(["年上行超1000万元企业完成率"], [40]) == sheets.HEADER_ROW_HEIGHT
    assert sheets.header_height(["产销对接及直播促销活动补助（二（三））"], [16]) > three - 1


def test_config_sheet_does_not_print_and_totals_come_near_the_front(rendered):
    path, _, pages = rendered["city_refreshed"]
    wb = openpyxl.load_workbook(path)
    config = build.installed_addin().config_sheet()
    assert config is not None and wb[config.name].sheet_state == "hidden"
    notes = [_flat(n) for n in config.notes.values() if len(n) > 8]
    assert notes
    for name in ("city", "city_refreshed"):
        assert not any(n in _flat(p) for p in rendered[name][2] for n in notes), name
    # 完成情况 and 奖补汇总 follow the 说明 and the annex: within the first third of the pages
    first = min(i for i, p in enumerate(pages) if "奖补汇总（按县区、按条款）" in p)
    assert first < len(pages) / 3


def test_refresh_writes_one_print_area_per_input_table(rendered):
    path, _, _ = rendered["city_refreshed"]
    ids = re.findall(rb'<definedName name="_xlnm.Print_Area" localSheetId="(\d+)"', zipfile.ZipFile(path).read("xl/workbook.xml"))
    assert len(ids) == len(TABLES) and len(set(ids)) == len(ids)


def test_collect_sets_the_print_area_to_the_rows_it_writes():
    from xl_ecom.workflows import citybook

    wb = openpyxl.load_workbook(io.BytesIO(build.build_xlsx_bytes()))
    sales = table("T_SALES")
    ws = wb[sales.sheet]
    rows = [{"county": COUNTY, "enterprise": f"企业{i}", "credit_code": f"91340400MA2N{i:06d}", "uplink_sales": 100 + i}
            for i in range(250)]  # more rows than the table's 200: it grows, the print area with it
    citybook.write_table(ws, sales, rows)
    letter = openpyxl.utils.get_column_letter(len(sales.columns) + len(sales.awards))
    assert ws.print_area == f"'{sales.sheet}'!$A$1:${letter}${layout.INPUT_FIRST_ROW + 249}"
    citybook.write_table(ws, sales, rows[:2])
    assert ws.print_area == f"'{sales.sheet}'!$A$1:${letter}${layout.INPUT_FIRST_ROW + 1}"


def _sheet_headers(path: Path) -> list[list[str]]:
    """The header rows of every sheet that prints: its repeated rows, its title row, and each row drawn
    as a table header (the header fill), as lists of cell texts."""
    wb = openpyxl.load_workbook(path)
    out = []
    for ws in wb.worksheets:
        if ws.sheet_state != "visible":
            continue
        candidates = {1}
        if ws.print_title_rows:
            first, last = (int(x) for x in ws.print_title_rows.replace("$", "").split(":"))
            candidates.update(range(first, last + 1))
        for row in ws.iter_rows():
            if any(c.fill is not None and c.fill.fgColor is not None and str(c.fill.fgColor.rgb).endswith("D9E1F2") for c in row):
                candidates.add(row[0].row)
        for r in sorted(candidates):
            texts = [str(c.value) for c in ws[r] if c.value is not None and str(c.value).strip()]
            if texts:
                out.append(texts)
    return out


@pytest.mark.parametrize("name", list(PAGE_BOUNDS))
def test_every_page_holds_a_table_header(rendered, name):
    path, _, pages = rendered[name]
    headers = _sheet_headers(path)
    for i, page in enumerate(pages, start=1):
        assert any(_holds_headers(page, texts) for texts in headers), f"{name} page {i}: {page[:200]}"
