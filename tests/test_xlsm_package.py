"""The .xlsm package: parts, relationships, code names, reproducibility, and real readers
(olevba, pyOpenVBA's file check, openpyxl, LibreOffice headless) opening it."""

from __future__ import annotations

import io
import posixpath
import re
import time
import zipfile

import openpyxl
import pytest
from defusedxml import ElementTree as SafeET
from oletools.olevba import VBA_Parser

from xl_ecom.frontends import addin
from xl_ecom.ooxml import vba, xlsm

from libreoffice import convert

SHEETS = ("说明", "目标任务分解表", "奖补测算", "xlwings.conf")
RELS = "{http://schemas.openxmlformats.org/package/2006/relationships}"
CT = "{http://schemas.openxmlformats.org/package/2006/content-types}"
MAIN = "{http://schemas.openxmlformats.org/spreadsheetml/2006/main}"


def small_xlsx(sheets=SHEETS) -> bytes:
    book = openpyxl.Workbook()
    first = book.active
    first.title = sheets[0]
    first["A1"] = "目标任务分解表"
    first["B2"] = 3
    first["B3"] = "=B2*2"
    for name in sheets[1:]:
        book.create_sheet(name)
    conf = book[addin.XLWINGS_CONF_SHEET] if addin.XLWINGS_CONF_SHEET in sheets else None
    if conf is not None:
        for row, (key, value) in enumerate(addin.xlwings_conf_rows(), start=1):
            conf.cell(row, 1, key)
            conf.cell(row, 2, value)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


@pytest.fixture(scope="module")
def modules():
    return addin.vba_modules()


@pytest.fixture(scope="module")
def built(modules):
    xlsx = small_xlsx()
    project = vba.build_vba_project(xlsx, modules)
    return xlsx, project, xlsm.assemble_xlsm(xlsx, project, xlsm.ribbon_xml())


def parts_of(package: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(package)) as z:
        return {name: z.read(name) for name in z.namelist()}


def relationships(xml: bytes) -> list[dict[str, str]]:
    return [dict(r.attrib) for r in SafeET.fromstring(xml).iter(f"{RELS}Relationship")]


def test_content_types(built):
    parts = parts_of(built[2])
    types = SafeET.fromstring(parts["[Content_Types].xml"])
    overrides = {o.get("PartName"): o.get("ContentType") for o in types.iter(f"{CT}Override")}
    defaults = {d.get("Extension"): d.get("ContentType") for d in types.iter(f"{CT}Default")}
    assert overrides["/xl/workbook.xml"] == "application/vnd.ms-excel.sheet.macroEnabled.main+xml"
    assert xlsm.XLSX_MAIN_CONTENT_TYPE not in overrides.values()
    assert defaults["bin"] == "application/vnd.ms-office.vbaProject"
    assert defaults["xml"] == "application/xml"  # covers customUI/customUI14.xml
    for part in overrides:
        assert part[1:] in parts, part


def test_vba_project_and_ribbon_relationships(built):
    _, project, package = built
    parts = parts_of(package)
    workbook_rels = relationships(parts["xl/_rels/workbook.xml.rels"])
    vba_rels = [r for r in workbook_rels if r["Type"] == "http://schemas.microsoft.com/office/2006/relationships/vbaProject"]
    assert len(vba_rels) == 1
    assert posixpath.normpath(posixpath.join("xl", vba_rels[0]["Target"])) == "xl/vbaProject.bin"
    assert parts["xl/vbaProject.bin"] == project
    package_rels = relationships(parts["_rels/.rels"])
    ui = [r for r in package_rels if r["Type"] == "http://schemas.microsoft.com/office/2007/relationships/ui/extensibility"]
    assert [r["Target"] for r in ui] == ["customUI/customUI14.xml"]
    assert parts["customUI/customUI14.xml"] == xlsm.RIBBON_TEMPLATE.read_bytes()
    for rels in (workbook_rels, package_rels):
        ids = [r["Id"] for r in rels]
        assert len(ids) == len(set(ids))


