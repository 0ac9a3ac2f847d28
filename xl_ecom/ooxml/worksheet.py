"""Worksheet parts: the formula cells, the code name, numbers written into cells, and a whole
sheet written (:func:`write_sheet`, one short ``_write_<element>`` per element in the order of
CT_Worksheet, in the XlsxWriter style, serialised by lxml row by row)."""

from __future__ import annotations

import io
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from lxml import etree

from xl_ecom.ooxml import xml
from xl_ecom.ooxml.namespaces import MAIN, XML, R, q

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


def formula_cells(data) -> set[str]:
    """References of the cells that hold a formula (``<f>``) of a sheet part (bytes or a binary
    stream) — streamed, for big sheets too."""
    out = set()
    source = io.BytesIO(data) if isinstance(data, bytes) else data
    parser = etree.iterparse(source, events=("end",), tag=_C, resolve_entities=False, no_network=True,
                             load_dtd=False, huge_tree=False)
    for _, c in parser:
        if c.find(_F) is not None:
            out.add(c.get("r", ""))
        c.clear()
    if parser.root is not None and parser.root.getroottree().docinfo.doctype:
        raise xml.XmlError("工作表部件含有 DOCTYPE（文档类型声明），出于安全原因拒绝读取")
    return out


def formula_of(text: str, kind: str | None, si: str, ref: str, shared: dict[str, tuple[str, str]]) -> str:
    """The formula (without "=", "" when unknown) of the cell ``ref`` whose ``<f>`` holds ``text``
    with ``t`` = ``kind`` and ``si``: a shared formula's first cell records it in ``shared``
    (si -> (text, ref)), a dependant gets it translated to its own position, as Excel fills down."""
    if kind != "shared":
        return text
    if text:
        shared[si] = (text, ref)
    elif si in shared:
        from openpyxl.formula.translate import Translator

        master, origin = shared[si]
        text = Translator("=" + master, origin=origin).translate_formula(ref)[1:]
    return text


def code_name(data) -> str | None:
    """The sheet's ``codeName`` (``<sheetPr codeName>``), read from the head of the part (bytes, or
    a binary stream: only the head is read)."""
    source = io.BytesIO(data) if isinstance(data, bytes) else data
    for _, el in etree.iterparse(source, events=("start",), resolve_entities=False, no_network=True, load_dtd=False):
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


#: the cells of a worksheet that hold a formula (compiled once; runs in C)
_FORMULA_CELLS = etree.XPath("./m:sheetData/m:row/m:c[m:f]", namespaces={"m": MAIN})


def set_cached(data: bytes, values: dict[str, Any]) -> bytes:
    """The cached results (``<v>``, and ``t`` for text / booleans) of formula cells {ref: value}, so
    previewers that do not recalculate (mail clients, phones) show them; cells without ``<f>`` are left."""
    root = xml.parse(data, "工作表")
    missing = object()
    for c in _FORMULA_CELLS(root):
        value = values.get(c.get("r"), missing)
        if value is missing:
            continue
        if isinstance(value, str):
            c.set("t", "str")
            text = value.translate(_ILLEGAL)
        elif isinstance(value, (bool, np.bool_)):
            c.set("t", "b")
            text = num_text(value)
        else:
            if "t" in c.attrib:
                del c.attrib["t"]
            text = num_text(value)
        v = c.find(_V)  # openpyxl writes an empty <v/> after the formula: reuse it
        if v is None or v.getprevious() is None or v.getprevious().tag != _F:
            for old in c.findall(_V):
                c.remove(old)
            v = etree.Element(_V)
            c.find(_F).addnext(v)
        v.text = text
    return xml.to_bytes(root, data)


