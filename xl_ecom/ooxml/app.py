"""``docProps/app.xml``: HeadingPairs / TitlesOfParts list the workbook's sheets.

Excel writes the sheet names as the first group of TitlesOfParts ("工作表"/"Worksheets", with
their count in HeadingPairs) followed by other groups (named ranges).  :func:`with_sheets` replaces
the first group by the given sheet names and keeps the other groups; a part without the two
properties gets them."""

from __future__ import annotations

from lxml import etree

from xl_ecom.ooxml import xml
from xl_ecom.ooxml.namespaces import DOC_PROPS_VTYPES as VT
from xl_ecom.ooxml.namespaces import EXTENDED_PROPERTIES as EP
from xl_ecom.ooxml.namespaces import q

SHEETS_HEADING = "工作表"
_SHEET_HEADINGS = {"工作表", "Worksheets", "Feuilles de calcul", "Arbeitsblätter"}


def _groups(root) -> list[tuple[str, list[str]]]:
    """[(heading, [titles])] as HeadingPairs and TitlesOfParts state them."""
    hp, tp = root.find(q(EP, "HeadingPairs")), root.find(q(EP, "TitlesOfParts"))
    if hp is None or tp is None:
        return []
    variants = [v[0] for v in hp.iter(q(VT, "variant")) if len(v)]
    titles = [t.text or "" for t in tp.iter(q(VT, "lpstr"))]
    out, at = [], 0
    for name_el, count_el in zip(variants[::2], variants[1::2]):
        n = int(count_el.text or "0")
        out.append((name_el.text or "", titles[at : at + n]))
        at += n
    return out


def titles(data: bytes) -> list[tuple[str, list[str]]]:
    return _groups(xml.parse(data, "docProps/app.xml"))


def with_sheets(data: bytes | None, sheet_names: list[str]) -> bytes:
    if data:
        root = xml.parse(data, "docProps/app.xml")
    else:
        root = etree.Element(q(EP, "Properties"), nsmap={None: EP, "vt": VT})
    groups = _groups(root)
    if groups and groups[0][0] in _SHEET_HEADINGS:
        groups[0] = (groups[0][0], list(sheet_names))
    else:
        groups.insert(0, (SHEETS_HEADING, list(sheet_names)))
    for tag in ("HeadingPairs", "TitlesOfParts"):
        for el in root.findall(q(EP, tag)):
            root.remove(el)
    # HeadingPairs and TitlesOfParts follow ScaleCrop (or lead), in the schema's order
    hp = etree.Element(q(EP, "HeadingPairs"), nsmap={"vt": VT})
    vec = etree.SubElement(hp, q(VT, "vector"), size=str(2 * len(groups)), baseType="variant")
    for name, items in groups:
        etree.SubElement(etree.SubElement(vec, q(VT, "variant")), q(VT, "lpstr")).text = name
        etree.SubElement(etree.SubElement(vec, q(VT, "variant")), q(VT, "i4")).text = str(len(items))
    tp = etree.Element(q(EP, "TitlesOfParts"), nsmap={"vt": VT})
    all_titles = [t for _, items in groups for t in items]
    vec = etree.SubElement(tp, q(VT, "vector"), size=str(len(all_titles)), baseType="lpstr")
    for t in all_titles:
        etree.SubElement(vec, q(VT, "lpstr")).text = t
    order = ["Template", "Manager", "Company", "Pages", "Words", "Characters", "PresentationFormat", "Lines",
             "Paragraphs", "Slides", "Notes", "TotalTime", "HiddenSlides", "MMClips", "ScaleCrop"]
    anchor = None
    for el in root:
        if isinstance(el.tag, str) and etree.QName(el).localname in order:
            anchor = el
    if anchor is None:
        root.insert(0, tp)
        root.insert(0, hp)
    else:
        anchor.addnext(tp)
        anchor.addnext(hp)
    return xml.to_bytes(root, data)
