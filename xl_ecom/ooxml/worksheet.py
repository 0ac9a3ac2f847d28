"""Worksheet parts: the formula cells, the code name, numbers written into cells."""

from __future__ import annotations

import io

from lxml import etree

from xl_ecom.ooxml import xml
from xl_ecom.ooxml.namespaces import MAIN, q

_C, _F, _V, _ROW, _SHEET_PR = q(MAIN, "c"), q(MAIN, "f"), q(MAIN, "v"), q(MAIN, "row"), q(MAIN, "sheetPr")


def col_number(letters: str) -> int:
    n = 0
    for ch in letters:
        n = n * 26 + ord(ch) - 64
    return n


def col_letter(n: int) -> str:
    s = ""
    while n:
        n, r = divmod(n - 1, 26)
        s = chr(65 + r) + s
    return s


def split_ref(ref: str) -> tuple[int, int]:
    """"AB12" → (12, 28)."""
    i = len(ref.rstrip("0123456789"))
    return int(ref[i:]), col_number(ref[:i])


def formula_cells(data: bytes) -> set[str]:
    """References of the cells that hold a formula (``<f>``) — streamed, for big sheets too."""
    out = set()
    parser = etree.iterparse(io.BytesIO(data), events=("end",), tag=_C, resolve_entities=False, no_network=True,
                             load_dtd=False, huge_tree=False)
    for _, c in parser:
        if c.find(_F) is not None:
            out.add(c.get("r", ""))
        c.clear()
    if parser.root is not None and parser.root.getroottree().docinfo.doctype:
        raise xml.XmlError("工作表部件含有 DOCTYPE（文档类型声明），出于安全原因拒绝读取")
    return out


def code_name(data: bytes) -> str | None:
    """The sheet's ``codeName`` (``<sheetPr codeName>``), read from the head of the part."""
    for _, el in etree.iterparse(io.BytesIO(data), events=("start",), resolve_entities=False, no_network=True, load_dtd=False):
        if el.tag == _SHEET_PR:
            return el.get("codeName")
        if el.tag in (q(MAIN, "dimension"), q(MAIN, "sheetViews"), q(MAIN, "sheetData")):
            return None
    return None


class MissingRowError(xml.XmlError, KeyError):
    """A row :func:`set_numbers` was asked to write does not exist; ``args[0]`` is its number."""

    def __str__(self) -> str:
        return f"工作表中没有第{self.args[0]}行"


def set_numbers(data: bytes, values: dict[tuple[int, int], str]) -> bytes:
    """Numbers (as their XML text) into cells {(row, col): text}, keeping each cell's style; a missing
    cell is inserted in column order.  :class:`MissingRowError` names a row that does not exist."""
    root = xml.parse(data, "工作表")
    rows = {int(r.get("r")): r for r in root.iter(_ROW) if r.get("r")}
    for (r, c), text in sorted(values.items()):
        row = rows.get(r)
        if row is None:
            raise MissingRowError(r)
        ref = f"{col_letter(c)}{r}"
        cell = None
        for other in row.iter(_C):
            if other.get("r") == ref:
                cell = other
                break
        if cell is None:
            cell = etree.Element(_C, r=ref)
            later = [o for o in row.iter(_C) if o.get("r") and split_ref(o.get("r"))[1] > c]
            if later:
                later[0].addprevious(cell)
            else:
                row.append(cell)
        style = cell.get("s")
        cell.attrib.clear()
        for child in list(cell):
            cell.remove(child)
        cell.set("r", ref)
        if style is not None:
            cell.set("s", style)
        etree.SubElement(cell, _V).text = text
    return xml.to_bytes(root, data)
