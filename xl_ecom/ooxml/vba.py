"""MS-OVBA VBA projects (``xl/vbaProject.bin``) built from source text, and read back.

This module knows VBA and the project format, not what the modules are for: the caller gives the
modules (:class:`VBAModuleSource`), :func:`build_vba_project` writes them into a new project for
a workbook with pyOpenVBA and :func:`strict_vba_project` drops every compiled state, as MS-OVBA
lets a writer. :func:`template_modules` reads the hand-written ``.bas``/``.cls`` files of
``templates/vba``. The modules that make the workbook an xlwings add-in (xlwings' runtime, the
UDF wrappers and their Function Wizard texts) are the front end's business:
:mod:`xl_ecom.frontends.addin`.

VBA source must be ASCII: every module is checked, and a non-ASCII character is
refused with a Chinese message naming the module, line and column. Chinese text
reaches VBA only as numbers (see :func:`vba_unicode_literal`).
"""

from __future__ import annotations

import tempfile
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from xl_ecom.common import resources
from xl_ecom.common.errors import XlEcomError

#: Where the hand-written VBA and the ribbon live (repository root / templates).
TEMPLATES_DIR = resources.TEMPLATES_DIR
VBA_TEMPLATES_DIR = TEMPLATES_DIR / "vba"

#: The document modules' names as Excel gives them (and pyOpenVBA measured).
WORKBOOK_CODE_NAME = "ThisWorkbook"

#: UTF-16 code units per ``U("...")`` call: keeps every VBA line far under 1023 characters.
_CODE_UNITS_PER_CHUNK = 120

ModuleKind = Literal["standard", "class", "document"]


class VBASourceError(XlEcomError, ValueError):
    """VBA source that cannot go into the workbook (the message is Chinese)."""


@dataclass(frozen=True)
class VBAModuleSource:
    """One module of the project.

    ``source`` is CRLF text. Standard and class modules carry their
    ``Attribute VB_*`` header; a document module (``ThisWorkbook``) is the code
    only, and gets the document header Excel writes when the project is built.
    ``origin`` says where the text came from, for messages and tests.
    """

    name: str
    kind: ModuleKind
    source: str
    origin: str

    @property
    def code(self) -> str:
        """The source without its attribute header, as the VBA editor shows it."""
        return split_header(self.source)[1]


# ---------------------------------------------------------------------------
# Source text helpers
# ---------------------------------------------------------------------------


def crlf(text: str) -> str:
    """``text`` with CRLF line ends, as VBA stores source."""
    return text.replace("\r\n", "\n").replace("\r", "\n").replace("\n", "\r\n")


def split_header(source: str) -> tuple[str, str]:
    """``(header, code)``: a ``VERSION ... CLASS`` preamble and the leading
    ``Attribute`` lines, then the rest."""
    lines = crlf(source).split("\r\n")
    i = 0
    if lines and lines[0].startswith("VERSION ") and lines[0].rstrip().endswith("CLASS"):
        while i < len(lines) and lines[i].strip() != "END":
            i += 1
        i += 1
    while i < len(lines) and lines[i].startswith("Attribute "):
        i += 1
    return "\r\n".join(lines[:i]) + ("\r\n" if i else ""), "\r\n".join(lines[i:])


def check_ascii(module_name: str, source: str, origin: str = "") -> None:
    """Refuse VBA source holding any non-ASCII character.

    The message names the module, the line, the column and the character.
    """
    for lineno, line in enumerate(crlf(source).split("\r\n"), start=1):
        for column, char in enumerate(line, start=1):
            if ord(char) > 0x7F:
                where = f"（{origin}）" if origin else ""
                raise VBASourceError(
                    f"VBA 模块“{module_name}”{where}第 {lineno} 行第 {column} 列有非 ASCII 字符"
                    f"“{char}”（U+{ord(char):04X}）：{line.strip()}\n"
                    "VBA 源码只能使用 ASCII 字符。中文请写在 Python 代码或功能区 XML 里，"
                    "需要在 VBA 中显示的中文由 Python 生成为 ChrW 编码。"
                )


def vba_unicode_literal(text: str) -> str:
    """An ASCII VBA expression that evaluates to ``text``.

    Each UTF-16 code unit becomes five decimal digits, decoded at run time by
    a ``U`` function the generated module defines (``ChrW(CLng(...))``).
    Long texts are split into several ``U("...")`` calls joined with ``&``;
    callers that need short lines use :func:`vba_assign_text`.
    """
    chunks = _code_unit_chunks(text)
    return " & ".join(f'U("{chunk}")' for chunk in chunks) if chunks else '""'


