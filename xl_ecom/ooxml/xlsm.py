"""Turn an openpyxl-written .xlsx into the macro workbook (.xlsm), byte for byte reproducibly.

:func:`assemble_xlsm` adds to the package what Excel has in a macro-enabled
workbook with a custom ribbon:

- the main part's content type ``application/vnd.ms-excel.sheet.macroEnabled.main+xml``;
- ``xl/vbaProject.bin``, its relationship from the workbook part and its content type;
- the ``codeName`` of the workbook (``ThisWorkbook``) and of each sheet
  (``Sheet1``.. in sheet order, as Excel names them), which must match the
  document modules of the VBA project: this is checked;
- ``customUI/customUI14.xml`` with its relationship in ``_rels/.rels``
  (type ``.../2007/relationships/ui/extensibility``), added last: openpyxl's
  ``keep_vba`` round trip keeps ``vbaProject.bin`` but drops that relationship,
  so nothing is read back through openpyxl after it is added;
- ``docProps/core.xml`` with pinned created/modified times (openpyxl stamps the clock);

and writes a deterministic zip: fixed member order, fixed date, one compression
method and level, no extra fields, the same file attributes for every member. Same inputs, same bytes.
"""

from __future__ import annotations

import io
import posixpath
import re
import zipfile
from collections.abc import Sequence
from pathlib import Path

from defusedxml import ElementTree as SafeET

from xl_ecom.common.errors import XlEcomError
from xl_ecom.ooxml.vba import TEMPLATES_DIR, WORKBOOK_CODE_NAME, VBAModuleSource, build_vba_project, project_modules

RIBBON_TEMPLATE = TEMPLATES_DIR / "ribbon" / "customUI14.xml"

MACRO_MAIN_CONTENT_TYPE = "application/vnd.ms-excel.sheet.macroEnabled.main+xml"
XLSX_MAIN_CONTENT_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"
VBA_PROJECT_CONTENT_TYPE = "application/vnd.ms-office.vbaProject"
VBA_PROJECT_REL_TYPE = "http://schemas.microsoft.com/office/2006/relationships/vbaProject"
CUSTOM_UI_REL_TYPE = "http://schemas.microsoft.com/office/2007/relationships/ui/extensibility"
CUSTOM_UI_NAMESPACE = "http://schemas.microsoft.com/office/2009/07/customui"
OFFICE_DOCUMENT_REL_TYPE = "http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument"
CORE_PROPERTIES_REL_TYPE = "http://schemas.openxmlformats.org/package/2006/relationships/metadata/core-properties"
WORKSHEET_REL_TYPE = "http://schemas.openxmlformats.org/officeDocument/2006/relationships/worksheet"
CHARTSHEET_REL_TYPE = "http://schemas.openxmlformats.org/officeDocument/2006/relationships/chartsheet"

CONTENT_TYPES_PART = "[Content_Types].xml"
PACKAGE_RELS_PART = "_rels/.rels"
VBA_PROJECT_PART = "xl/vbaProject.bin"
CUSTOM_UI_PART = "customUI/customUI14.xml"

#: created/modified written into docProps/core.xml unless the caller gives another.
PINNED_TIMESTAMP = "2020-01-01T00:00:00Z"
#: Zip member date (the earliest a zip can hold) and compression.
ZIP_DATE_TIME = (1980, 1, 1, 0, 0, 0)
ZIP_COMPRESSION = zipfile.ZIP_DEFLATED
ZIP_COMPRESSLEVEL = 6
ZIP_CREATE_SYSTEM = 3
ZIP_EXTERNAL_ATTR = 0o100644 << 16

_RELS_NS = "{http://schemas.openxmlformats.org/package/2006/relationships}"
_MAIN_NS = "{http://schemas.openxmlformats.org/spreadsheetml/2006/main}"
_R_NS = "{http://schemas.openxmlformats.org/officeDocument/2006/relationships}"
_TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")


class PackageError(XlEcomError, ValueError):
    """The workbook package cannot be assembled (the message is Chinese)."""


# ---------------------------------------------------------------------------
# Small OPC helpers (the parts come from openpyxl, so their shape is known;
# reading goes through defusedxml, edits are textual so nothing else changes)
# ---------------------------------------------------------------------------


# the relationship helpers live in the OOXML layer; re-exported here for the callers of xlsm
from xl_ecom.ooxml.relationships import (  # noqa: E402,F401
    append_relationship,
    relationships,
    relative_target,
    rels_part_of,
    resolve_target,
)


