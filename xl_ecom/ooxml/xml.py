"""The one XML parser of the project: lxml with DTDs, entities and network access off.

A part with a DOCTYPE is refused outright (no OOXML part has one; a DOCTYPE is how entity
expansion and external-entity attacks start).  ``huge_tree=False`` keeps libxml2's limits on
depth and text size.
"""

from __future__ import annotations

from lxml import etree

from xl_ecom.common.errors import XlEcomError


class XmlError(XlEcomError, ValueError):
    """A part is not XML this project accepts (the message is Chinese)."""


def _parser() -> etree.XMLParser:
    return etree.XMLParser(
        resolve_entities=False, no_network=True, load_dtd=False, dtd_validation=False, huge_tree=False, remove_comments=False
    )


_PARSER = _parser()


def _has_doctype(data: bytes) -> bool:
    """Whether the prolog (declaration, comments, processing instructions before the root element)
    holds a ``<!DOCTYPE``; checked before libxml2 sees the document."""
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
        data = data.decode("utf-16").encode("utf-8")
    at = 0
    while True:
        at = data.find(b"<", at)
        if at < 0:
            return False
        if data.startswith(b"<?", at):
            at = data.find(b"?>", at) + 2
        elif data.startswith(b"<!--", at):
            at = data.find(b"-->", at) + 3
        else:
            return data[at : at + 9].upper() == b"<!DOCTYPE"
        if at < 2:
            return False


def parse(data: bytes, what: str = "XML 部件") -> etree._Element:
    """The root element of ``data``; refused if it is not well-formed or has a DOCTYPE."""
    if _has_doctype(data):
        raise XmlError(f"“{what}”含有 DOCTYPE（文档类型声明），出于安全原因拒绝读取")
    try:
        root = etree.fromstring(data, _PARSER)
    except etree.XMLSyntaxError as exc:
        raise XmlError(f"“{what}”不是合法的 XML：{exc}") from None
    info = root.getroottree().docinfo
    if info.doctype or info.internalDTD is not None or info.externalDTD is not None:
        raise XmlError(f"“{what}”含有 DOCTYPE（文档类型声明），出于安全原因拒绝读取")
    return root


def _prolog(data: bytes) -> bytes:
    """What comes before the root element of ``data`` (declaration, comments), as it was."""
    at = 0
    while True:
        at = data.find(b"<", at)
        if at < 0:
            return b""
        if data.startswith(b"<?", at):
            at = data.find(b"?>", at) + 2
        elif data.startswith(b"<!--", at):
            at = data.find(b"-->", at) + 3
        else:
            return data[:at]
        if at < 2:
            return b""


def to_bytes(root: etree._Element, like: bytes | None = None) -> bytes:
    """``root`` serialised as UTF-8 without pretty-printing.  With ``like`` (the part as it was
    read) its prolog is kept byte for byte, so an edit changes only what it edits; otherwise the
    standalone declaration Excel writes."""
    if like is None or like[:2] in (b"\xff\xfe", b"\xfe\xff"):
        return etree.tostring(root, xml_declaration=True, encoding="UTF-8", standalone=True)
    return _prolog(like) + etree.tostring(root, encoding="UTF-8", xml_declaration=False)