def test_code_names_match_the_document_modules(built):
    _, project, package = built
    parts = parts_of(package)
    workbook = SafeET.fromstring(parts["xl/workbook.xml"])
    assert workbook.find(f"{MAIN}workbookPr").get("codeName") == "ThisWorkbook"
    names = [s.get("name") for s in workbook.iter(f"{MAIN}sheet")]
    assert names == list(SHEETS)
    codes = []
    for n in range(1, len(SHEETS) + 1):
        sheet = SafeET.fromstring(parts[f"xl/worksheets/sheet{n}.xml"])
        assert list(sheet)[0].tag == f"{MAIN}sheetPr"  # sheetPr stays the first child
        codes.append(sheet.find(f"{MAIN}sheetPr").get("codeName"))
    assert codes == [f"Sheet{n}" for n in range(1, len(SHEETS) + 1)]
    assert xlsm.sheet_code_names(built[0]) == list(zip(SHEETS, codes))
    # The VBA project's PROJECT stream declares exactly those document modules (read with olefile, via oletools).
    import olefile

    ole = olefile.OleFileIO(project)
    declared = ole.openstream("PROJECT").read().decode("latin-1").splitlines()
    ole.close()
    documents = sorted(line.split("=", 1)[1].split("/")[0] for line in declared if line.startswith("Document="))
    assert documents == sorted(["ThisWorkbook", *codes])


def test_core_properties_are_pinned(built):
    core = parts_of(built[2])["docProps/core.xml"].decode("utf-8")
    assert re.search(r"<dcterms:created [^>]*>2020-01-01T00:00:00Z</dcterms:created>", core)
    assert re.search(r"<dcterms:modified [^>]*>2020-01-01T00:00:00Z</dcterms:modified>", core)
    other = parts_of(xlsm.assemble_xlsm(built[0], built[1], xlsm.ribbon_xml(), timestamp="2020-06-30T08:00:00Z"))
    assert "2020-06-30T08:00:00Z</dcterms:modified>" in other["docProps/core.xml"].decode("utf-8")
    with pytest.raises(xlsm.PackageError, match="时间戳"):
        xlsm.assemble_xlsm(built[0], built[1], xlsm.ribbon_xml(), timestamp="2020-06-30")


def test_zip_is_deterministic(built, modules):
    xlsx, project, package = built
    time.sleep(1.1)  # openpyxl stamps the clock into the zip and core.xml
    later_xlsx = small_xlsx()
    assert later_xlsx != xlsx
    again = xlsm.assemble_xlsm(later_xlsx, vba.build_vba_project(later_xlsx, modules), xlsm.ribbon_xml())
    assert again == package
    with zipfile.ZipFile(io.BytesIO(package)) as z:
        infos = z.infolist()
    names = [i.filename for i in infos]
    assert names[:2] == ["[Content_Types].xml", "_rels/.rels"]
    assert names[-2:] == ["xl/vbaProject.bin", "customUI/customUI14.xml"]
    for info in infos:
        assert info.date_time == (1980, 1, 1, 0, 0, 0)
        assert info.compress_type == zipfile.ZIP_DEFLATED
        assert info.extra == b"" and info.comment == b""
        assert (info.create_system, info.external_attr) == (3, 0o100644 << 16)
        assert info.flag_bits & 0x08 == 0  # no data descriptors


def test_every_module_reads_back_with_olevba(built, modules):
    parser = VBA_Parser("目标任务分解表.xlsm", data=built[2])
    try:
        assert parser.detect_vba_macros()
        found = {name.rsplit(".", 1)[0]: code for _, _, name, code in parser.extract_macros()}
    finally:
        parser.close()
    for module in modules:
        code = vba.split_header(found.pop(module.name))[1] if module.kind == "document" else found.pop(module.name)
        assert code == module.source, module.name
    assert sorted(found) == [f"Sheet{n}" for n in range(1, len(SHEETS) + 1)]


def test_pyopenvba_file_check_and_openpyxl_open_it(built, tmp_path):
    import pyopenvba

    path = tmp_path / "目标任务分解表.xlsm"
    path.write_bytes(built[2])
    report = pyopenvba.check_file(path)
    assert report.complete and report.issues == ()
    book = openpyxl.load_workbook(path, keep_vba=True)
    assert book.sheetnames == list(SHEETS)
    assert "xl/vbaProject.bin" in book.vba_archive.namelist()


def test_openpyxl_round_trip_drops_the_ribbon_relationship(built, tmp_path):
    """Why the ribbon goes in last, after openpyxl is done: a keep_vba round trip
    keeps vbaProject.bin but loses the customUI relationship."""
    path = tmp_path / "in.xlsm"
    path.write_bytes(built[2])
    book = openpyxl.load_workbook(path, keep_vba=True)
    out = tmp_path / "out.xlsm"
    book.save(out)
    parts = parts_of(out.read_bytes())
    assert "xl/vbaProject.bin" in parts
    assert not any(r["Type"] == xlsm.CUSTOM_UI_REL_TYPE for r in relationships(parts["_rels/.rels"]))


