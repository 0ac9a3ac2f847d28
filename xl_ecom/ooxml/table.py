"""Table parts (``xl/tables/tableN.xml``, an Excel Table over a sheet range): its name, its range,
and the range moved (the table and its autoFilter together)."""

from __future__ import annotations

from xl_ecom.ooxml import xml
from xl_ecom.ooxml.namespaces import MAIN, q

_AUTO_FILTER = q(MAIN, "autoFilter")


def name_and_ref(data: bytes) -> tuple[str, str]:
    """(``name``, ``ref``) of the table, e.g. ("T_SALES", "A3:I203")."""
    root = xml.parse(data, "表格部件")
    return root.get("name") or root.get("displayName") or "", root.get("ref") or ""


def with_ref(data: bytes, ref: str) -> bytes:
    """The table part over ``ref``, its autoFilter (when it has one) too."""
    root = xml.parse(data, "表格部件")
    root.set("ref", ref)
    auto = root.find(_AUTO_FILTER)
    if auto is not None and auto.get("ref"):
        auto.set("ref", ref)
    return xml.to_bytes(root, data)