def decode_vba_unicode_digits(digits: str) -> str:
    """The inverse of the encoding used by :func:`vba_unicode_literal` (for tests and tools)."""
    if len(digits) % 5:
        raise ValueError(f"digit run length {len(digits)} is not a multiple of 5")
    units = [int(digits[i : i + 5]) for i in range(0, len(digits), 5)]
    return b"".join(unit.to_bytes(2, "little") for unit in units).decode("utf-16-le")


def _code_unit_chunks(text: str) -> list[str]:
    data = text.encode("utf-16-le")
    units = [int.from_bytes(data[i : i + 2], "little") for i in range(0, len(data), 2)]
    return [
        "".join(f"{unit:05d}" for unit in units[i : i + _CODE_UNITS_PER_CHUNK])
        for i in range(0, len(units), _CODE_UNITS_PER_CHUNK)
    ]


def vba_assign_text(variable: str, text: str, indent: str = "    ") -> list[str]:
    """Statements setting ``variable`` to ``text``, one ``U("...")`` chunk per line."""
    chunks = _code_unit_chunks(text)
    if not chunks:
        return [f'{indent}{variable} = ""']
    lines = [f'{indent}{variable} = U("{chunks[0]}")']
    lines += [f'{indent}{variable} = {variable} & U("{chunk}")' for chunk in chunks[1:]]
    return lines


# ---------------------------------------------------------------------------
# Hand-written modules (templates/vba)
# ---------------------------------------------------------------------------


def _is_document_name(name: str) -> bool:
    return name == WORKBOOK_CODE_NAME or (name.startswith("Sheet") and name[5:].isdigit())


def read_vba_file(path: Path) -> VBAModuleSource:
    """One ``.bas`` (standard module) or ``.cls`` (class, or the document module
    ``ThisWorkbook``/``SheetN``) file, checked to be ASCII and named as its file."""
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise VBASourceError(
            f"VBA 模块文件 {path.name} 第 {line} 行不是 UTF-8/ASCII 文本（第 {exc.start} 字节）。VBA 源码只能使用 ASCII 字符。"
        ) from None
    name = path.stem
    check_ascii(name, text, path.name)
    source = crlf(text)
    header, code = split_header(source)
    declared = [line for line in header.split("\r\n") if line.startswith("Attribute VB_Name")]
    if not declared or declared[0].split("=", 1)[1].strip().strip('"') != name:
        raise VBASourceError(f"VBA 模块文件 {path.name} 的 Attribute VB_Name 必须是 \"{name}\"（与文件名相同）。")
    if path.suffix.lower() == ".bas":
        return VBAModuleSource(name, "standard", source, path.name)
    if path.suffix.lower() == ".cls":
        if _is_document_name(name):
            return VBAModuleSource(name, "document", code, path.name)
        return VBAModuleSource(name, "class", source, path.name)
    raise VBASourceError(f"不认识的 VBA 模块文件类型：{path.name}（只用 .bas 和 .cls）。")


def template_modules(directory: Path = VBA_TEMPLATES_DIR) -> list[VBAModuleSource]:
    """The modules in ``templates/vba``, standard modules first, then classes and
    document modules, each group by name."""
    files = sorted(p for p in directory.iterdir() if p.is_file() and p.suffix.lower() in (".bas", ".cls"))
    others = [p for p in directory.iterdir() if p.is_file() and p.suffix.lower() in (".frm", ".frx")]
    if others:
        raise VBASourceError(f"{directory} 中有窗体文件 {others[0].name}：本工作簿不使用 UserForm。")
    modules = [read_vba_file(path) for path in files]
    order = {"standard": 0, "class": 1, "document": 2}
    return sorted(modules, key=lambda m: (order[m.kind], m.name))


# ---------------------------------------------------------------------------
# The whole project
# ---------------------------------------------------------------------------


def check_modules(modules: Sequence[VBAModuleSource]) -> list[VBAModuleSource]:
    """``modules`` as a list, each checked to be ASCII and no two named alike (VBA names ignore case)."""
    seen: dict[str, str] = {}
    for module in modules:
        key = module.name.casefold()
        if key in seen:
            raise VBASourceError(f"VBA 模块名“{module.name}”重复：{seen[key]} 和 {module.origin}。")
        seen[key] = module.origin
        check_ascii(module.name, module.source, module.origin)
    return list(modules)


