"""A .xlsx/.xlsm package held as its parts: read (sheet list, shared strings, date styles, the
cell values of a sheet), edited (sheets replaced or added with their drawing and chart, print
titles, numbers in cells, calcChain and app.xml kept consistent) and written back; parts nobody
edited are written back byte for byte.

The cell reader streams a sheet with lxml's iterparse (hardened like :mod:`xl_ecom.ooxml.xml`)
and reads what openpyxl reads in formula mode, for any writer's layout (prefixes, attribute order,
cells without references), freeing each row once read.  Every edit goes through
:mod:`xl_ecom.ooxml.xml` (lxml, hardened).
"""

from __future__ import annotations

import io
import zipfile
import zlib
from collections.abc import MutableMapping, Sequence
from typing import Any

from lxml import etree

from xl_ecom.common.errors import XlEcomError
from xl_ecom.ooxml import xml as _xml
from xl_ecom.ooxml.namespaces import CT_CHART as _CHART_CT
from xl_ecom.ooxml.namespaces import CT_DRAWING as _DRAWING_CT
from xl_ecom.ooxml.namespaces import CT_WORKSHEET as _WORKSHEET_CT
from xl_ecom.ooxml.namespaces import MAIN as _NS
from xl_ecom.ooxml.namespaces import REL as _REL
from xl_ecom.ooxml.namespaces import REL_DRAWING as _DRAWING_REL
from xl_ecom.ooxml.namespaces import REL_SHARED_STRINGS as _SHARED_STRINGS_REL
from xl_ecom.ooxml.namespaces import REL_STYLES as _STYLES_REL
from xl_ecom.ooxml.namespaces import q
from xl_ecom.ooxml.relationships import (
    append_relationship,
    relationships,
    relative_target,
    rels_part_of,
    resolve_target,
)
from xl_ecom.ooxml.workbook import find_main_part
from xl_ecom.ooxml.worksheet import col_letter, formula_of, num_text
from xl_ecom.ooxml.worksheet import col_number as _col_number


class PackageReadError(XlEcomError):
    """The package cannot be read or edited (the message is Chinese)."""


_C, _ROW, _V, _F, _IS, _T, _RPH = (q(_NS, t) for t in ("c", "row", "v", "f", "is", "t", "rPh"))


def _inline_text(is_el) -> str:
    """The text of an ``<is>`` (plain ``<t>`` or rich-text runs), without phonetic runs (rPh)."""
    first = is_el[0] if len(is_el) == 1 else None
    if first is not None and first.tag == _T:
        return first.text or ""
    return "".join(t.text or "" for t in is_el.iter(_T) if t.getparent().tag != _RPH)


class _Parts(MutableMapping):
    """The parts of a package by name: read from the zip when asked for (parts over 1 MB are not
    kept, so a sheet of 400,000 rows is never held in memory just because it is there); parts set
    are held, as bytes or as a binary file (a big generated sheet, spooled to disk).  :meth:`open`
    streams a part."""

    KEEP = 1 << 20

    def __init__(self, zf: zipfile.ZipFile):
        self.zf = zf
        self.stored = set(zf.namelist())  # still as the zip holds them
        self.held: dict[str, bytes] = {}
        self.files: dict[str, Any] = {}

    def __getitem__(self, name: str) -> bytes:
        if name in self.held:
            return self.held[name]
        if name in self.files:
            fh = self.files[name]
            fh.seek(0)
            return fh.read()
        if name not in self.stored:
            raise KeyError(name)
        data = self.zf.read(name)
        if len(data) <= self.KEEP:
            self.held[name] = data
        return data

    def __setitem__(self, name: str, data) -> None:
        self._forget(name)
        if isinstance(data, (bytes, bytearray)):
            self.held[name] = bytes(data)
        else:
            self.files[name] = data

    def _forget(self, name: str) -> None:
        self.held.pop(name, None)
        old = self.files.pop(name, None)
        if old is not None:
            old.close()
        self.stored.discard(name)

    def __delitem__(self, name: str) -> None:
        if name not in self:
            raise KeyError(name)
        self._forget(name)

    def __contains__(self, name) -> bool:
        return name in self.held or name in self.files or name in self.stored

    def __iter__(self):
        yield from self.held
        yield from self.files
        yield from (n for n in self.stored if n not in self.held)

    def __len__(self) -> int:
        return len(self.held.keys() | self.files.keys() | self.stored)

    def open(self, name: str):
        """A binary stream of the part (close it when done; a spooled part stays)."""
        if name in self.held:
            return io.BytesIO(self.held[name])
        if name in self.files:
            fh = self.files[name]
            fh.seek(0)
            return _Prefixed(b"", fh, close_stream=False)
        if name not in self.stored:
            raise KeyError(name)
        return self.zf.open(name)

    def size(self, name: str) -> int:
        if name in self.held:
            return len(self.held[name])
        if name in self.files:
            return self.files[name].seek(0, io.SEEK_END)
        return self.zf.getinfo(name).file_size