def test_mismatched_project_is_refused(modules):
    three = small_xlsx(SHEETS[:3])
    project_for_three = vba.build_vba_project(three, vba.template_modules())
    with pytest.raises(xlsm.PackageError) as caught:
        xlsm.assemble_xlsm(small_xlsx(), project_for_three, xlsm.ribbon_xml())
    assert "Sheet4" in str(caught.value)


def test_macro_workbook_or_bad_ribbon_is_refused(built):
    xlsx, project, package = built
    with pytest.raises(xlsm.PackageError, match="vbaProject.bin"):
        xlsm.assemble_xlsm(package, project, xlsm.ribbon_xml())
    with pytest.raises(xlsm.PackageError, match="功能区"):
        xlsm.assemble_xlsm(xlsx, project, b"<customUI xmlns='urn:other'/>")
    with pytest.raises(xlsm.PackageError, match="功能区"):
        xlsm.assemble_xlsm(xlsx, project, b"<customUI")
    with pytest.raises(xlsm.PackageError, match="zip"):
        xlsm.assemble_xlsm(b"not a zip", project, xlsm.ribbon_xml())


def test_existing_code_names_are_kept():
    book = openpyxl.Workbook()
    book.active.title = "A"
    book.active.sheet_properties.codeName = "Sheet1"
    book.create_sheet("B").sheet_properties.codeName = "Sheet2"
    out = io.BytesIO()
    book.save(out)
    xlsx = out.getvalue()
    package = xlsm.assemble_xlsm(xlsx, vba.build_vba_project(xlsx, vba.template_modules()), xlsm.ribbon_xml())
    sheet = parts_of(package)["xl/worksheets/sheet2.xml"].decode("utf-8")
    assert sheet.count("codeName=") == 1 and 'codeName="Sheet2"' in sheet


def test_build_xlsm_is_the_whole_step(built, modules):
    assert xlsm.build_xlsm(built[0], modules) == built[2]


def test_build_xlsm_knows_no_add_in():
    """Without modules the package holds only the hand-written templates: the xlwings runtime and
    the UDF wrappers are the front end's (xl_ecom.frontends.addin), never pulled in here."""
    xlsx = small_xlsx()
    package = xlsm.build_xlsm(xlsx)
    with zipfile.ZipFile(io.BytesIO(package)) as z:
        found = xlsm.project_modules(z.read(xlsm.VBA_PROJECT_PART))
    assert {m.name for m in vba.template_modules()} <= set(found)
    assert not {"xlwings", "Dictionary", addin.UDF_WRAPPER_MODULE, addin.UDF_DESCRIPTIONS_MODULE} & set(found)
    assert xlsm.build_xlsm(xlsx, vba.template_modules()) == package


def test_libreoffice_opens_recalculates_and_reads_the_vba(built, tmp_path):
    """LibreOffice headless opens the .xlsm: it recalculates the formula, and its VBA
    import finds every module, with ThisWorkbook and the sheets as document modules
    (which needs the code names to match the project)."""
    path = tmp_path / "book.xlsm"
    path.write_bytes(built[2])
    (xlsx_out,) = convert([path], tmp_path / "xlsx", "xlsx")
    values = openpyxl.load_workbook(xlsx_out, data_only=True)
    assert values.sheetnames == list(SHEETS)
    assert values[SHEETS[0]]["B3"].value == 6
    assert values[addin.XLWINGS_CONF_SHEET]["B6"].value == "xl_ecom.frontends.udfs"
    (ods,) = convert([path], tmp_path / "ods", "ods")
    with zipfile.ZipFile(ods) as z:
        basic = {name: z.read(name).decode("utf-8") for name in z.namelist() if name.startswith("Basic/VBAProject/")}
    kinds = {}
    for text in basic.values():
        found = re.search(r'script:name="([^"]+)"[^>]*script:moduleType="(\w+)"', text)
        if found:
            kinds[found.group(1)] = found.group(2)
    expected_documents = {"ThisWorkbook", *[f"Sheet{n}" for n in range(1, len(SHEETS) + 1)]}
    assert {n for n, k in kinds.items() if k == "document"} == expected_documents
    assert kinds["Dictionary"] == "class"
    assert {"xlwings", "xlwings_udfs", "UdfDescriptions", "Ribbon"} <= {n for n, k in kinds.items() if k == "normal"}
    ribbon = basic["Basic/VBAProject/Ribbon.xml"]
    assert "Public Sub RibbonRefresh(control As IRibbonControl)" in ribbon
    assert "xl_ecom.frontends.macros.send_mail()" in ribbon
