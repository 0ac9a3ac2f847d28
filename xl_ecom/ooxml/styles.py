"""``xl/styles.xml``: cell formats (font, fill, border, alignment, number format given as openpyxl
style objects) appended to the package's stylesheet, their indices handed out, the part rewritten
with lxml."""

from __future__ import annotations

from lxml import etree

from xl_ecom.ooxml import xml
from xl_ecom.ooxml.namespaces import MAIN, REL_STYLES, q

_KINDS = ("fonts", "fills", "borders", "cellXfs")


def _fragment(text: str) -> list:
    """Elements of ``text`` (unqualified, as openpyxl serialises style objects) in the main namespace."""
    wrapper = xml.parse(f'<x xmlns="{MAIN}">{text}</x>'.encode("utf-8"), "styles.xml")
    return list(wrapper)


class Styles:
    """Adds cell formats to styles.xml and hands out their indices; :meth:`save` writes the part."""

    def __init__(self, pkg):
        self.pkg = pkg
        self.part = pkg._rel_target(REL_STYLES)
        root = xml.parse(pkg.parts[self.part], "styles.xml")
        count = lambda tag: len([el for el in (root.find(q(MAIN, tag)) if root.find(q(MAIN, tag)) is not None else []) if isinstance(el.tag, str)])  # noqa: E731
        self.n = {kind: count(kind) for kind in _KINDS}
        self.fmt_ids = {n.get("formatCode"): int(n.get("numFmtId")) for n in root.iter(q(MAIN, "numFmt"))}
        self.new: dict[str, list[str]] = {kind: [] for kind in (*_KINDS, "numFmts")}
        self.cache: dict = {}

    @staticmethod
    def _xml(obj, tag: str | None = None) -> str:
        from openpyxl.xml.functions import tostring

        el = obj.to_tree(tag) if tag else obj.to_tree()
        return tostring(el).decode("utf-8")

    def _add(self, kind: str, text: str) -> int:
        key = (kind, text)
        if key not in self.cache:
            self.new[kind].append(text)
            self.cache[key] = self.n[kind] + len(self.new[kind]) - 1
        return self.cache[key]

    def _fmt(self, code: str) -> int:
        from openpyxl.styles.numbers import BUILTIN_FORMATS_REVERSE

        if code in BUILTIN_FORMATS_REVERSE:
            return BUILTIN_FORMATS_REVERSE[code]
        if code not in self.fmt_ids:
            self.fmt_ids[code] = max([163, *self.fmt_ids.values()]) + 1
            el = etree.Element("numFmt", numFmtId=str(self.fmt_ids[code]), formatCode=code)
            self.new["numFmts"].append(etree.tostring(el, encoding="unicode"))
        return self.fmt_ids[code]

    def xf(self, font, alignment, fmt: str = "General", border=None, fill=None) -> int:
        key = ("xf", repr(font), repr(alignment), fmt, repr(border), repr(fill))
        if key in self.cache:
            return self.cache[key]
        font_id = self._add("fonts", self._xml(font))
        fill_id = self._add("fills", self._xml(fill)) if fill is not None else 0
        border_id = self._add("borders", self._xml(border)) if border is not None else 0
        fmt_id = self._fmt(fmt)
        align = self._xml(alignment, "alignment")
        text = (
            f'<xf numFmtId="{fmt_id}" fontId="{font_id}" fillId="{fill_id}" borderId="{border_id}" xfId="0"'
            f' applyNumberFormat="1" applyFont="1" applyFill="{1 if fill is not None else 0}"'
            f' applyBorder="{1 if border is not None else 0}" applyAlignment="1">{align}</xf>'
        )
        self.cache[key] = self._add("cellXfs", text)
        return self.cache[key]

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
            for el in _fragment("".join(self.new[kind])):
                holder.append(el)
            holder.set("count", str(len([el for el in holder if isinstance(el.tag, str)])))
        self.pkg.parts[self.part] = xml.to_bytes(root, self.pkg.parts[self.part])