def carry_cached(old: bytes, new: bytes) -> bytes:
    """``new`` with the cached results ``old`` holds for the same formulas in the same cells (a
    formula changed, moved or gone gets none): for a sheet whose cells a save through openpyxl,
    which drops every cached result, did not change."""
    kept: dict[str, tuple[str | None, str | None, str | None]] = {}
    for c in _FORMULA_CELLS(xml.parse(old, "工作表")):
        v = c.find(_V)
        if v is not None and c.get("r"):
            kept[c.get("r")] = (c.find(_F).text, c.get("t"), v.text)
    if not kept:
        return new
    root = xml.parse(new, "工作表")
    for c in _FORMULA_CELLS(root):
        f = c.find(_F)
        found = kept.get(c.get("r"))
        if found is None or found[0] != f.text or c.find(_V) is not None:
            continue
        if found[1] is None:
            c.attrib.pop("t", None)
        else:
            c.set("t", found[1])
        v = etree.Element(_V)
        v.text = found[2]
        f.addnext(v)
    return xml.to_bytes(root, new)


# ---------------------------------------------------------------------------------------------
# writing a whole sheet
# ---------------------------------------------------------------------------------------------


def num_text(v) -> str:
    """A number as the text of a ``<v>`` element."""
    if isinstance(v, (bool, np.bool_)):
        return "1" if v else "0"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    f = float(v)
    if f.is_integer() and abs(f) < 2**53:
        return str(int(f))
    return repr(f)


#: characters XML 1.0 cannot hold (removed from cell text)
_ILLEGAL = dict.fromkeys([*range(0x09), 0x0B, 0x0C, *range(0x0E, 0x20)])


@dataclass(frozen=True)
class PageSetup:
    """Print settings: paper, orientation, fit to width, margins (inches), centred, a footer."""

    paper_size: int = 9  # A4
    orientation: str = "landscape"
    fit_to_width: int | None = 1  # None: no fit to page
    fit_to_height: int = 0
    horizontal_centered: bool = True
    margins: tuple[float, float, float, float, float, float] = (0.5, 0.5, 0.75, 0.75, 0.5, 0.5)  # l r t b header footer
    footer: str = ""  # Excel's header/footer codes, e.g. '&C&"仿宋"&10 第 &P 页 共 &N 页'


@dataclass
class Sheet:
    """What :func:`write_sheet` writes.  ``rows`` yields (row number, height or None, values, style
    indices) in row order; the values fill the row from column A: None, "" or NaN is an empty
    styled cell, text an inline string (never a formula), anything else a number."""

    rows: Iterable[tuple[int, float | None, Sequence[Any], Sequence[int]]]
    dimension: str
    widths: Sequence[float] = ()
    merges: Sequence[str] = ()
    code_name: str | None = None
    freeze: str | None = None  # top-left cell of the scrolling pane ("A4": rows 1-3 frozen)
    page: PageSetup | None = None
    drawing_rid: str | None = None
    default_row_height: float = 15
    letters: list[str] = field(default_factory=list)
    row_breaks: Sequence[int] = ()  # manual page breaks: a new page starts below each of these rows


def write_sheet(sheet: Sheet, out=None):
    """The worksheet part for ``sheet`` (UTF-8, standalone declaration as Excel writes it): its
    bytes, or written into the binary file ``out`` (returned), for a sheet too big to hold."""
    buf = io.BytesIO() if out is None else out
    with etree.xmlfile(buf, encoding="UTF-8") as xf:
        xf.write_declaration(standalone=True)
        with xf.element(q(MAIN, "worksheet"), nsmap={None: MAIN, "r": R}):
            for write in (_write_sheet_pr, _write_dimension, _write_sheet_views, _write_sheet_format_pr, _write_cols):
                write(xf, sheet)
            _write_sheet_data(xf, sheet)
            for write in (_write_merge_cells, _write_print_options, _write_page_margins, _write_page_setup,
                          _write_header_footer, _write_row_breaks, _write_drawing):
                write(xf, sheet)
    return buf.getvalue() if out is None else out


def _write_sheet_pr(xf, sheet: Sheet) -> None:
    el = etree.Element("sheetPr")
    if sheet.code_name:
        el.set("codeName", sheet.code_name)
    if sheet.page is not None and sheet.page.fit_to_width is not None:
        etree.SubElement(el, "pageSetUpPr", fitToPage="1")
    xf.write(el)