def add_relationship(xml: bytes, rel_type: str, target: str) -> bytes:
    """Add the one relationship of ``rel_type`` a package part may have (refused if present)."""
    if any(rel.get("Type") == rel_type for rel in relationships(xml)):
        raise PackageError(f"工作簿中已经有类型为 {rel_type} 的关系，不能再添加。")
    return append_relationship(xml, rel_type, target)[0]


def _attribute(tag: str, name: str) -> str | None:
    found = re.search(rf'\s{name}="([^"]*)"', tag)
    return found.group(1) if found else None


def _with_attribute(tag: str, name: str, value: str) -> str:
    end = len(tag) - (2 if tag.endswith("/>") else 1)
    head = tag[:end].rstrip()
    return f'{head} {name}="{value}"{tag[end:]}'


def _set_code_name(xml: bytes, element: str, code_name: str) -> tuple[bytes, str]:
    """``xml`` with ``codeName`` on its first ``element`` start tag (added as the
    root's first child when missing), and the code name it ends up with: one
    already there is kept."""
    text = xml.decode("utf-8")
    found = re.search(rf"<{element}\b[^>]*?/?>", text)
    if found:
        present = _attribute(found.group(), "codeName")
        if present:
            return xml, present
        tag = _with_attribute(found.group(), "codeName", code_name)
        return (text[: found.start()] + tag + text[found.end() :]).encode("utf-8"), code_name
    root = re.search(r"<(?![?!])[^>]*>", text)
    if root is None:
        raise PackageError(f"部件中没有根元素，无法写入 codeName {code_name}。")
    insert = f'<{element} codeName="{code_name}"/>'
    return (text[: root.end()] + insert + text[root.end() :]).encode("utf-8"), code_name


def _content_types(xml: bytes, main_part: str) -> bytes:
    text = xml.decode("utf-8")
    override = re.compile(rf'<Override\b[^>]*PartName="/{re.escape(main_part)}"[^>]*/>')
    found = override.search(text)
    if found is None:
        raise PackageError(f"[Content_Types].xml 中没有主部件 /{main_part} 的内容类型。")
    tag = re.sub(r'ContentType="[^"]*"', f'ContentType="{MACRO_MAIN_CONTENT_TYPE}"', found.group())
    text = text[: found.start()] + tag + text[found.end() :]
    root = SafeET.fromstring(text.encode("utf-8"))
    ns = "{http://schemas.openxmlformats.org/package/2006/content-types}"
    defaults = {d.get("Extension", "").lower(): d.get("ContentType") for d in root.iter(f"{ns}Default")}
    additions = []
    if "bin" not in defaults:
        additions.append(f'<Default Extension="bin" ContentType="{VBA_PROJECT_CONTENT_TYPE}"/>')
    elif defaults["bin"] != VBA_PROJECT_CONTENT_TYPE:
        additions.append(f'<Override PartName="/{VBA_PROJECT_PART}" ContentType="{VBA_PROJECT_CONTENT_TYPE}"/>')
    if defaults.get("xml") != "application/xml":
        additions.append(f'<Override PartName="/{CUSTOM_UI_PART}" ContentType="application/xml"/>')
    if additions:
        start = re.search(r"<Types\b[^>]*>", text)
        assert start is not None
        text = text[: start.end()] + "".join(additions) + text[start.end() :]
    return text.encode("utf-8")


def _pin_core_properties(xml: bytes, timestamp: str) -> bytes:
    text = xml.decode("utf-8")
    for name in ("created", "modified"):
        pattern = re.compile(rf"(<dcterms:{name}\b[^>]*>)[^<]*(</dcterms:{name}>)")
        if pattern.search(text):
            text = pattern.sub(lambda m: m.group(1) + timestamp + m.group(2), text, 1)
        else:
            element = f'<dcterms:{name} xsi:type="dcterms:W3CDTF">{timestamp}</dcterms:{name}>'
            text = text.replace("</cp:coreProperties>", element + "</cp:coreProperties>", 1)
    return text.encode("utf-8")


def _check_custom_ui(custom_ui_xml: bytes) -> None:
    try:
        root = SafeET.fromstring(custom_ui_xml)
    except Exception as exc:  # defusedxml raises several kinds; all mean the same to the builder
        raise PackageError(f"功能区 XML（customUI14.xml）不是合法的 XML：{exc}") from None
    if root.tag != f"{{{CUSTOM_UI_NAMESPACE}}}customUI":
        raise PackageError(f"功能区 XML 的根元素必须是 {CUSTOM_UI_NAMESPACE} 命名空间中的 customUI，现在是 {root.tag}。")


# ---------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------


