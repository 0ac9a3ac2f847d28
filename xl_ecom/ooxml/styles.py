"""``xl/styles.xml``: cell formats (font, fill, border, alignment, number format given as openpyxl
style objects) appended to the package's stylesheet, their indices handed out, the part rewritten
with lxml."""

from __future__ import annotations

import copy

from lxml import etree

from xl_ecom.ooxml import xml
from xl_ecom.ooxml.namespaces import MAIN, REL_STYLES, q

_KINDS = ("fonts", "fills", "borders", "cellXfs")


def _fragment(text: str) -> list:
    """Elements of ``text`` (unqualified, as openpyxl serialises style objects) in the main namespace."""
    wrapper = xml.parse(f'<x xmlns="{MAIN}">{text}</x>'.encode(), "styles.xml")
    return list(wrapper)


class Styles:
    """Adds cell formats to styles.xml and hands out their indices; :meth:`save` writes the part."""

    def __init__(self, pkg):
        self.pkg = pkg
        self.part = pkg._rel_target(REL_STYLES)
        root = xml.parse(pkg.parts[self.part], "styles.xml")

        def count(tag: str) -> int:
            holder = root.find(q(MAIN, tag))
            return 0 if holder is None else len([el for el in holder if isinstance(el.tag, str)])

        self.n = {kind: count(kind) for kind in _KINDS}
        self.fmt_ids = {n.get("formatCode"): int(n.get("numFmtId")) for n in root.iter(q(MAIN, "numFmt"))}
        self.new: dict[str, list] = {kind: [] for kind in (*_KINDS, "numFmts")}
        self.cache: dict = {}
        self._cell_xfs: list | None = None

    @staticmethod
    def _element(obj, tag: str | None = None):
        """An openpyxl style object as an lxml element in the main namespace."""
        from openpyxl.xml.functions import tostring

        el = obj.to_tree(tag) if tag else obj.to_tree()
        return _fragment(tostring(el).decode("utf-8"))[0]

    def _add(self, kind: str, el) -> int:
        key = (kind, etree.tostring(el))
        if key not in self.cache:
            self.new[kind].append(el)
            self.cache[key] = self.n[kind] + len(self.new[kind]) - 1
        return self.cache[key]

    def _fmt(self, code: str) -> int:
        from openpyxl.styles.numbers import BUILTIN_FORMATS_REVERSE

        if code in BUILTIN_FORMATS_REVERSE:
            return BUILTIN_FORMATS_REVERSE[code]
        if code not in self.fmt_ids:
            self.fmt_ids[code] = max([163, *self.fmt_ids.values()]) + 1
            self.new["numFmts"].append(etree.Element(q(MAIN, "numFmt"), numFmtId=str(self.fmt_ids[code]), formatCode=code))
        return self.fmt_ids[code]

    def xf(self, font, alignment, fmt: str = "General", border=None, fill=None, quote_prefix: bool = False) -> int:
        """The index of the cell format; ``quote_prefix``: Excel's leading apostrophe (the text is
        kept as text when edited, never taken for a formula)."""
        key = ("xf", repr(font), repr(alignment), fmt, repr(border), repr(fill), quote_prefix)
        if key in self.cache:
            return self.cache[key]
        font_id = self._add("fonts", self._element(font))
        fill_id = self._add("fills", self._element(fill)) if fill is not None else 0
        border_id = self._add("borders", self._element(border)) if border is not None else 0
        el = etree.Element(q(MAIN, "xf"), numFmtId=str(self._fmt(fmt)), fontId=str(font_id), fillId=str(fill_id),
                           borderId=str(border_id), xfId="0", applyNumberFormat="1", applyFont="1",
                           applyFill="1" if fill is not None else "0", applyBorder="1" if border is not None else "0",
                           applyAlignment="1")
        if quote_prefix:
            el.set("quotePrefix", "1")
        el.append(self._element(alignment, "alignment"))
        self.cache[key] = self._add("cellXfs", el)
        return self.cache[key]

    def variant(self, style: str | None, *, quote_prefix: bool = False, fmt: str | None = None) -> str:
        """The index of cell format ``style`` (None: the default, 0) with Excel's leading apostrophe
        (``quote_prefix``) or number format ``fmt`` set, added once; ``style`` itself when it has them."""
        index = int(style or 0)
        key = ("variant", index, quote_prefix, fmt)
        if key in self.cache:
            return self.cache[key]
        xfs = [*self._xfs(), *self.new["cellXfs"]]
        base = xfs[index] if index < len(xfs) else etree.Element(q(MAIN, "xf"), numFmtId="0", fontId="0", fillId="0",
                                                                 borderId="0", xfId="0")
        el = copy.deepcopy(base)
        if quote_prefix:
            el.set("quotePrefix", "1")
        if fmt is not None:
            el.set("numFmtId", str(self._fmt(fmt)))
            el.set("applyNumberFormat", "1")
        if etree.tostring(el) == etree.tostring(base):
            self.cache[key] = str(index)
        else:
            self.cache[key] = str(self._add("cellXfs", el))
        return self.cache[key]

    def number_format(self, style: str | None) -> str:
        """The number format code of cell format ``style``."""
        from openpyxl.styles.numbers import BUILTIN_FORMATS

        xfs = [*self._xfs(), *self.new["cellXfs"]]
        index = int(style or 0)
        fmt_id = int(xfs[index].get("numFmtId", "0")) if index < len(xfs) else 0
        codes = {v: k for k, v in self.fmt_ids.items()}
        return codes.get(fmt_id) or BUILTIN_FORMATS.get(fmt_id, "General")

    def _xfs(self) -> list:
        if self._cell_xfs is None:
            root = xml.parse(self.pkg.parts[self.part], "styles.xml")
            holder = root.find(q(MAIN, "cellXfs"))
            self._cell_xfs = [] if holder is None else [el for el in holder if isinstance(el.tag, str)]
        return self._cell_xfs

    def save(self) -> None:
        if not any(self.new.values()):
            return
        root = xml.parse(self.pkg.parts[self.part], "styles.xml")
        for kind in ("numFmts", *_KINDS):
            if not self.new[kind]:
                continue
            holder = root.find(q(MAIN, kind))
            if holder is None:  # only numFmts may be missing: it is the stylesheet's first child
                holder = etree.Element(q(MAIN, kind))
                root.insert(0, holder)
            for el in self.new[kind]:
                holder.append(el)
            holder.set("count", str(len([el for el in holder if isinstance(el.tag, str)])))
        self.pkg.parts[self.part] = xml.to_bytes(root, self.pkg.parts[self.part])
