"""``xl/calcChain.xml`` kept consistent with the formulas of the sheets.

Excel reports "Removed Records: Formula from /xl/calcChain.xml" when the chain lists a cell that
has no formula.  After refresh rewrote some sheets, the entries of those sheets are kept only for
cells that still hold a formula; when nothing is left, the part, its relationship and its content
type are dropped (Excel rebuilds the chain on the next save)."""

from __future__ import annotations

from xl_ecom.ooxml import xml
from xl_ecom.ooxml.namespaces import MAIN, q

PART_CONTENT_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.calcChain+xml"


def entries(data: bytes) -> list[tuple[int, str]]:
    """(sheetId, cell reference) of each entry (``i`` carries over from the entry before)."""
    root = xml.parse(data, "calcChain.xml")
    out, sheet = [], 0
    for c in root.iter(q(MAIN, "c")):
        if c.get("i") is not None:
            sheet = int(c.get("i"))
        out.append((sheet, c.get("r", "")))
    return out


def rewrite(data: bytes, formulas: dict[int, set[str]]) -> bytes | None:
    """``data`` without the entries of sheets in ``formulas`` (sheetId → references of the cells that
    hold a formula) whose cell is not a formula any more; None when no entry is left."""
    root = xml.parse(data, "calcChain.xml")
    sheet = 0
    kept = []
    for c in list(root.iter(q(MAIN, "c"))):
        if c.get("i") is not None:
            sheet = int(c.get("i"))
        if sheet in formulas and c.get("r") not in formulas[sheet]:
            c.getparent().remove(c)
        else:
            kept.append((sheet, c))
    if not kept:
        return None
    previous = None
    for sheet, c in kept:  # i stated where the sheet changes, as Excel writes it
        if sheet != previous:
            c.set("i", str(sheet))
        elif "i" in c.attrib:
            del c.attrib["i"]
        previous = sheet
    return xml.to_bytes(root, data)