def _write_dimension(xf, sheet: Sheet) -> None:
    xf.write(etree.Element("dimension", ref=sheet.dimension))


def _write_sheet_views(xf, sheet: Sheet) -> None:
    views = etree.Element("sheetViews")
    view = etree.SubElement(views, "sheetView", workbookViewId="0")
    if sheet.freeze:
        split = split_ref(sheet.freeze)[0] - 1
        etree.SubElement(view, "pane", ySplit=str(split), topLeftCell=sheet.freeze, activePane="bottomLeft", state="frozen")
        etree.SubElement(view, "selection", pane="bottomLeft", activeCell=sheet.freeze, sqref=sheet.freeze)
    xf.write(views)


def _write_sheet_format_pr(xf, sheet: Sheet) -> None:
    xf.write(etree.Element("sheetFormatPr", defaultRowHeight=num_text(sheet.default_row_height)))


def _write_cols(xf, sheet: Sheet) -> None:
    if not sheet.widths:
        return
    cols = etree.Element("cols")
    for j, w in enumerate(sheet.widths, start=1):
        etree.SubElement(cols, "col", min=str(j), max=str(j), width=num_text(w), customWidth="1")
    xf.write(cols)


def _row_prototype(signature: tuple) -> etree._Element:
    """An empty ``<row>`` whose cells have the styles and value kinds of ``signature``."""
    row = etree.Element("row")
    for kind, style in signature:
        c = etree.SubElement(row, "c", r="", s=str(style))
        if kind == "s":
            c.set("t", "inlineStr")
            t = etree.SubElement(etree.SubElement(c, "is"), "t")
            t.set(q(XML, "space"), "preserve")
        elif kind == "n":
            etree.SubElement(c, "v")
    return row


def _kind(v) -> str:
    """"s" text, "n" number, "" an empty cell (None, "" or NaN)."""
    cls = v.__class__
    if cls is str:
        return "s" if v else ""
    if v is None or v != v:  # noqa: PLR0124 (NaN)
        return ""
    return "n"


def _write_sheet_data(xf, sheet: Sheet) -> None:
    """``<sheetData>``: each row copied (by lxml) from a prototype of its cells' kinds and styles,
    filled, written and freed, so a sheet of 400,000 rows never sits in memory as a tree."""
    letters = sheet.letters
    protos: dict[tuple, tuple] = {}
    clean: dict[str, str] = {}  # cell text without the characters XML cannot hold
    with xf.element("sheetData"):
        for r, height, values, styles in sheet.rows:
            key = (tuple(map(_kind, values)), tuple(styles))
            found = protos.get(key)
            if found is None:
                signature = tuple(zip(*key))
                found = protos[key] = (_row_prototype(signature), [(j, kind) for j, (kind, _) in enumerate(signature) if kind])
            proto, filled = found
            row = proto.__deepcopy__(None)
            rs = str(r)
            row.set("r", rs)
            if height is not None:
                row.set("ht", num_text(height))
                row.set("customHeight", "1")
            cells = list(row)
            for c, letter in zip(cells, letters):
                c.set("r", letter + rs)
            for j, kind in filled:
                v = values[j]
                if kind == "s":
                    text = clean.get(v)
                    if text is None:
                        text = clean[v] = v.translate(_ILLEGAL)
                    cells[j][0][0].text = text
                else:
                    cells[j][0].text = str(v) if v.__class__ is int else num_text(v)
            xf.write(row)


def _write_merge_cells(xf, sheet: Sheet) -> None:
    if not sheet.merges:
        return
    merges = etree.Element("mergeCells", count=str(len(sheet.merges)))
    for ref in sheet.merges:
        etree.SubElement(merges, "mergeCell", ref=ref)
    xf.write(merges)


def _write_print_options(xf, sheet: Sheet) -> None:
    if sheet.page is not None and sheet.page.horizontal_centered:
        xf.write(etree.Element("printOptions", horizontalCentered="1"))


