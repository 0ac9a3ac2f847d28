"""``xl/workbook.xml``: the ONE reader of the sheet list, and the edits refresh makes to it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from lxml import etree

from xl_ecom.ooxml import xml
from xl_ecom.ooxml.namespaces import MAIN, PACKAGE_RELS_PART, REL_OFFICE_DOCUMENT, R, q
from xl_ecom.ooxml.relationships import relationships, rels_part_of, resolve_target


class WorkbookPartError(xml.XmlError):
    """The package has no usable workbook part (the message is Chinese)."""


@dataclass(frozen=True)
class SheetRef:
    name: str
    sheet_id: int
    rid: str
    part: str
    state: str  # visible, hidden, veryHidden
    rel_type: str


def find_main_part(parts: Mapping[str, bytes]) -> str:
    if PACKAGE_RELS_PART not in parts:
        raise WorkbookPartError("工作簿包中没有 _rels/.rels。")
    for rel in relationships(parts[PACKAGE_RELS_PART]):
        if rel.get("Type") == REL_OFFICE_DOCUMENT:
            return resolve_target("", rel["Target"])
    raise WorkbookPartError("_rels/.rels 中没有指向工作簿主部件的关系。")


def sheets(parts: Mapping[str, bytes], main: str | None = None) -> list[SheetRef]:
    """The sheets in workbook order."""
    main = main or find_main_part(parts)
    rels = {r["Id"]: r for r in relationships(parts[rels_part_of(main)])}
    root = xml.parse(parts[main], main)
    out = []
    for s in root.iter(q(MAIN, "sheet")):
        rid = s.get(q(R, "id"), "")
        if rid not in rels:
            raise WorkbookPartError(f"工作表“{s.get('name')}”的关系 {rid} 不存在。")
        rel = rels[rid]
        out.append(SheetRef(s.get("name", ""), int(s.get("sheetId", "0")), rid, resolve_target(main, rel["Target"]),
                            s.get("state", "visible"), rel.get("Type", "")))
    return out


def _child(root, tag: str):
    return root.find(q(MAIN, tag))


def insert_sheet(data: bytes, name: str, rid: str, index: int) -> bytes:
    """``data`` with a new ``<sheet>`` at position ``index``; sheet-scoped names and the active tab
    at or after ``index`` move with their sheets."""
    root = xml.parse(data, "workbook.xml")
    holder = _child(root, "sheets")
    existing = holder.findall(q(MAIN, "sheet"))
    ids = [int(s.get("sheetId", "0")) for s in existing]
    el = etree.Element(q(MAIN, "sheet"), nsmap={"r": R} if root.nsmap.get("r") != R else None)
    el.set("name", name)
    el.set("sheetId", str(max(ids, default=0) + 1))
    el.set(q(R, "id"), rid)
    holder.insert(index, el)
    for dn in root.iter(q(MAIN, "definedName")):
        local = dn.get("localSheetId")
        if local is not None and int(local) >= index:
            dn.set("localSheetId", str(int(local) + 1))
    for view in root.iter(q(MAIN, "workbookView")):
        tab = view.get("activeTab")
        if tab is not None and int(tab) >= index:
            view.set("activeTab", str(int(tab) + 1))
    return xml.to_bytes(root, data)


def set_print_titles(data: bytes, index: int, sheet_name: str, rows: str | None) -> bytes:
    """``_xlnm.Print_Titles`` of sheet ``index`` set to ``rows`` ("3:4"), or removed if None."""
    root = xml.parse(data, "workbook.xml")
    names = _child(root, "definedNames")
    if names is not None:
        for dn in list(names):
            if dn.get("name") == "_xlnm.Print_Titles" and dn.get("localSheetId") == str(index):
                names.remove(dn)
    if rows:
        if names is None:
            names = etree.Element(q(MAIN, "definedNames"))
            _child(root, "sheets").addnext(names)
        a, b = rows.split(":")
        dn = etree.SubElement(names, q(MAIN, "definedName"), name="_xlnm.Print_Titles", localSheetId=str(index))
        dn.text = "'" + sheet_name.replace("'", "''") + f"'!${a}:${b}"
    if names is not None and len(names) == 0:
        root.remove(names)
    return xml.to_bytes(root, data)


def set_print_area(data: bytes, index: int, sheet_name: str, ref: str) -> bytes:
    """``_xlnm.Print_Area`` of sheet ``index`` set to ``ref`` ("A1:I12"): a fixed range (LibreOffice
    does not evaluate a formula there)."""
    root = xml.parse(data, "workbook.xml")
    names = _child(root, "definedNames")
    if names is None:
        names = etree.Element(q(MAIN, "definedNames"))
        _child(root, "sheets").addnext(names)
    for dn in list(names):
        if dn.get("name") == "_xlnm.Print_Area" and dn.get("localSheetId") == str(index):
            names.remove(dn)
    a, _, b = ref.partition(":")
    absolute = "".join(f"${part}" for part in _split(a)) + (":" + "".join(f"${part}" for part in _split(b)) if b else "")
    dn = etree.SubElement(names, q(MAIN, "definedName"), name="_xlnm.Print_Area", localSheetId=str(index))
    dn.text = "'" + sheet_name.replace("'", "''") + "'!" + absolute
    return xml.to_bytes(root, data)


def _split(ref: str) -> tuple[str, str]:
    """"I12" → ("I", "12")."""
    i = len(ref.rstrip("0123456789"))
    return ref[:i], ref[i:]


#: children of <workbook> that come after calcPr (CT_Workbook sequence)
_AFTER_CALC_PR = ("oleSize", "customWorkbookViews", "pivotCaches", "smartTagPr", "smartTagTypes", "webPublishing",
                  "fileRecoveryPr", "webPublishObjects", "extLst")


def full_calc_on_load(data: bytes) -> bytes:
    """``calcPr fullCalcOnLoad="1"``: Excel and LibreOffice recalculate on opening."""
    root = xml.parse(data, "workbook.xml")
    calc = _child(root, "calcPr")
    if calc is None:
        calc = etree.Element(q(MAIN, "calcPr"), calcId="124519")
        later = [el for el in root if isinstance(el.tag, str) and etree.QName(el).localname in _AFTER_CALC_PR]
        if later:
            later[0].addprevious(calc)
        else:
            root.append(calc)
    calc.set("fullCalcOnLoad", "1")
    return xml.to_bytes(root, data)
