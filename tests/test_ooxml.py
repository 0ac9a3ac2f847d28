"""The OOXML layer (xl_ecom.ooxml): the hardened parser refuses DTDs and entities; after refresh
xl/calcChain.xml lists only cells that still hold a formula (or is dropped), docProps/app.xml lists
the workbook's sheets, every sheet has a code name, and the package still opens in openpyxl and
LibreOffice."""

from __future__ import annotations

import io
import zipfile

import openpyxl
import pytest
from test_refresh import PLAN, city_workbook

from xl_ecom.ooxml import app, calcchain, contenttypes, relationships, workbook, worksheet, xml
from xl_ecom.ooxml.namespaces import APP_PART, CONTENT_TYPES_PART, MAIN, REL_CALC_CHAIN
from xl_ecom.workflows import layout, refresh

# --- the one parser --------------------------------------------------------------------------

LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>
<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="&lol3;" Type="t" Target="x"/></Relationships>"""
EXTERNAL = b"""<?xml version="1.0"?><!DOCTYPE r [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="&xxe;" Type="t" Target="x"/></Relationships>"""
PLAIN_DOCTYPE = b'<?xml version="1.0"?><!DOCTYPE worksheet SYSTEM "http://example.invalid/x.dtd"><worksheet/>'


@pytest.mark.parametrize("data", [LAUGHS, EXTERNAL, PLAIN_DOCTYPE], ids=["entity-expansion", "external-entity", "external-dtd"])
def test_hardened_parser_refuses_any_doctype(data):
    with pytest.raises(xml.XmlError, match="DOCTYPE"):
        xml.parse(data)
    with pytest.raises(xml.XmlError, match="DOCTYPE"):
        relationships.relationships(data)  # the rels reader goes through the same parser


def test_the_parser_itself_never_expands_or_fetches_entities():
    """Second line of defence, under the DOCTYPE refusal: libxml2 with this parser keeps entity
    references unexpanded and reads no file."""
    from lxml import etree

    external = b'<!DOCTYPE r [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><r>&xxe;</r>'
    laughs = b'<!DOCTYPE r [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]><r>&b;&b;&b;</r>'
    for data in (external, laughs):
        root = etree.fromstring(data, xml._PARSER)
        text = "".join(root.itertext())
        assert "root:" not in text and len(text) < 10, text


def test_malformed_xml_is_refused_in_chinese():
    with pytest.raises(xml.XmlError, match="不是合法的 XML"):
        xml.parse(b"<a><b></a>", "xl/workbook.xml")


# --- unit behaviour of the part modules ------------------------------------------------------

NS = f'xmlns="{MAIN}"'


def test_calc_chain_rewrite_keeps_formulas_and_restates_the_sheet_id():
    chain = f'<calcChain {NS}><c r="A1" i="1"/><c r="B1"/><c r="A2" i="2"/><c r="A3"/></calcChain>'.encode()
    out = calcchain.rewrite(chain, {1: {"B1"}})
    assert calcchain.entries(out) == [(1, "B1"), (2, "A2"), (2, "A3")]
    assert b'<c r="B1" i="1"/>' in out  # the i of the removed first entry moves to the next one
    assert calcchain.rewrite(chain, {1: set(), 2: {"A9"}}) is None


def test_app_xml_keeps_named_range_group():
    before = (
        b'<Properties xmlns="http://schemas.openxmlformats.org/officeDocument/2006/extended-properties" '
        b'xmlns:vt="http://schemas.openxmlformats.org/officeDocument/2006/docPropsVTypes"><Application>Microsoft Excel</Application>'
        b"<HeadingPairs><vt:vector size=\"4\" baseType=\"variant\"><vt:variant><vt:lpstr>Worksheets</vt:lpstr></vt:variant>"
        b"<vt:variant><vt:i4>1</vt:i4></vt:variant><vt:variant><vt:lpstr>Named Ranges</vt:lpstr></vt:variant>"
        b"<vt:variant><vt:i4>1</vt:i4></vt:variant></vt:vector></HeadingPairs><TitlesOfParts><vt:vector size=\"2\" baseType=\"lpstr\">"
        b"<vt:lpstr>Old</vt:lpstr><vt:lpstr>Old!Print_Titles</vt:lpstr></vt:vector></TitlesOfParts></Properties>"
    )
    after = app.with_sheets(before, ["甲", "乙"])
    assert app.titles(after) == [("Worksheets", ["甲", "乙"]), ("Named Ranges", ["Old!Print_Titles"])]
    assert b"<Application>Microsoft Excel</Application>" in after


def test_set_numbers_inserts_in_column_order_and_keeps_style():
    sheet = f'<worksheet {NS}><sheetData><row r="3"><c r="A3" s="4"><f>1+1</f><v>2</v></c><c r="D3"/></row></sheetData></worksheet>'.encode()
    out = worksheet.set_numbers(sheet, {(3, 1): "7", (3, 2): "8"})
    assert b'<c r="A3" s="4"><v>7</v></c><c r="B3"><v>8</v></c><c r="D3"/>' in out
    assert worksheet.formula_cells(sheet) == {"A3"} and worksheet.formula_cells(out) == set()
    with pytest.raises(worksheet.MissingRowError):
        worksheet.set_numbers(sheet, {(9, 1): "1"})


# --- after refresh ---------------------------------------------------------------------------


def _ref(r: int, c: int) -> str:
    return f"{worksheet.col_letter(c)}{r}"


def _with_calc_chain(path, entries):
    """Put an Excel-style calcChain (sheet name, ref) into the package at ``path``."""
    with zipfile.ZipFile(path) as z:
        parts = {n: z.read(n) for n in z.namelist()}
    main = workbook.find_main_part(parts)
    ids = {s.name: s.sheet_id for s in workbook.sheets(parts, main)}
    body = "".join(f'<c r="{ref}" i="{ids[name]}"/>' for name, ref in entries)
    parts["xl/calcChain.xml"] = f'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n<calcChain {NS}>{body}</calcChain>'.encode()
    rels = relationships.rels_part_of(main)
    parts[rels], _ = relationships.append_relationship(parts[rels], REL_CALC_CHAIN, "calcChain.xml")
    parts[CONTENT_TYPES_PART] = contenttypes.set_override(parts[CONTENT_TYPES_PART], "xl/calcChain.xml", calcchain.PART_CONTENT_TYPE)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as out:
        for n, data in parts.items():
            out.writestr(n, data)
    path.write_bytes(buf.getvalue())
    return ids


def _parts(path):
    with zipfile.ZipFile(path) as z:
        return {n: z.read(n) for n in z.namelist()}


@pytest.fixture(scope="module")
def chained(tmp_path_factory):
    """A refreshed city workbook whose calcChain (as Excel saves it) lists a kept annex formula, an annex
    完成数 cell refresh fills with a number, and a cell of a generated sheet that refresh rewrites."""
    path = city_workbook(tmp_path_factory.mktemp("ooxml"))
    refresh.refresh_workbook(path, backup=False)  # the generated sheets exist, as when Excel saved the book
    parts = _parts(path)
    sheets = {s.name: s for s in workbook.sheets(parts)}
    annex_formulas = sorted(worksheet.formula_cells(parts[sheets[layout.SHEET_ANNEX].part]))
    assert annex_formulas, "the annex has formulas (完成率, 差额, 合计)"
    done = refresh.annex_updates(refresh.compute(refresh.read_tables(openpyxl.load_workbook(path), []), plan=PLAN), PLAN)
    value_cell = _ref(*sorted(done)[0])
    entries = [(layout.SHEET_ANNEX, annex_formulas[0]), (layout.SHEET_ANNEX, value_cell), (layout.SHEET_SUMMARY, "B5")]
    _with_calc_chain(path, entries)
    refresh.refresh_workbook(path, backup=False)
    return path, annex_formulas[0], value_cell


def test_calc_chain_lists_only_cells_that_still_hold_a_formula(chained):
    path, kept, value_cell = chained
    parts = _parts(path)
    ids = {s.sheet_id: s for s in workbook.sheets(parts)}
    listed = calcchain.entries(parts["xl/calcChain.xml"])
    annex_id = next(i for i, s in ids.items() if s.name == layout.SHEET_ANNEX)
    assert (annex_id, kept) in listed
    assert (annex_id, value_cell) not in listed
    for sheet_id, ref in listed:
        assert ref in worksheet.formula_cells(parts[ids[sheet_id].part]), (ids[sheet_id].name, ref)


def test_calc_chain_with_no_formula_left_is_dropped_with_its_relationship(tmp_path):
    path = city_workbook(tmp_path, rows_by_table=None)
    refresh.refresh_workbook(path, backup=False)
    _with_calc_chain(path, [(layout.SHEET_SUMMARY, "B5"), (layout.SHEET_PROGRESS, "C5")])
    refresh.refresh_workbook(path, backup=False)
    parts = _parts(path)
    assert "xl/calcChain.xml" not in parts
    main = workbook.find_main_part(parts)
    assert not [r for r in relationships.relationships(parts[relationships.rels_part_of(main)]) if r["Type"] == REL_CALC_CHAIN]
    assert "/xl/calcChain.xml" not in contenttypes.overrides(parts[CONTENT_TYPES_PART])


def test_app_xml_titles_are_the_sheet_list_and_every_sheet_has_a_code_name(chained):
    path, _, _ = chained
    parts = _parts(path)
    names = [s.name for s in workbook.sheets(parts)]
    groups = app.titles(parts[APP_PART])
    assert groups[0] == (app.SHEETS_HEADING, names)
    codes = [worksheet.code_name(parts[s.part]) for s in workbook.sheets(parts)]
    assert all(codes), dict(zip(names, codes))
    assert len(set(codes)) == len(codes)
    for name in refresh.GENERATED_SHEETS:
        assert name in names


def test_refreshed_package_opens_in_openpyxl_and_libreoffice(chained, tmp_path):
    from libreoffice import convert

    path, _, _ = chained
    wb = openpyxl.load_workbook(path)
    names = wb.sheetnames
    assert wb[layout.SHEET_SUMMARY].sheet_properties.codeName
    [out] = convert([path], tmp_path)
    lo = openpyxl.load_workbook(out)
    assert lo.sheetnames == names
    assert lo[layout.SHEET_SUMMARY]["A1"].value == wb[layout.SHEET_SUMMARY]["A1"].value


# --- the chart part and its drawing, compared with what openpyxl saves ------------------------


def _tree(data: bytes):
    """A part as (tag, attributes, text, children), namespace prefixes and declarations aside — the
    comparison XlsxWriter's _compare_xlsx_files makes part by part."""
    from lxml import etree

    def walk(el):
        return (el.tag, sorted(el.attrib.items()), (el.text or "").strip(), [walk(c) for c in el if isinstance(c.tag, str)])

    return walk(etree.fromstring(data))


CHART = dict(sheet="完成情况", title="各县区目标任务完成率", y_title="完成率", categories=(1, 30, 37),
             series=[(2, 29, 30, 37), (3, 29, 30, 37), (4, 29, 30, 37)], anchor=(40, 1))


def _openpyxl_chart_parts(spec: dict):
    """The chart and drawing parts openpyxl writes for the equivalent BarChart in a saved workbook."""
    from openpyxl.chart import BarChart, Reference

    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = spec["sheet"]
    chart = BarChart()
    chart.type, chart.grouping = "col", "clustered"
    chart.title, chart.y_axis.title, chart.y_axis.numFmt = spec["title"], spec["y_title"], "0%"
    chart.width, chart.height = 24, 10
    cols = [s[0] for s in spec["series"]]
    header, _, last = spec["series"][0][1:]
    chart.add_data(Reference(ws, min_col=min(cols), max_col=max(cols), min_row=header, max_row=last), titles_from_data=True)
    c, first, last = spec["categories"]
    chart.set_categories(Reference(ws, min_col=c, min_row=first, max_row=last))
    chart.x_axis.delete = chart.y_axis.delete = False
    row, col = spec["anchor"]
    ws.add_chart(chart, f"{worksheet.col_letter(col)}{row}")
    buf = io.BytesIO()
    wb.save(buf)
    with zipfile.ZipFile(buf) as z:
        return z.read("xl/charts/chart1.xml"), z.read("xl/drawings/drawing1.xml")


def test_chart_part_has_the_structure_openpyxl_saves_for_the_same_chart():
    from xl_ecom.ooxml import chart

    ours = chart.ColumnChart(**CHART)
    theirs_chart, theirs_drawing = _openpyxl_chart_parts(CHART)
    assert _tree(chart.chart_xml(ours)) == _tree(theirs_chart)
    assert _tree(chart.drawing_xml(ours, "rId1")) == _tree(theirs_drawing)


def test_chart_part_quotes_the_sheet_name_and_shows_its_axes():
    from xl_ecom.ooxml import chart
    from xl_ecom.ooxml.namespaces import CHART as C

    root = xml.parse(chart.chart_xml(chart.ColumnChart(**{**CHART, "sheet": "O'Brien 表"})))
    formulas = [f.text for f in root.iter(f"{{{C}}}f")]
    assert formulas[0] == "'O''Brien 表'!B29" and "'O''Brien 表'!$A$30:$A$37" in formulas
    assert [d.get("val") for d in root.iter(f"{{{C}}}delete")] == ["0", "0"]
    assert len(list(root.iter(f"{{{C}}}ser"))) == 3


def test_refreshed_chart_opens_in_openpyxl_as_a_bar_chart_of_the_counties(chained):
    path, _, _ = chained
    with zipfile.ZipFile(path) as z:
        charts = [n for n in z.namelist() if n.startswith("xl/charts/chart")]
        assert len(charts) == 1
        root = xml.parse(z.read(charts[0]))
    from xl_ecom.ooxml.namespaces import CHART as C

    assert root.find(f".//{{{C}}}barDir").get("val") == "col"
    n_series = len(PLAN.annex_columns)
    assert len(list(root.iter(f"{{{C}}}ser"))) == n_series


# --- the streaming cell reader ---------------------------------------------------------------


def _package_with_sheet(sheet_xml: bytes):
    """A real package (openpyxl-saved) whose first sheet is replaced, with a shared-string table
    (this openpyxl writes inline strings, so the table is given as the package reader holds it)."""
    wb = openpyxl.Workbook()
    wb.active.title = "表"
    buf = io.BytesIO()
    wb.save(buf)
    pkg = refresh.Package(buf.getvalue())
    pkg.parts[pkg.sheet_part("表")] = sheet_xml
    pkg._sst = ["共享文本"]
    return pkg


def test_reader_takes_any_writers_layout_prefixes_missing_references_rich_text():
    sheet = (
        f'<x:worksheet xmlns:x="{MAIN}"><x:sheetData>'
        '<x:row r="2"><x:c t="s"><x:v>0</x:v></x:c><x:c t="inlineStr"><x:is><x:r><x:t>富</x:t></x:r>'
        "<x:r><x:t>文本</x:t></x:r><x:rPh><x:t>fu</x:t></x:rPh></x:is></x:c><x:c><x:v>2.5</x:v></x:c></x:row>"
        '<x:row><x:c><x:f>SUM(A1)</x:f><x:v>3</x:v></x:c><x:c t="b"><x:v>1</x:v></x:c><x:c t="str"><x:v>&amp;&lt;</x:v></x:c></x:row>'
        '<x:row r="5"><x:c r="C5" t="e"><x:v>#N/A</x:v></x:c><x:c r="D5"/><x:c r="E5"><x:v>7</x:v></x:c></x:row>'
        "</x:sheetData></x:worksheet>"
    ).encode()
    pkg = _package_with_sheet(sheet)
    assert pkg.rows("表", 1, 5) == [
        [None] * 5,
        ["共享文本", "富文本", 2.5, None, None],
        ["=SUM(A1)", True, "&<", None, None],
        [None] * 5,
        [None, None, "#N/A", None, 7],
    ]
    assert pkg.rows("表", 2, 5, last_row=2) == [["共享文本", "富文本", 2.5, None, None]]
    assert pkg.rows("表", 2, 5, skip={1, 3})[0] == [None, "富文本", None, None, None]


def test_reader_gives_dates_for_date_styled_numbers_and_refuses_a_doctype():
    import datetime as dt

    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "表"
    ws["A1"], ws["B1"] = dt.datetime(2020, 6, 30), 43000
    buf = io.BytesIO()
    wb.save(buf)
    pkg = refresh.Package(buf.getvalue())
    assert pkg.rows("表", 1, 2) == [[dt.datetime(2020, 6, 30), 43000]]
    part = pkg.sheet_part("表")
    data = pkg.parts[part]
    pkg.parts[part] = b'<?xml version="1.0"?><!DOCTYPE w [<!ENTITY e "x">]>' + data[data.index(b"<worksheet") :]
    with pytest.raises(refresh.RefreshError, match="DOCTYPE"):
        pkg.rows("表", 1, 2)


# --- the sheet writer ------------------------------------------------------------------------


def test_write_sheet_is_read_back_by_openpyxl_cell_for_cell():
    from xl_ecom.ooxml.package import Package
    from xl_ecom.workflows import sheets

    rows = [(1, 30, ["标题"], [0]), (3, None, ["县区", 1.5, 7, None, "=1+1", "a\x01b"], [0] * 6),
            (4, 20, [float("nan"), ""], [0, 0])]
    sheet = worksheet.Sheet(rows=iter(rows), dimension="A1:F4", widths=[12, 8], merges=["A1:F1"], code_name="Sheet9",
                            freeze="A4", page=sheets.OFFICIAL_PAGE, letters=[worksheet.col_letter(j) for j in range(1, 10)])
    data = worksheet.write_sheet(sheet)
    wb = openpyxl.Workbook()
    wb.active.title = "表"
    buf = io.BytesIO()
    wb.save(buf)
    pkg = Package(buf.getvalue())
    pkg.parts[pkg.sheet_part("表")] = data
    ws = openpyxl.load_workbook(io.BytesIO(pkg.to_bytes()))["表"]
    assert ws["A1"].value == "标题" and ws.row_dimensions[1].height == 30
    assert [ws.cell(row=3, column=c).value for c in range(1, 7)] == ["县区", 1.5, 7, None, "=1+1", "ab"]
    assert ws["E3"].data_type == "s"  # text, never a formula
    assert ws["A4"].value is None and ws.row_dimensions[4].height == 20
    assert [str(r) for r in ws.merged_cells.ranges] == ["A1:F1"]
    assert ws.column_dimensions["A"].width == 12 and ws.freeze_panes == "A4"
    assert ws.sheet_properties.codeName == "Sheet9" and ws.sheet_properties.pageSetUpPr.fitToPage
    assert ws.page_setup.orientation == "landscape" and ws.page_setup.fitToWidth == 1 and ws.page_margins.top == 0.75
    assert "&P" in ws.oddFooter.center.text
    assert pkg.rows("表", 1, 6) == [["标题", None, None, None, None, None], [None] * 6, ["县区", 1.5, 7, None, "=1+1", "ab"]]


def test_a_big_part_is_streamed_not_held_and_a_spooled_part_is_saved_whole():
    """The package reads a sheet of many rows from the zip when asked and does not keep it; a
    generated sheet given as a temporary file is written into the saved package as it is."""
    import tempfile

    from xl_ecom.ooxml.package import Package

    rows = [(r, None, [f"名称{r}", r * 1.5], [0, 0]) for r in range(1, 60_001)]
    big = worksheet.write_sheet(worksheet.Sheet(rows=iter(rows), dimension="A1:B60000", letters=["A", "B"]))
    assert len(big) > 1 << 20
    wb = openpyxl.Workbook()
    wb.active.title = "大表"
    wb.create_sheet("小表")
    raw = io.BytesIO()
    wb.save(raw)
    pkg = Package(raw.getvalue())
    pkg.parts[pkg.sheet_part("大表")] = big
    pkg = Package(pkg.to_bytes())
    part = pkg.sheet_part("大表")
    got = pkg.rows("大表", 1, 2)
    assert len(got) == 60_000 and got[-1] == ["名称60000", 90_000]
    assert part not in pkg.parts.held  # streamed, not kept
    spooled = tempfile.SpooledTemporaryFile(max_size=1 << 16)
    worksheet.write_sheet(worksheet.Sheet(rows=iter(rows[:30_000]), dimension="A1:B30000", letters=["A", "B"]), spooled)
    pkg.replace_sheet("小表", spooled, "大表")
    saved = Package(pkg.to_bytes())
    assert saved.rows("小表", 1, 2)[-1] == ["名称30000", 45_000]
    assert openpyxl.load_workbook(io.BytesIO(pkg.to_bytes()), read_only=True)["小表"].max_row == 30_000


def test_a_damaged_part_is_refused_when_the_package_is_opened(tmp_path):
    """Parts are read from the zip when asked for; a part whose content does not match its checksum
    is still refused at once, in Chinese, naming it — not halfway through a write."""
    from xl_ecom.ooxml.package import Package, PackageReadError

    wb = openpyxl.Workbook()
    wb.active["A1"] = "数据" * 500
    raw = io.BytesIO()
    wb.save(raw)
    data = bytearray(raw.getvalue())
    with zipfile.ZipFile(io.BytesIO(bytes(data))) as z:
        info = z.getinfo("xl/worksheets/sheet1.xml")
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    data[start + info.compress_size // 2] ^= 0xFF
    with pytest.raises(PackageReadError) as exc:
        Package(bytes(data), "坏.xlsx")
    assert "坏.xlsx" in str(exc.value)