def _write_page_margins(xf, sheet: Sheet) -> None:
    if sheet.page is None:
        return
    names = ("left", "right", "top", "bottom", "header", "footer")
    xf.write(etree.Element("pageMargins", {k: num_text(v) for k, v in zip(names, sheet.page.margins)}))


def _write_page_setup(xf, sheet: Sheet) -> None:
    page = sheet.page
    if page is None:
        return
    el = etree.Element("pageSetup", orientation=page.orientation, paperSize=str(page.paper_size))
    if page.fit_to_width is not None:
        el.set("fitToHeight", str(page.fit_to_height))
        el.set("fitToWidth", str(page.fit_to_width))
    xf.write(el)


def _write_header_footer(xf, sheet: Sheet) -> None:
    if sheet.page is None or not sheet.page.footer:
        return
    hf = etree.Element("headerFooter")
    etree.SubElement(hf, "oddFooter").text = sheet.page.footer
    xf.write(hf)


def _write_row_breaks(xf, sheet: Sheet) -> None:
    if not sheet.row_breaks:
        return
    breaks = sorted(set(sheet.row_breaks))
    el = etree.Element("rowBreaks", count=str(len(breaks)), manualBreakCount=str(len(breaks)))
    for r in breaks:
        etree.SubElement(el, "brk", id=str(r), max="16383", man="1")
    xf.write(el)


def _write_drawing(xf, sheet: Sheet) -> None:
    if sheet.drawing_rid:
        xf.write(etree.Element("drawing", {q(R, "id"): sheet.drawing_rid}, nsmap={"r": R}))


# ---------------------------------------------------------------------------------------------
# editing the rows of an existing sheet
# ---------------------------------------------------------------------------------------------

_SHEET_DATA, _DIMENSION, _IS, _T = q(MAIN, "sheetData"), q(MAIN, "dimension"), q(MAIN, "is"), q(MAIN, "t")
_DATA_VALIDATION = q(MAIN, "dataValidation")
_NOT_A_NUMBER = "工作表单元格只能写入有限的数值"


class Formula:
    """A formula to write (``text`` without the leading "="), with its cached result: a number,
    text, a boolean, or None for none (the application computes it on opening)."""

    __slots__ = ("cached", "text")

    def __init__(self, text: str, cached: Any = None):
        self.text = text[1:] if text.startswith("=") else text
        self.cached = cached


_CONTROL = re.compile("[" + re.escape("".join(map(chr, _ILLEGAL))) + "]")  # the characters of _ILLEGAL
_MARKUP = re.compile(r"[&<>\r]")


def _escape(text: str) -> str:
    """Cell text as XML character data (characters XML 1.0 cannot hold removed)."""
    if _CONTROL.search(text) is not None:
        text = _CONTROL.sub("", text)
    if _MARKUP.search(text) is None:
        return text
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("\r", "&#13;")


def cell_xml(ref: str, value: Any, style: str | None) -> str:
    """A ``<c>`` holding ``value``, as text: None an empty (styled) cell, text an inline string
    (never a formula), a bool a boolean, a :class:`Formula` its formula and cached result, a number
    itself (finite only).  Dates are written by the caller as serial numbers in a date style."""
    head = f'<c r="{ref}" s="{style}"' if style is not None else f'<c r="{ref}"'
    if value is None:
        return head + "/>"
    cls = value.__class__
    if cls is str:
        space = ' xml:space="preserve"' if value != value.strip() or "\n" in value else ""
        return f'{head} t="inlineStr"><is><t{space}>{_escape(value)}</t></is></c>'
    if cls is Formula:
        f = f"<f>{_escape(value.text)}</f>"
        cached = value.cached
        if cached is None:
            return f"{head}>{f}</c>"
        if isinstance(cached, str):
            return f'{head} t="str">{f}<v>{_escape(cached)}</v></c>'
        if isinstance(cached, (bool, np.bool_)):
            return f'{head} t="b">{f}<v>{num_text(cached)}</v></c>'
        return f"{head}>{f}<v>{num_text(cached)}</v></c>"
    if isinstance(value, (bool, np.bool_)):
        return f'{head} t="b"><v>{num_text(value)}</v></c>'
    number = float(value)
    if number != number or number in (float("inf"), float("-inf")):
        raise ValueError(f"{_NOT_A_NUMBER}：{ref} 为 {value!r}")
    return f"{head}><v>{str(value) if cls is int else num_text(value)}</v></c>"