class _Prefixed(io.RawIOBase):
    """``head`` then the rest of ``stream``: a part whose beginning was read to check its prolog."""

    def __init__(self, head: bytes, stream, close_stream: bool = True):
        self.head, self.stream, self.close_stream = head, stream, close_stream

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if self.head:
            n = min(len(buffer), len(self.head))
            buffer[:n] = self.head[:n]
            self.head = self.head[n:]
            return n
        data = self.stream.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        if self.close_stream and not self.closed:
            self.stream.close()
        super().close()


class Package:
    """A .xlsx/.xlsm package held as its parts; untouched parts are written back as they were."""

    #: raised (with a Chinese message) when the package cannot be read or edited
    error: type[Exception] = PackageReadError

    def __init__(self, data: bytes, name: str = "工作簿"):
        try:
            zf = zipfile.ZipFile(io.BytesIO(data))
            self.order = zf.namelist()
            self.parts = _Parts(zf)
            # every part is read (and dropped) once here, so a damaged one is refused now, not
            # halfway through writing the file
            damaged = zf.testzip()
        except (zipfile.BadZipFile, KeyError, OSError, zlib.error):
            raise self.error(f"“{name}”不是有效的 Excel 工作簿（.xlsx/.xlsm）") from None
        if damaged is not None:
            raise self.error(f"“{name}”已损坏（部件“{damaged}”的内容与校验值不符），无法读取；请使用备份或重新保存该文件")
        try:
            self.main = find_main_part(self.parts)
            self.main_rels = rels_part_of(self.main)
            self._load_sheets()
        except Exception:
            raise self.error(f"“{name}”不是有效的 Excel 工作簿（缺少工作簿主部件）") from None
        self._sst: list[str] | None = None
        self._date_styles: set[int] | None = None

    # --- reading -------------------------------------------------------------------------

    def _load_sheets(self) -> None:
        from xl_ecom.ooxml import workbook

        self.rels = {r["Id"]: r for r in relationships(self.parts[self.main_rels])}
        self.sheet_refs = workbook.sheets(self.parts, self.main)
        self.sheets = [(s.name, s.part, s.rid) for s in self.sheet_refs]  # (name, part, rId)

    @property
    def sheet_names(self) -> list[str]:
        return [s[0] for s in self.sheets]

    def sheet_part(self, name: str) -> str:
        for n, part, _ in self.sheets:
            if n == name:
                return part
        raise KeyError(name)

    def code_name(self, part: str) -> str | None:
        """The code name of the sheet in ``part`` (read from the part's head only)."""
        from xl_ecom.ooxml import worksheet

        with self.parts.open(part) as fh:
            return worksheet.code_name(fh)

    def _rel_target(self, rel_type: str) -> str | None:
        for r in self.rels.values():
            if r.get("Type") == rel_type:
                return resolve_target(self.main, r["Target"])
        return None

    def shared_strings(self) -> list[str]:
        if self._sst is None:
            from defusedxml import ElementTree as SafeET

            part = self._rel_target(_SHARED_STRINGS_REL)
            out = []
            if part and part in self.parts:
                root = SafeET.fromstring(self.parts[part])
                t_tag, r_tag = f"{{{_NS}}}t", f"{{{_NS}}}r"
                for si in root.iter(f"{{{_NS}}}si"):
                    # plain <t>, or rich-text runs <r><t>; phonetic runs (<rPh>, furigana/pinyin) are not text
                    out.append("".join(
                        (child.text or "") if child.tag == t_tag else "".join(t.text or "" for t in child.iter(t_tag))
                        for child in si if child.tag in (t_tag, r_tag)
                    ))
            self._sst = out
        return self._sst

    def date_styles(self) -> set[int]:
        """Indices of the cell formats that show numbers as dates (read as datetimes, as openpyxl does)."""
        if self._date_styles is None:
            from defusedxml import ElementTree as SafeET
            from openpyxl.styles.numbers import BUILTIN_FORMATS, is_date_format

            out = set()
            part = self._rel_target(_STYLES_REL)
            if part and part in self.parts:
                root = SafeET.fromstring(self.parts[part])
                custom = {int(n.get("numFmtId")): n.get("formatCode") for n in root.iter(f"{{{_NS}}}numFmt")}
                xfs = root.find(f"{{{_NS}}}cellXfs")
                for i, xf in enumerate(xfs if xfs is not None else []):
                    fid = int(xf.get("numFmtId", "0"))
                    code = custom.get(fid, BUILTIN_FORMATS.get(fid))
                    if code and is_date_format(code):
                        out.add(i)
            self._date_styles = out
        return self._date_styles

    def rows(self, name: str, first_row: int = 1, ncols: int = 200, *, last_row: int | None = None, skip=(),
             data_only: bool = False, formulas: dict[str, str] | None = None) -> list[list]:
        """Cell values of sheet ``name`` from ``first_row`` (to ``last_row``), columns 1..ncols, as
        openpyxl would read them in formula mode: a formula cell gives its formula ("=..."), a
        date-formatted number a datetime.  Columns in ``skip`` are left None (not converted).
        ``data_only``: as openpyxl reads with ``data_only=True`` — a formula cell gives its cached
        result (None without one), and a number is an int exactly when its text has no decimal point
        or exponent (so a 16-digit integer stays the integer the file holds).

        Streamed with lxml's iterparse (hardened: no DTD, no entities, no network); each row is
        freed once read, and parsing stops after ``last_row``.  Cells and rows without a reference
        (allowed by the format) take the position after the previous one, as Excel reads them.

        ``formulas``: a dict that receives {ref: "=formula"} of the formula cells read (a shared
        formula's dependants translated from its first cell; "=（公式）" when that is not among the
        cells read), as :func:`xl_ecom.ooxml.safeio.open_untrusted` reports them."""
        from openpyxl.utils.datetime import from_excel, from_ISO8601

        stream = self.parts.open(self.sheet_part(name))  # streamed: a big sheet is never held whole
        head = stream.read(1 << 16)
        if _xml._has_doctype(head):
            raise self.error(f"工作表“{name}”含有 DOCTYPE（文档类型声明），出于安全原因拒绝读取")
        source = io.BufferedReader(_Prefixed(head, stream), 1 << 16)
        sst = self.shared_strings()
        dates = self.date_styles()
        out: dict[int, list] = {}
        wanted: dict[str, int] = {}  # column letters -> column number, for the columns read
        ignored: set[str] = set()
        skip = set(skip)
        rows_done = 0  # rows ended so far (the number of a row without a reference)
        r_prev, col = 0, 0
        row_vals: list | None = None
        shared: dict[str, tuple[str, str]] = {}  # shared formulas: si -> (text, ref of the first cell)
        parser = etree.iterparse(source, events=("end",), tag=(_C, _ROW), resolve_entities=False,
                                 no_network=True, load_dtd=False, huge_tree=False, remove_comments=True)
        try:
            for _, el in parser:
                if el.tag == _ROW:
                    rt = el.get("r")
                    rows_done = int(rt) if rt else rows_done + 1
                    el.clear()  # the row is read: free it and the rows before it
                    while el.getprevious() is not None:
                        del el.getparent()[0]
                    if last_row is not None and rows_done >= last_row:
                        break
                    continue
                ref = el.get("r")
                if ref:
                    i = len(ref.rstrip("0123456789"))
                    letters = ref[:i]
                    if letters in ignored:
                        continue
                    r = int(ref[i:])
                    col = wanted.get(letters, 0)
                    if not col:
                        col = _col_number(letters)
                        if col > ncols or col in skip:
                            ignored.add(letters)
                            continue
                        wanted[letters] = col
                else:  # no reference: the next cell of its row (of the next row after a row without one)
                    rt = el.getparent().get("r")
                    r = int(rt) if rt else rows_done + 1
                    col = col + 1 if r == r_prev else 1
                    if r != r_prev:
                        r_prev, row_vals = r, None
                    if col > ncols or col in skip:
                        continue
                if r != r_prev:
                    r_prev, row_vals = r, None
                if r < first_row or (last_row is not None and r > last_row) or not len(el):
                    continue
                t = el.get("t")
                v: str | None = None
                value: Any = None
                # CT_Cell's children come in the order f, v, is: the first one decides
                child = el[0]
                tag = child.tag
                if tag == _V:
                    v = child.text
                elif tag == _F:
                    if formulas is not None:
                        ref_text = ref or f"{col_letter(col)}{r}"
                        text = formula_of(child.text or "", child.get("t"), child.get("si", ""), ref_text, shared)
                        formulas[ref_text] = "=" + text if text else "=（公式）"
                    if not data_only:
                        value = "=" + (child.text or "")
                    else:  # the cached result, when there is one
                        nxt = child.getnext()
                        v = nxt.text if nxt is not None and nxt.tag == _V else None
                elif tag == _IS:
                    if t == "inlineStr":
                        only = child[0] if len(child) == 1 else None
                        value = (only.text or "") if only is not None and only.tag == _T else _inline_text(child)
                else:  # anything else first (extLst): look through the children
                    for child in el:
                        if child.tag == _V:
                            v = child.text
                        elif child.tag == _IS and t == "inlineStr":
                            value = _inline_text(child)
                if value is None:
                    if not v or t == "inlineStr":
                        continue
                    if (t is None or t == "n") and data_only:
                        # openpyxl's own cast (a text it cannot read raises, as openpyxl does)
                        value = float(v) if ("." in v or "e" in v or "E" in v) else int(v)
                        if dates and el.get("s") and int(el.get("s")) in dates:
                            try:
                                value = from_excel(value)
                            except (ValueError, OverflowError):  # no such date: openpyxl's error value
                                value = "#VALUE!"
                    elif t is None or t == "n":
                        try:
                            value = float(v)
                        except ValueError:
                            value = v
                        else:
                            if value.is_integer() and abs(value) < 2**53:
                                value = int(value)
                            if dates:
                                s = el.get("s")
                                if s and int(s) in dates:
                                    try:
                                        value = from_excel(value)
                                    except (ValueError, OverflowError):
                                        pass
                    elif t == "s":
                        value = sst[int(v)]
                    elif t == "b":
                        value = v.strip() in ("1", "true")
                    elif t == "d":
                        value = from_ISO8601(v)
                    else:  # str (a formula's text result), e (error)
                        value = v
                if row_vals is None:
                    row_vals = out.get(r)
                    if row_vals is None:
                        row_vals = out[r] = [None] * ncols
                row_vals[col - 1] = value
        except etree.XMLSyntaxError as exc:
            raise self.error(f"工作表“{name}”不是合法的 XML：{exc}") from None
        finally:
            stream.close()
        if parser.root is not None and parser.root.getroottree().docinfo.doctype:
            raise self.error(f"工作表“{name}”含有 DOCTYPE（文档类型声明），出于安全原因拒绝读取")
        last = max(out, default=first_row - 1)
        if last_row is not None:
            last = min(last, last_row)
        return [out.get(r, [None] * ncols) for r in range(first_row, last + 1)]

    # --- writing -------------------------------------------------------------------------

    def _free(self, pattern: str) -> str:
        n = 1
        while pattern.format(n) in self.parts:
            n += 1
        return pattern.format(n)

    def _content_type(self, part: str, content_type: str | None) -> None:
        from xl_ecom.ooxml import contenttypes

        self.parts["[Content_Types].xml"] = contenttypes.set_override(self.parts["[Content_Types].xml"], part, content_type)

    def _put(self, part: str, data: bytes, content_type: str | None = None) -> None:
        if part not in self.parts:
            self.order.append(part)
        self.parts[part] = data
        if content_type:
            self._content_type(part, content_type)

    def _drop(self, part: str) -> None:
        if part in self.parts:
            del self.parts[part]
            self.order.remove(part)
            self._content_type(part, None)

    def _drop_sheet_extras(self, sheet_part: str) -> None:
        """Remove what an earlier refresh attached to a generated sheet (drawing, chart, rels)."""
        rels_part = rels_part_of(sheet_part)
        if rels_part not in self.parts:
            return
        for rel in relationships(self.parts[rels_part]):
            if rel.get("TargetMode") == "External":
                continue
            target = resolve_target(sheet_part, rel["Target"])
            sub = rels_part_of(target)
            if sub in self.parts:
                for r2 in relationships(self.parts[sub]):
                    if r2.get("TargetMode") != "External":
                        self._drop(resolve_target(target, r2["Target"]))
                self._drop(sub)
            self._drop(target)
        self._drop(rels_part)

    def replace_sheet(self, name: str, xml: bytes, after: str, extras=None) -> int:
        """Put sheet ``name`` (new, right after ``after``; or replaced in place). Returns its index.

        ``extras`` is (drawing xml, drawing rels xml, [(chart part name, chart xml)]) or None."""
        from xl_ecom.ooxml import workbook
        from xl_ecom.ooxml.relationships import new_rels

        if name in self.sheet_names:
            part = self.sheet_part(name)
            self._drop_sheet_extras(part)
            self._put(part, xml)
            index = self.sheet_names.index(name)
        else:
            part = self._free("xl/worksheets/sheet{}.xml")
            self._put(part, xml, _WORKSHEET_CT)
            rels, rid = append_relationship(self.parts[self.main_rels], _REL + "worksheet", relative_target(self.main, part))
            self.parts[self.main_rels] = rels
            index = self.sheet_names.index(after) + 1 if after in self.sheet_names else len(self.sheets)
            # sheet-scoped names (print titles) and the active tab follow their sheets
            self.parts[self.main] = workbook.insert_sheet(self.parts[self.main], name, rid, index)
            self._load_sheets()
        if extras:
            drawing_xml, chart_parts = extras
            drawing = self._free("xl/drawings/drawing{}.xml")
            self._put(drawing, b"", _DRAWING_CT)  # reserve the name before choosing chart names
            chart_names = []
            for chart_xml in chart_parts:
                chart = self._free("xl/charts/chart{}.xml")
                self._put(chart, chart_xml, _CHART_CT)
                chart_names.append(chart)
            self._put(drawing, drawing_xml(chart_names))
            chart_rels = [(f"rId{i}", _REL + "chart", relative_target(drawing, c)) for i, c in enumerate(chart_names, start=1)]
            self._put(rels_part_of(drawing), new_rels(chart_rels))
            self._put(rels_part_of(part), new_rels([("rId1", _DRAWING_REL, relative_target(part, drawing))]))
        return index

    def set_print_titles(self, name: str, rows: str | None) -> None:
        from xl_ecom.ooxml import workbook

        self.parts[self.main] = workbook.set_print_titles(self.parts[self.main], self.sheet_names.index(name), name, rows)

    def set_print_area(self, name: str, ref: str) -> None:
        """Sheet ``name`` prints ``ref`` ("A1:I12")."""
        from xl_ecom.ooxml import workbook

        self.parts[self.main] = workbook.set_print_area(self.parts[self.main], self.sheet_names.index(name), name, ref)

    def table_parts(self, name: str) -> list[str]:
        """The table parts (Excel Tables) of sheet ``name``."""
        from xl_ecom.ooxml.namespaces import REL_TABLE

        rels_part = rels_part_of(self.sheet_part(name))
        if rels_part not in self.parts:
            return []
        return [resolve_target(self.sheet_part(name), r["Target"]) for r in relationships(self.parts[rels_part])
                if r.get("Type") == REL_TABLE and r.get("TargetMode") != "External"]

    def full_calc_on_load(self) -> None:
        """Excel and LibreOffice recalculate the annex formulas (完成率, 差额, 合计) on opening."""
        from xl_ecom.ooxml import workbook

        self.parts[self.main] = workbook.full_calc_on_load(self.parts[self.main])

    def set_numbers(self, name: str, values: dict) -> None:
        """Write numbers into cells {(row, col): number} of sheet ``name``, keeping each cell's style."""
        from xl_ecom.ooxml import worksheet

        part = self.sheet_part(name)
        try:
            self.parts[part] = worksheet.set_numbers(self.parts[part], {k: num_text(v) for k, v in values.items()})
        except worksheet.MissingRowError as exc:
            raise self.error(f"“{name}”第{exc.args[0]}行不存在，表格结构被改动，无法写入完成数") from None

    def set_cached(self, name: str, values: dict) -> None:
        """The cached results of formula cells {(row, col): value} of sheet ``name`` (cells without a
        formula are left as they are)."""
        from xl_ecom.ooxml import worksheet

        part = self.sheet_part(name)
        refs = {f"{col_letter(c)}{r}": v for (r, c), v in values.items()}
        self.parts[part] = worksheet.set_cached(self.parts[part], refs)

    def finish(self, changed: Sequence[str]) -> None:
        """Bookkeeping after the sheets named ``changed`` were rewritten: calcChain keeps only
        formulas that still exist (dropped when none is left), docProps/app.xml lists the sheets."""
        from xl_ecom.ooxml import app, calcchain, worksheet
        from xl_ecom.ooxml.namespaces import APP_PART, REL_CALC_CHAIN
        from xl_ecom.ooxml.relationships import remove_relationships

        chain = self._rel_target(REL_CALC_CHAIN)
        if chain and chain in self.parts:
            ids = {s.name: s.sheet_id for s in self.sheet_refs}
            formulas = {}
            for n in changed:
                if n in ids:
                    with self.parts.open(self.sheet_part(n)) as fh:
                        formulas[ids[n]] = worksheet.formula_cells(fh)
            data = calcchain.rewrite(self.parts[chain], formulas)
            if data is None:
                self._drop(chain)
                self.parts[self.main_rels], _ = remove_relationships(self.parts[self.main_rels], REL_CALC_CHAIN)
                self.rels = {r["Id"]: r for r in relationships(self.parts[self.main_rels])}
            else:
                self.parts[chain] = data
        if APP_PART in self.parts:
            self.parts[APP_PART] = app.with_sheets(self.parts[APP_PART], self.sheet_names)

    def to_bytes(self) -> bytes:
        import shutil
        import tempfile

        # written into a temporary file, then read once: a growing buffer of a 50 MB package would
        # be copied as it grows and again when its bytes are taken
        buf = tempfile.SpooledTemporaryFile(max_size=8 << 20)
        # big sheets: fast compression (a few percent larger, several times faster), streamed
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as out:
            names = ["[Content_Types].xml"] + [n for n in self.order if n != "[Content_Types].xml"]
            for n in names:
                if self.parts.size(n) <= 1_000_000:
                    out.writestr(n, self.parts[n], compresslevel=6)
                    continue
                with self.parts.open(n) as src, out.open(n, "w", force_zip64=True) as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
        with buf:
            buf.seek(0)
            return buf.read()