def build_vba_project(xlsx_bytes: bytes, modules: Sequence[VBAModuleSource] | None = None) -> bytes:
    """``vbaProject.bin`` for the workbook ``xlsx_bytes`` (an openpyxl-written .xlsx).

    pyOpenVBA gives the workbook a new project as Excel makes one (a document
    module ``ThisWorkbook`` and ``Sheet1``..``SheetN`` in sheet order, with
    Excel's document headers) and writes ``modules`` (default: the hand-written
    :func:`template_modules`) into it. Same input, same bytes.
    """
    from pyopenvba import ExcelFile, VBAModuleKind

    modules = check_modules(template_modules() if modules is None else modules)
    with tempfile.TemporaryDirectory(prefix="xl_ecom_vba_") as tmp:
        source_path = Path(tmp) / "book.xlsm"
        target_path = Path(tmp) / "built.xlsm"
        source_path.write_bytes(xlsx_bytes)
        with ExcelFile(source_path) as book:
            if book.has_vba_project():
                raise VBASourceError("传入的工作簿已经有 VBA 工程；请传入 openpyxl 写出的、不含宏的工作簿。")
            project = book.add_vba_project()
            documents = {module.name for module in project.modules}
            for module in modules:
                if module.kind == "document":
                    if module.name not in documents:
                        raise VBASourceError(
                            f"文档模块“{module.name}”在这个工作簿里没有对应的工作簿或工作表"
                            f"（现有：{'、'.join(sorted(documents))}）。"
                        )
                    book.set_module(module.name, module.source)
                else:
                    kind = VBAModuleKind.standard if module.kind == "standard" else VBAModuleKind.other
                    project.add_module(module.name, module.source, kind=kind)
            if not any(reference.name == "Office" for reference in book.references()):
                # IRibbonControl, the type of every ribbon callback's argument, is in the Office library.
                book.add_reference("Office")
            book.save(target_path)
        with zipfile.ZipFile(target_path) as package:
            return strict_vba_project(package.read("xl/vbaProject.bin"))


#: ``_VBA_PROJECT`` as MS-OVBA 2.3.4.1 defines it for a writer that keeps no
#: compiled state: Reserved1 0x61CC, Version 0xFFFF ("the project has no
#: performance cache; recompile from source"), Reserved2 0x00, Reserved3 (any
#: u16, written 0), and no PerformanceCache.
VBA_PROJECT_STREAM = b"\xcc\x61\xff\xff\x00\x00\x00"


def strict_vba_project(vba_project_bin: bytes) -> bytes:
    """``vba_project_bin`` with no compiled state, as MS-OVBA lets a writer emit it.

    pyOpenVBA keeps the header of the ``_VBA_PROJECT`` stream it was given
    (version 0x00B5 and a zeroed cache) and the p-code template of the new
    project's document modules (``Sheet1``'s stream starts with 819 bytes of
    it). Here ``_VBA_PROJECT`` becomes :data:`VBA_PROJECT_STREAM` and every
    module stream is just its compressed source, at MODULEOFFSET 0.
    """
    from pyopenvba.cfb import CFB
    from pyopenvba.vba import compress, parse_vba_project, serialize_dir_stream, write_back_modules

    cfb = CFB.from_bytes(vba_project_bin)
    project = parse_vba_project(cfb)
    for module in project.modules:
        module.dirty = True
    write_back_modules(cfb, project)  # every stream = compressed source; offsets set to 0
    cfb.write_stream_in_storage("VBA", "dir", compress(serialize_dir_stream(project)))
    cfb.write_stream_in_storage("VBA", "_VBA_PROJECT", VBA_PROJECT_STREAM)
    return cfb.to_bytes()


def project_modules(vba_project_bin: bytes) -> dict[str, tuple[ModuleKind, str]]:
    """Name -> (kind, full source) of every module in a ``vbaProject.bin``, read with pyOpenVBA."""
    from pyopenvba.cfb import CFB
    from pyopenvba.vba import VBAModuleKind, parse_vba_project

    cfb = CFB.from_bytes(vba_project_bin)
    project = parse_vba_project(cfb)
    declared = cfb.get_stream("PROJECT").decode("latin-1")
    documents = {line.split("=", 1)[1].split("/", 1)[0] for line in declared.splitlines() if line.startswith("Document=")}
    result: dict[str, tuple[ModuleKind, str]] = {}
    for module in project.modules:
        if module.name in documents:
            kind: ModuleKind = "document"
        elif module.kind == VBAModuleKind.standard:
            kind = "standard"
        else:
            kind = "class"
        result[module.name] = (kind, module.source)
    return result