class RowEditor:
    """The rows of a worksheet part, edited in place: cells put into (or cleared in) given columns,
    rows added in order; every other cell, row attribute and element of the part stays as it was.

    Cells put are given as text (:func:`cell_xml`, fast for a hundred thousand rows) or as elements
    taken from another row (:meth:`take`).  Rows and cells the format allows without a reference get
    one (the position Excel reads them at).  A shared formula (``t="shared"``) in a cell that is moved
    becomes that cell's own formula first."""

    def __init__(self, data: bytes, what: str = "工作表"):
        self.data = data
        self.root = xml.parse(data, what)
        sheet_data = self.root.find(_SHEET_DATA)
        if sheet_data is None:
            sheet_data = etree.SubElement(self.root, _SHEET_DATA)
        self.sheet_data = sheet_data
        self.rows: dict[int, etree._Element] = {}  # the rows as read (cells taken or cleared are edited in them)
        self.put_cells: dict[int, dict[int, str | etree._Element]] = {}  # row -> column -> cell put
        self._shared: dict[str, tuple[str, str]] | None = None
        prev = 0
        for row in sheet_data.iter(_ROW):
            r = int(row.get("r") or prev + 1)
            row.set("r", str(r))
            row.attrib.pop("spans", None)  # optional, and stale once cells move
            col = 0
            for c in row.iter(_C):
                ref = c.get("r")
                col = split_ref(ref)[1] if ref else col + 1
                if not ref:
                    c.set("r", f"{col_letter(col)}{r}")
            self.rows[r] = row
            prev = r

    # --- reading ------------------------------------------------------------------------

    def cells(self, r: int) -> dict[int, etree._Element]:
        """The cells row ``r`` had (and still has: not taken), by column."""
        row = self.rows.get(r)
        if row is None:
            return {}
        return {split_ref(c.get("r"))[1]: c for c in row.iter(_C)}

    def styles(self, r: int) -> dict[int, str]:
        """The cell format of each cell of row ``r`` that has one, by column."""
        return {col: c.get("s") for col, c in self.cells(r).items() if c.get("s") is not None}

    def take(self, r: int, cols: Iterable[int]) -> dict[int, etree._Element]:
        """The cells of row ``r`` in ``cols``, to :meth:`put` elsewhere; each leaves an empty cell
        with its format behind.  A shared formula among them becomes the cell's own formula."""
        found = self.cells(r)
        out = {}
        for col in cols:
            c = found.get(col)
            if c is None:
                continue
            f = c.find(_F)
            if f is not None and f.get("t") == "shared":
                self._unshare(c, f)
            empty = etree.Element(_C, r=c.get("r"))
            if c.get("s") is not None:
                empty.set("s", c.get("s"))
            c.addprevious(empty)
            c.getparent().remove(c)
            out[col] = c
        return out

    def _unshare(self, c, f) -> None:
        if self._shared is None:  # the first cells of the sheet's shared formulas
            self._shared = {}
            for cell in self.sheet_data.iter(_C):
                g = cell.find(_F)
                if g is not None and g.get("t") == "shared" and g.get("ref") and g.text:
                    formula_of(g.text, "shared", g.get("si", ""), cell.get("r"), self._shared)
        text = formula_of(f.text or "", "shared", f.get("si", ""), c.get("r"), self._shared)
        f.attrib.clear()
        f.text = text

    # --- writing ------------------------------------------------------------------------

    def put(self, r: int, cells: dict[int, str | etree._Element]) -> None:
        """Put ``cells`` {column: cell} into row ``r``, replacing what those columns held; the row's
        other cells stay.  A cell is :func:`cell_xml` text with its reference, or an element (its
        reference is set)."""
        rs = str(r)
        for col, c in cells.items():
            if not isinstance(c, str):
                c.set("r", col_letter(col) + rs)
        self.put_cells.setdefault(r, {}).update(cells)

    def clear(self, r: int, cols: Iterable[int]) -> None:
        """Cells of row ``r`` in ``cols`` emptied (their style kept)."""
        found = self.cells(r)
        for col in cols:
            c = found.get(col)
            if c is not None:
                style = c.get("s")
                c.attrib.clear()
                for child in list(c):
                    c.remove(child)
                c.set("r", f"{col_letter(col)}{r}")
                if style is not None:
                    c.set("s", style)
            self.put_cells.get(r, {}).pop(col, None)

    def extend_validations(self, first: int, old_last: int, new_last: int, max_col: int) -> None:
        """Data validations over rows ``first``..``old_last`` of columns up to ``max_col`` reach ``new_last``."""
        for dv in self.root.iter(_DATA_VALIDATION):
            ranges, changed = [], False
            for rng in (dv.get("sqref") or "").split():
                a, _, b = rng.partition(":")
                b = b or a
                (r1, c1), (r2, c2) = split_ref(a.replace("$", "")), split_ref(b.replace("$", ""))
                if r1 == first and r2 == old_last and c2 <= max_col:
                    rng = f"{col_letter(c1)}{first}:{col_letter(c2)}{new_last}"
                    changed = True
                ranges.append(rng)
            if changed:
                dv.set("sqref", " ".join(ranges))

    def _serialise(self, el) -> str:
        text = etree.tostring(el, encoding="unicode")
        return text.replace(self._default_ns, "", 1)

    def _row_head(self, row) -> str:
        attrs = []
        for key, value in row.attrib.items():
            if key[0] == "{":
                uri, _, local = key[1:].partition("}")
                prefix = next((p for p, u in (row.nsmap or {}).items() if u == uri and p), None)
                if prefix is None:
                    continue  # an attribute of a namespace the row cannot name: dropped (none is needed)
                key = f"{prefix}:{local}"
            attrs.append(f' {key}="{_escape(value).replace(chr(34), "&quot;")}"')
        return "<row" + "".join(attrs)

    def to_bytes(self) -> bytes:
        """The part: rows in order, the dimension covering every cell."""
        self._default_ns = f' xmlns="{MAIN}"'
        parts: list[str] = []
        last_row, last_col = 1, 1
        for r in sorted(self.rows.keys() | self.put_cells.keys()):
            row = self.rows.get(r)
            put = self.put_cells.get(r)
            if not put:
                if row is not None:
                    parts.append(self._serialise(row))
                    cols = [split_ref(c.get("r"))[1] for c in row.iter(_C)]
                    last_row, last_col = r, max([last_col, *cols])
                continue
            cells: dict[int, str | etree._Element] = dict(self.cells(r)) if row is not None else {}
            cells.update(put)
            start = self._row_head(row) if row is not None else f'<row r="{r}"'
            body = "".join(c if isinstance(c, str) else self._serialise(c) for _, c in sorted(cells.items()))
            parts.append(f"{start}>{body}</row>")
            last_row, last_col = r, max(last_col, max(cells))
        for row in list(self.sheet_data):
            self.sheet_data.remove(row)
        dimension = self.root.find(_DIMENSION)
        if dimension is not None:
            dimension.set("ref", f"A1:{col_letter(last_col)}{last_row}")
        marker = "\ue000xl-ecom-rows\ue000"  # where the rows go (private-use characters: in no sheet)
        self.sheet_data.text = marker
        data = xml.to_bytes(self.root, self.data)
        encoded = marker.encode("utf-8")
        if data.count(encoded) != 1:
            raise xml.XmlError("工作表部件无法写入")
        head, _, tail = data.partition(encoded)
        return head + "".join(parts).encode("utf-8") + tail
