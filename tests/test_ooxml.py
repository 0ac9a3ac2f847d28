"""The OOXML layer (xl_ecom.ooxml): the hardened parser refuses DTDs and entities; after refresh
xl/calcChain.xml lists only cells that still hold a formula (or is dropped), docProps/app.xml lists
the workbook's sheets, every sheet has a code name, and the package still opens in openpyxl and
LibreOffice."""

from __future__ import annotations

import io
import zipfile

import openpyxl
import pytest

from xl_ecom.workflows import layout, refresh
from xl_ecom.ooxml import app, calcchain, contenttypes, relationships, workbook, worksheet, xml
from xl_ecom.ooxml.namespaces import APP_PART, CONTENT_TYPES_PART, MAIN, REL_CALC_CHAIN

from test_refresh import PLAN, city_workbook

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