def sheet_code_names(xlsx_bytes: bytes) -> list[tuple[str, str]]:
    """``(sheet name, code name)`` for each sheet in workbook order, as
    :func:`assemble_xlsm` writes them (a code name already present is kept;
    otherwise ``Sheet<n>``/``Chart<n>`` by position, as Excel names them)."""
    with zipfile.ZipFile(io.BytesIO(xlsx_bytes)) as package:
        parts = {name: package.read(name) for name in package.namelist()}
    main_part = find_main_part(parts)
    return [(name, code) for name, _, code in _sheets(parts, main_part)]


def find_main_part(parts: dict[str, bytes]) -> str:
    from xl_ecom.ooxml import workbook

    try:
        return workbook.find_main_part(parts)
    except workbook.WorkbookPartError as exc:
        raise PackageError(str(exc)) from None


def _sheets(parts: dict[str, bytes], main_part: str) -> list[tuple[str, str, str]]:
    """``(sheet name, sheet part, code name)`` in workbook order (the sheet list of
    :func:`xl_ecom.ooxml.workbook.sheets`; a missing code name is ``Sheet<n>``/``Chart<n>`` by position)."""
    from xl_ecom.ooxml import workbook, worksheet

    result = []
    for position, sheet in enumerate(workbook.sheets(parts, main_part), start=1):
        if sheet.rel_type == WORKSHEET_REL_TYPE:
            prefix = "Sheet"
        elif sheet.rel_type == CHARTSHEET_REL_TYPE:
            prefix = "Chart"
        else:
            raise PackageError(f"工作表“{sheet.name}”的类型 {sheet.rel_type} 不支持。")
        present = worksheet.code_name(parts[sheet.part])
        result.append((sheet.name, sheet.part, present or f"{prefix}{position}"))
    return result


def assemble_xlsm(
    xlsx_bytes: bytes,
    vba_project_bin: bytes,
    custom_ui_xml: bytes,
    *,
    timestamp: str = PINNED_TIMESTAMP,
) -> bytes:
    """The .xlsm package: ``xlsx_bytes`` (openpyxl output, no macros) with
    ``vba_project_bin`` as its VBA project and ``custom_ui_xml`` as its ribbon.

    ``timestamp`` (``YYYY-MM-DDTHH:MM:SSZ``) goes into docProps/core.xml as both
    created and modified. The VBA project's document modules must be exactly
    ``ThisWorkbook`` and the sheets' code names (see :func:`sheet_code_names`),
    as :func:`xl_ecom.ooxml.vba.build_vba_project` makes them for the same workbook.
    """
    if not _TIMESTAMP.match(timestamp):
        raise PackageError(f"时间戳“{timestamp}”格式不对，应为 YYYY-MM-DDTHH:MM:SSZ。")
    _check_custom_ui(custom_ui_xml)
    try:
        with zipfile.ZipFile(io.BytesIO(xlsx_bytes)) as package:
            order = package.namelist()
            parts = {name: package.read(name) for name in order}
    except zipfile.BadZipFile:
        raise PackageError("传入的工作簿不是 zip 格式的 .xlsx 文件。") from None
    if len(set(order)) != len(order):
        raise PackageError("传入的工作簿包中有重名的部件。")
    for part in (VBA_PROJECT_PART, CUSTOM_UI_PART):
        if part in parts:
            raise PackageError(f"传入的工作簿已经含有 {part}；请传入 openpyxl 写出的、不含宏和功能区的 .xlsx。")

    main_part = find_main_part(parts)
    main_rels = rels_part_of(main_part)
    parts[CONTENT_TYPES_PART] = _content_types(parts[CONTENT_TYPES_PART], main_part)

    # Code names: the workbook and every sheet, as the VBA project's document modules are named.
    parts[main_part], book_code = _set_code_name(parts[main_part], "workbookPr", WORKBOOK_CODE_NAME)
    wanted = {book_code}
    for _, part, code in _sheets(parts, main_part):
        parts[part], written = _set_code_name(parts[part], "sheetPr", code)
        wanted.add(written)
    try:
        modules = project_modules(vba_project_bin)
    except Exception as exc:
        raise PackageError(f"vbaProject.bin 无法读取：{exc}") from None
    documents = {name for name, (kind, _) in modules.items() if kind == "document"}
    if documents != wanted:
        raise PackageError(
            "VBA 工程的文档模块与工作簿的工作表不对应："
            f"工程中有 {'、'.join(sorted(documents)) or '（无）'}，工作簿需要 {'、'.join(sorted(wanted))}。"
            "请用同一个 .xlsx 调用 build_vba_project 生成 vbaProject.bin。"
        )

    vba_target = posixpath.relpath(VBA_PROJECT_PART, posixpath.dirname(main_part))
    parts[main_rels] = add_relationship(parts[main_rels], VBA_PROJECT_REL_TYPE, vba_target)
    parts[VBA_PROJECT_PART] = vba_project_bin

    core = next(
        (
            resolve_target("", rel["Target"])
            for rel in relationships(parts[PACKAGE_RELS_PART])
            if rel.get("Type") == CORE_PROPERTIES_REL_TYPE
        ),
        None,
    )
    if core is None or core not in parts:
        raise PackageError("工作簿包中没有 docProps/core.xml，无法固定时间戳。")
    parts[core] = _pin_core_properties(parts[core], timestamp)

    # The ribbon last: its relationship and its part.
    parts[PACKAGE_RELS_PART] = add_relationship(parts[PACKAGE_RELS_PART], CUSTOM_UI_REL_TYPE, CUSTOM_UI_PART)
    parts[CUSTOM_UI_PART] = custom_ui_xml

    first = [CONTENT_TYPES_PART, PACKAGE_RELS_PART]
    last = [VBA_PROJECT_PART, CUSTOM_UI_PART]
    names = first + [name for name in order if name not in first and name not in last] + last
    return _deterministic_zip((name, parts[name]) for name in names)


