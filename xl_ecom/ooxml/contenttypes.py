"""``[Content_Types].xml``: the Override of one part set or removed."""

from __future__ import annotations

from lxml import etree

from xl_ecom.ooxml import xml
from xl_ecom.ooxml.namespaces import CONTENT_TYPES, q

_OVERRIDE = q(CONTENT_TYPES, "Override")


def overrides(data: bytes) -> dict[str, str]:
    root = xml.parse(data, "[Content_Types].xml")
    return {el.get("PartName", ""): el.get("ContentType", "") for el in root.iter(_OVERRIDE)}


def set_override(data: bytes, part: str, content_type: str | None) -> bytes:
    """``data`` with the Override of ``/part`` replaced by ``content_type`` (removed if None)."""
    root = xml.parse(data, "[Content_Types].xml")
    name = "/" + part
    for el in list(root.iter(_OVERRIDE)):
        if el.get("PartName") == name:
            root.remove(el)
    if content_type:
        etree.SubElement(root, _OVERRIDE, PartName=name, ContentType=content_type)
    return xml.to_bytes(root, data)
