"""``.rels`` parts: read, resolve targets, add and remove relationships."""

from __future__ import annotations

import posixpath

from lxml import etree

from xl_ecom.ooxml import xml
from xl_ecom.ooxml.namespaces import PKG_RELS, q

_REL = q(PKG_RELS, "Relationship")


def rels_part_of(part: str) -> str:
    folder, _, name = part.rpartition("/")
    return f"{folder}/_rels/{name}.rels" if folder else f"_rels/{name}.rels"


def relationships(data: bytes) -> list[dict[str, str]]:
    root = xml.parse(data, "关系部件")
    return [dict(el.attrib) for el in root.iter(_REL)]


def resolve_target(source_part: str, target: str) -> str:
    if target.startswith("/"):
        return target[1:]
    folder = source_part.rpartition("/")[0]
    return posixpath.normpath(posixpath.join(folder, target))


def relative_target(source_part: str, part: str) -> str:
    return posixpath.relpath(part, posixpath.dirname(source_part) or ".")


def new_rels(items: list[tuple[str, str, str]]) -> bytes:
    """A .rels part of (Id, Type, Target)."""
    root = etree.Element(_REL.replace("Relationship", "Relationships"), nsmap={None: PKG_RELS})
    for rid, rel_type, target in items:
        etree.SubElement(root, _REL, Id=rid, Type=rel_type, Target=target)
    return xml.to_bytes(root)


def append_relationship(data: bytes, rel_type: str, target: str) -> tuple[bytes, str]:
    """``data`` (a .rels part) with one more relationship, and the new relationship's Id."""
    root = xml.parse(data, "关系部件")
    ids = {el.get("Id", "") for el in root.iter(_REL)}
    number = 1
    while f"rId{number}" in ids:
        number += 1
    rid = f"rId{number}"
    etree.SubElement(root, _REL, Id=rid, Type=rel_type, Target=target)
    return xml.to_bytes(root, data), rid


def remove_relationships(data: bytes, rel_type: str) -> tuple[bytes, list[str]]:
    """``data`` without the relationships of ``rel_type``, and the targets they had."""
    root = xml.parse(data, "关系部件")
    targets = []
    for el in list(root.iter(_REL)):
        if el.get("Type") == rel_type:
            targets.append(el.get("Target", ""))
            root.remove(el)
    return (xml.to_bytes(root, data) if targets else data), targets