def _deterministic_zip(members) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as out:
        for name, data in members:
            info = zipfile.ZipInfo(name, date_time=ZIP_DATE_TIME)
            info.compress_type = ZIP_COMPRESSION
            # zipfile refuses an attribute word of 0 (it writes 0o600 then), so every
            # member is a plain rw-r--r-- file made on "Unix", whatever machine builds it.
            info.create_system = ZIP_CREATE_SYSTEM
            info.external_attr = ZIP_EXTERNAL_ATTR
            out.writestr(info, data, compress_type=ZIP_COMPRESSION, compresslevel=ZIP_COMPRESSLEVEL)
    return buffer.getvalue()


def ribbon_xml(path: Path = RIBBON_TEMPLATE) -> bytes:
    """The ribbon (``templates/ribbon/customUI14.xml``) as stored."""
    data = path.read_bytes()
    _check_custom_ui(data)
    return data


def build_xlsm(
    xlsx_bytes: bytes,
    modules: Sequence[VBAModuleSource] | None = None,
    *,
    custom_ui_xml: bytes | None = None,
    timestamp: str = PINNED_TIMESTAMP,
) -> bytes:
    """The whole step from openpyxl's .xlsx to the macro workbook: a VBA project of ``modules``
    (default: the hand-written :func:`xl_ecom.ooxml.vba.template_modules`), the ribbon
    ``custom_ui_xml`` (default: the ribbon template), assembled.  Which modules make the workbook an
    add-in is the caller's business (the city workbook's come from its front end)."""
    project = build_vba_project(xlsx_bytes, modules)
    ribbon = ribbon_xml() if custom_ui_xml is None else custom_ui_xml
    return assemble_xlsm(xlsx_bytes, project, ribbon, timestamp=timestamp)


# ---------------------------------------------------------------------------
# Keeping the ribbon through an openpyxl save (used by collect)
# ---------------------------------------------------------------------------


def ribbon_parts(package: zipfile.ZipFile) -> dict[str, bytes]:
    """The ribbon (customUI) parts a package holds, by part name."""
    names = set(package.namelist())
    if PACKAGE_RELS_PART not in names:
        return {}
    out = {}
    for rel in relationships(package.read(PACKAGE_RELS_PART)):
        if rel.get("Type") == CUSTOM_UI_REL_TYPE:
            part = resolve_target("", rel["Target"])
            if part in names:
                out[part] = package.read(part)
    return out


def restore_ribbon(data: bytes, ribbon: dict[str, bytes]) -> bytes:
    """openpyxl (keep_vba) copies customUI/ but drops its relationship from _rels/.rels: put it back."""
    if not ribbon:
        return data
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        order = z.namelist()
        parts = {n: z.read(n) for n in order}
    rels = parts[PACKAGE_RELS_PART]
    for part, content in ribbon.items():
        if part not in parts:
            order.append(part)
        parts[part] = content
        present = {resolve_target("", r["Target"]) for r in relationships(rels) if r.get("Type") == CUSTOM_UI_REL_TYPE}
        if part not in present:
            rels = add_relationship(rels, CUSTOM_UI_REL_TYPE, part)
    parts[PACKAGE_RELS_PART] = rels
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as out:
        for name in order:
            out.writestr(name, parts[name])
    return buf.getvalue()
