"""The Excel add-in as xlwings makes it: what turns the city workbook into an xlwings workbook.

The build workflow (:mod:`xl_ecom.workflows.build`) writes the sheets and packages the macro
workbook; what only the front end knows comes from here, as :data:`XLWINGS_ADDIN` (an
:class:`xl_ecom.workflows.build.AddIn`):

- the VBA project's modules, in the order the project declares them:

  - the xlwings VBA runtime (modules ``xlwings`` and ``Dictionary``), read at build
    time from the installed xlwings package's ``quickstart_standalone.xlsm``, the
    workbook ``xlwings quickstart --standalone`` copies: no add-in is needed;
  - ``xlwings_udfs``: one wrapper per UDF of :data:`UDF_MODULE`, written by
    xlwings' own ``generate_vba_wrapper`` exactly as "Import Functions" writes it;
  - ``UdfDescriptions``: registers the Chinese Function Wizard descriptions with
    ``Application.MacroOptions`` (as Import Functions does), called from
    ``ThisWorkbook.Workbook_Open``;
  - the hand-written modules in ``templates/vba`` (``Ribbon.bas``, whose callbacks call
    xlwings' ``RunPython``, and the ``ThisWorkbook.cls`` document module);

- the rows of the 说明 sheet that list the worksheet functions (from :mod:`xl_ecom.frontends.udfs`);
- the ``xlwings.conf`` sheet, in xlwings' own format.

xlwings defines ``@xw.func``/``@xw.arg`` as no-ops off Windows, so the UDF
metadata (``__xlfunc__``) is obtained by importing the UDF module with xlwings'
own Windows decorators, taken from the installed ``xlwings/udfs.py`` (whose
top-level imports need pywin32 and cannot be imported here).

The VBA project format itself (writing, reading, the ASCII rule) is :mod:`xl_ecom.ooxml.vba`.
"""

from __future__ import annotations

import ast
import builtins
import contextlib
import datetime
import importlib.util
import inspect
import io
import symtable
import sys
import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from xl_ecom.ooxml.vba import (
    VBA_TEMPLATES_DIR,
    ModuleKind,
    VBAModuleSource,
    VBASourceError,
    check_ascii,
    check_modules,
    crlf,
    template_modules,
    vba_assign_text,
)
from xl_ecom.workflows.build import ConfigSheet

#: The Python module whose ``@xw.func`` functions become worksheet functions.
UDF_MODULE = "xl_ecom.frontends.udfs"
#: The generated modules' names.
UDF_WRAPPER_MODULE = "xlwings_udfs"  # the name xlwings' Import Functions gives it
UDF_DESCRIPTIONS_MODULE = "UdfDescriptions"
#: Public Sub of UdfDescriptions that ThisWorkbook.Workbook_Open calls.
REGISTER_DESCRIPTIONS_SUB = "RegisterUdfDescriptions"

#: Modules of quickstart_standalone.xlsm that make up the xlwings runtime. The
#: third non-document module there, Module1, is quickstart's sample macro.
XLWINGS_RUNTIME_MODULES = ("xlwings", "Dictionary")
XLWINGS_QUICKSTART_SAMPLE_MODULE = "Module1"
#: Name of the sheet xlwings reads its workbook settings from.
XLWINGS_CONF_SHEET = "xlwings.conf"

#: Longest Function Wizard text Excel takes (xlwings cuts at the same place).
_MACRO_OPTIONS_MAX = 255


@dataclass(frozen=True)
class UdfArgSpec:
    name: str
    description: str


@dataclass(frozen=True)
class UdfSpec:
    """What the Function Wizard shows for one UDF, from its ``__xlfunc__``."""

    name: str
    description: str
    category: str | int
    args: tuple[UdfArgSpec, ...]
    volatile: bool


# ---------------------------------------------------------------------------
# The xlwings runtime, as `xlwings quickstart --standalone` ships it
# ---------------------------------------------------------------------------


def xlwings_package_dir() -> Path:
    spec = importlib.util.find_spec("xlwings")
    if spec is None or not spec.submodule_search_locations:
        raise VBASourceError("没有安装 xlwings，无法取得 xlwings 的 VBA 运行模块。请先 pip install xlwings==0.37.8。")
    return Path(list(spec.submodule_search_locations)[0])


def xlwings_standalone_workbook() -> Path:
    """The workbook ``xlwings quickstart --standalone`` copies (see xlwings/cli.py ``quickstart``)."""
    path = xlwings_package_dir() / "quickstart_standalone.xlsm"
    if not path.is_file():
        raise VBASourceError(f"已安装的 xlwings 中没有 {path.name}（{path}），无法取得 xlwings 的 VBA 运行模块。")
    return path


def xlwings_runtime_modules() -> list[VBAModuleSource]:
    """The xlwings VBA runtime: the modules ``xlwings`` and ``Dictionary`` of the
    installed xlwings' ``quickstart_standalone.xlsm``, as that file holds them.

    ``xlwings quickstart --standalone`` copies that workbook unchanged, so its
    project is what a standalone xlwings workbook runs; the sample macro module
    (``Module1``) and the document modules are left out.
    """
    import xlwings
    from pyopenvba import ExcelFile, VBAModuleKind

    path = xlwings_standalone_workbook()
    with ExcelFile(path) as book:
        modules = {module.name: module for module in book.vba_project().modules}
    missing = [name for name in XLWINGS_RUNTIME_MODULES if name not in modules]
    if missing:
        raise VBASourceError(f"{path} 中缺少 xlwings 的 VBA 模块：{'、'.join(missing)}。")
    result = []
    origin = f"xlwings {xlwings.__version__} {path.name}"
    for name in XLWINGS_RUNTIME_MODULES:
        module = modules[name]
        kind: ModuleKind = "standard" if module.kind == VBAModuleKind.standard else "class"
        source = crlf(module.source)
        check_ascii(name, source, origin)
        result.append(VBAModuleSource(name, kind, source, origin))
    version_line = f"'Version: {xlwings.__version__}"
    if version_line not in result[0].source:
        raise VBASourceError(
            f"{path} 中的 xlwings VBA 模块版本与已安装的 xlwings {xlwings.__version__} 不一致（缺少 {version_line!r}）。"
        )
    return result


# ---------------------------------------------------------------------------
# xlwings' own UDF code (xlwings/udfs.py), without its Windows-only imports
# ---------------------------------------------------------------------------

#: Functions of xlwings/udfs.py used here: the decorators that record
#: ``__xlfunc__`` and the writer of the VBA wrappers, with their helpers.
_XLWINGS_UDF_FUNCTIONS = (
    "func_sig",
    "get_category",
    "get_async_mode",
    "check_bool",
    "extract_type_and_annotations",
    "xlfunc",
    "xlsub",
    "xlret",
    "xlarg",
    "generate_vba_wrapper",
)


def _global_names(table: symtable.SymbolTable) -> set[str]:
    names = {symbol.get_name() for symbol in table.get_symbols() if symbol.is_global() and symbol.is_referenced()}
    for child in table.get_children():
        names |= _global_names(child)
    return names


_XLWINGS_UDF_NAMESPACE: dict[str, Any] | None = None


def xlwings_udf_namespace() -> dict[str, Any]:
    """The functions :data:`_XLWINGS_UDF_FUNCTIONS` compiled from the installed
    ``xlwings/udfs.py`` (the file, not a copy), in a namespace that supplies the
    names they use. Refuses if xlwings changed so that they need anything else."""
    global _XLWINGS_UDF_NAMESPACE
    if _XLWINGS_UDF_NAMESPACE is not None:
        return _XLWINGS_UDF_NAMESPACE
    from xlwings.utils import VBAWriter

    path = xlwings_package_dir() / "udfs.py"
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    defs = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name in _XLWINGS_UDF_FUNCTIONS]
    found = {n.name for n in defs}
    nodes: list[ast.stmt] = list(defs)
    missing = [name for name in _XLWINGS_UDF_FUNCTIONS if name not in found]
    if missing:
        raise VBASourceError(f"已安装的 xlwings 的 udfs.py 中没有这些函数：{'、'.join(missing)}；请安装 xlwings==0.37.8。")
    module = ast.Module(body=nodes, type_ignores=[])
    namespace: dict[str, Any] = {
        "__name__": "xlwings.udfs",
        "inspect": inspect,
        "dt": datetime,
        "Annotated": typing.Annotated,
        "Any": typing.Any,
        "Callable": typing.Callable,
        "TypeVar": typing.TypeVar,
        "get_args": typing.get_args,
        "get_origin": typing.get_origin,
        "get_type_hints": typing.get_type_hints,
        "_F": typing.TypeVar("_F", bound=typing.Callable[..., typing.Any]),
        "VBAWriter": VBAWriter,
    }
    needed = _global_names(symtable.symtable(ast.unparse(module), str(path), "exec"))
    unknown = sorted(needed - set(namespace) - set(dir(builtins)) - found)
    if unknown:
        raise VBASourceError(
            f"已安装的 xlwings 的 udfs.py 用到了此处没有提供的名称：{'、'.join(unknown)}；请安装 xlwings==0.37.8。"
        )
    exec(compile(module, str(path), "exec"), namespace)  # noqa: S102 - xlwings' own installed code
    _XLWINGS_UDF_NAMESPACE = namespace
    return namespace


@contextlib.contextmanager
def _windows_decorators() -> Iterator[None]:
    """``xlwings.func``/``arg``/``ret``/``sub``/``script`` as xlwings binds them
    on Windows (xlwings/__init__.py), for the duration of the block."""
    import xlwings

    ns = xlwings_udf_namespace()
    bound = {"func": ns["xlfunc"], "arg": ns["xlarg"], "ret": ns["xlret"], "sub": ns["xlsub"], "script": ns["xlsub"]}
    saved = {name: getattr(xlwings, name) for name in bound if hasattr(xlwings, name)}
    try:
        for name, value in bound.items():
            setattr(xlwings, name, value)
        yield
    finally:
        for name in bound:
            if name in saved:
                setattr(xlwings, name, saved[name])
            else:
                delattr(xlwings, name)


def load_udf_module(module_name: str = UDF_MODULE) -> types.ModuleType:
    """A fresh copy of ``module_name`` imported with xlwings' Windows decorators,
    so each UDF carries the ``__xlfunc__`` metadata Import Functions reads.

    ``sys.modules`` is left as it was: code elsewhere keeps the module it imported.
    """
    spec = importlib.util.find_spec(module_name)
    if spec is None or spec.loader is None:
        raise VBASourceError(f"找不到 UDF 模块 {module_name}，无法生成 xlwings_udfs。")
    module = importlib.util.module_from_spec(spec)
    previous = sys.modules.get(module_name, None)
    had_previous = module_name in sys.modules
    sys.modules[module_name] = module
    try:
        with _windows_decorators():
            spec.loader.exec_module(module)
    finally:
        if had_previous:
            sys.modules[module_name] = previous  # type: ignore[assignment]
        else:
            sys.modules.pop(module_name, None)
    return module


def _xlfuncs(module: types.ModuleType) -> list[dict[str, Any]]:
    """The ``__xlfunc__`` records in the order ``generate_vba_wrapper`` visits them."""
    return [getattr(module, attr).__xlfunc__ for attr in dir(module) if hasattr(getattr(module, attr), "__xlfunc__")]


def _as_module(module: str | types.ModuleType) -> tuple[str, types.ModuleType]:
    if isinstance(module, str):
        return module, load_udf_module(module)
    return module.__name__, module


def generate_udf_wrappers(module: str | types.ModuleType = UDF_MODULE, workbook_name: str = "目标任务分解表.xlsm") -> str:
    """The ``xlwings_udfs`` module for the UDFs of ``module``, as Import Functions writes it.

    The header lines are those of xlwings' ``import_udfs``; each wrapper is
    written by xlwings' ``generate_vba_wrapper`` itself. ``module`` is a module
    name (imported with :func:`load_udf_module`) or a module already loaded that
    way. Returns CRLF text.
    """
    module_name, loaded = _as_module(module)
    if not _xlfuncs(loaded):
        raise VBASourceError(f"UDF 模块 {module_name} 中没有 @xw.func 标注的函数，无法生成 xlwings_udfs。")
    ns = xlwings_udf_namespace()
    out = io.StringIO()
    vba = ns["VBAWriter"](out)
    # These three lines are written by xlwings.udfs.import_udfs before the wrappers.
    vba.writeln(f'Attribute VB_Name = "{UDF_WRAPPER_MODULE}"')
    vba.writeln("'Autogenerated code by xlwings - changes will be lost with next import!")
    vba.writeln("""#Const App = "Microsoft Excel" 'Adjust when using outside of Excel""")
    ns["generate_vba_wrapper"](module_name, loaded, out, types.SimpleNamespace(Name=workbook_name))
    source = crlf(out.getvalue())
    check_ascii(UDF_WRAPPER_MODULE, source, f"由 {module_name} 生成")
    return source


def udf_specs(module: str | types.ModuleType = UDF_MODULE) -> list[UdfSpec]:
    """Name, description, category and argument descriptions of every UDF.

    The texts are those xlwings' Import Functions passes to
    ``Application.MacroOptions``: the function's docstring (dedented) and each
    argument's ``doc``, cut at 255 characters; arguments with a ``vba``
    expression (and ``caller``) are not shown, as xlwings does. A UDF without a
    docstring, or an argument without a ``doc``, is refused: the Function Wizard
    would show xlwings' English placeholder (with a path of the build machine).
    """
    module_name, loaded = _as_module(module)
    specs = []
    problems = []
    for xlfunc in _xlfuncs(loaded):
        name = xlfunc["name"]
        function = getattr(loaded, name, None)
        doc = inspect.getdoc(function) if function is not None else None
        if not doc:
            problems.append(f"函数 {name} 没有说明文字（docstring）")
            doc = ""
        args = []
        for position, arg in enumerate(xlfunc["args"], start=1):
            if arg["vba"] or arg["name"] == "caller":
                continue
            if arg["doc"] == f"Positional argument {position}":
                problems.append(f"函数 {name} 的参数 {arg['name']} 没有说明（@xw.arg(..., doc=...)）")
            args.append(UdfArgSpec(arg["name"], str(arg["doc"])[:_MACRO_OPTIONS_MAX]))
        specs.append(
            UdfSpec(
                name=name,
                description=doc[:_MACRO_OPTIONS_MAX],
                category=xlfunc["category"],
                args=tuple(args),
                volatile=bool(xlfunc["volatile"]),
            )
        )
    if not specs:
        raise VBASourceError(f"UDF 模块 {module_name} 中没有 @xw.func 标注的函数。")
    if problems:
        raise VBASourceError(f"UDF 模块 {module_name} 的函数向导说明不完整：" + "；".join(problems) + "。")
    return specs


def generate_udf_descriptions(module: str | types.ModuleType = UDF_MODULE) -> str:
    """The ``UdfDescriptions`` module: ``RegisterUdfDescriptions`` calls
    ``Application.MacroOptions`` for each UDF with the texts of :func:`udf_specs`,
    the calls xlwings' Import Functions makes, so the Function Wizard shows the
    Chinese descriptions without anyone importing anything.

    The texts are ASCII digit runs decoded by ``ChrW`` (VBA source must be
    ASCII). The workbook's ``Saved`` flag is kept as it was: registering is not
    an edit the clerk has to save. Returns CRLF text.
    """
    module_name, _ = _as_module(module)
    specs = udf_specs(module)
    lines = [
        f'Attribute VB_Name = "{UDF_DESCRIPTIONS_MODULE}"',
        f"'Generated by xl_ecom.ooxml.vba from the @xw.func / @xw.arg docs of {module_name} - do not edit.",
        "'Registers the Function Wizard descriptions with Application.MacroOptions, the",
        "'calls xlwings' Import Functions makes; ThisWorkbook.Workbook_Open runs it.",
        "'VBA source is ASCII, so each text is a run of 5-digit UTF-16 code units read by U().",
        "Option Explicit",
        "",
        "Private Function U(ByVal codes As String) As String",
        "    Dim i As Long",
        "    For i = 1 To Len(codes) Step 5",
        "        U = U & ChrW(CLng(Mid$(codes, i, 5)))",
        "    Next i",
        "End Function",
        "",
        "Private Sub Describe(ByVal fname As String, ByVal fdoc As String, ByVal fcategory As Variant, ByVal argdocs As Variant)",
        "    Dim macroName As String",
        "    macroName = \"'\" & Replace(ThisWorkbook.Name, \"'\", \"''\") & \"'!\" & fname",
        "    On Error Resume Next",
        "    If Val(Application.Version) >= 14 Then",
        "        If UBound(argdocs) >= LBound(argdocs) Then",
        "            Application.MacroOptions Macro:=macroName, Description:=fdoc, Category:=fcategory, _",
        "                ArgumentDescriptions:=argdocs",
        "        Else",
        "            Application.MacroOptions Macro:=macroName, Description:=fdoc, Category:=fcategory",
        "        End If",
        "    Else",
        "        Application.MacroOptions Macro:=macroName, Description:=fdoc",
        "    End If",
        "    On Error GoTo 0",
        "End Sub",
        "",
        f"Public Sub {REGISTER_DESCRIPTIONS_SUB}()",
        "    Dim wasSaved As Boolean",
        "    wasSaved = ThisWorkbook.Saved",
    ]
    lines += [f"    Describe_{spec.name}" for spec in specs]
    lines += ["    ThisWorkbook.Saved = wasSaved", "End Sub", ""]
    for spec in specs:
        lines += [
            f"Private Sub Describe_{spec.name}()",
            "    Dim fdoc As String",
            "    Dim fcategory As Variant",
            "    Dim argdocs As Variant",
        ]
        lines += vba_assign_text("fdoc", spec.description)
        if isinstance(spec.category, int):
            lines.append(f"    fcategory = {spec.category}")
        else:
            lines += vba_assign_text("fcategory", spec.category)
        if spec.args:
            lines.append(f"    ReDim argdocs(0 To {len(spec.args) - 1})")
            for index, arg in enumerate(spec.args):
                lines += vba_assign_text(f"argdocs({index})", arg.description)
        else:
            lines.append("    argdocs = Array()")
        lines += [f'    Describe "{spec.name}", fdoc, fcategory, argdocs', "End Sub", ""]
    source = crlf("\n".join(lines))
    check_ascii(UDF_DESCRIPTIONS_MODULE, source, f"由 {module_name} 生成")
    too_long = [n for n, line in enumerate(source.split("\r\n"), 1) if len(line) > 1023]
    if too_long:  # pragma: no cover - chunking keeps lines short
        raise VBASourceError(f"生成的 {UDF_DESCRIPTIONS_MODULE} 第 {too_long[0]} 行超过 VBA 的 1023 字符上限。")
    return source



# ---------------------------------------------------------------------------
# The whole project
# ---------------------------------------------------------------------------


def vba_modules(udf_module: str = UDF_MODULE, templates: Path = VBA_TEMPLATES_DIR) -> list[VBAModuleSource]:
    """Every module the workbook's project holds besides the empty sheet modules,
    in the order they are declared: the xlwings runtime, ``xlwings_udfs``,
    ``UdfDescriptions``, then ``templates/vba``. All are checked to be ASCII."""
    loaded = load_udf_module(udf_module)
    generated = [
        VBAModuleSource(UDF_WRAPPER_MODULE, "standard", generate_udf_wrappers(loaded), f"由 {udf_module} 生成"),
        VBAModuleSource(UDF_DESCRIPTIONS_MODULE, "standard", generate_udf_descriptions(loaded), f"由 {udf_module} 生成"),
    ]
    return check_modules([*xlwings_runtime_modules(), *generated, *template_modules(templates)])


# ---------------------------------------------------------------------------
# xlwings.conf sheet
# ---------------------------------------------------------------------------
def xlwings_conf_rows(
    *,
    interpreter_win: str | None = None,
    interpreter_mac: str | None = None,
    pythonpath: str | None = None,
    udf_modules: str = UDF_MODULE,
    use_udf_server: bool | None = None,
    show_console: bool | None = None,
) -> list[tuple[str, str | bool | None]]:
    """The key/value rows of the ``xlwings.conf`` sheet, starting at A1.

    Keys, order and defaults are those of the ``_xlwings.conf`` sheet in the
    installed xlwings' ``quickstart_standalone.xlsm`` (xlwings reads column A
    from A1 down to the first empty cell, and the value beside each key);
    ``UDF Modules`` is :data:`UDF_MODULE`. A keyword given replaces the default;
    ``None`` (the default) keeps xlwings' value. A value of ``None`` in the
    result is an empty cell.
    """
    import openpyxl

    path = xlwings_standalone_workbook()
    book = openpyxl.load_workbook(path, read_only=True)
    try:
        sheet = book["_" + XLWINGS_CONF_SHEET]
        rows: list[tuple[str, str | bool | None]] = []
        for key, value, *_ in sheet.iter_rows(min_row=1, max_col=2, values_only=True):
            if key is None or str(key).strip() == "":
                break
            rows.append((str(key), value))
    finally:
        book.close()
    overrides: dict[str, str | bool | None] = {"udf modules": udf_modules}
    for key, value in (
        ("interpreter_win", interpreter_win),
        ("interpreter_mac", interpreter_mac),
        ("pythonpath", pythonpath),
        ("use udf server", use_udf_server),
        ("show console", show_console),
    ):
        if value is not None:
            overrides[key] = value
    keys = {key.lower() for key, _ in rows}
    unknown = sorted(set(overrides) - keys)
    if unknown:
        raise VBASourceError(f"xlwings {XLWINGS_CONF_SHEET} 模板中没有这些设置项：{'、'.join(unknown)}。")
    return [(key, overrides.get(key.lower(), value)) for key, value in rows]


# ---------------------------------------------------------------------------
# The add-in the build workflow takes
# ---------------------------------------------------------------------------

#: Column D of the xlwings.conf sheet (xlwings reads only A and B).
XLWINGS_CONF_NOTES = {
    "interpreter_win": "pythonw.exe 的完整路径，由 xl-ecom setup-excel 填写，请勿手工修改",
    "interpreter_mac": "Mac 上 Python 的路径（一般不用）",
    "pythonpath": "留空（xl-ecom 已安装时不需要）；需要时由 xl-ecom setup-excel 填写",
    "udf modules": "工作表函数所在的 Python 模块，请勿修改",
}


def function_rows() -> list[tuple[str, str]]:
    """The 说明 sheet's rows for the worksheet functions: ``名称(参数…)`` and description with the
    arguments, from :data:`xl_ecom.frontends.udfs.UDF_SPECS`."""
    from xl_ecom.frontends.udfs import UDF_SPECS

    rows = []
    for name, spec in UDF_SPECS.items():
        args = "，".join(a.name + ("（可选）" if a.optional else "") + ("…" if a.vararg else "") for a in spec.args)
        params = "；".join(f"{a.name}：{a.doc}" for a in spec.args)
        rows.append((f"{name}({args})", f"{spec.description}\n参数 {params}"))
    return rows


@dataclass(frozen=True)
class XlwingsAddIn:
    """:class:`xl_ecom.workflows.build.AddIn` for xlwings: the UDFs of ``udf_module``, the VBA of
    ``templates``, the ``xlwings.conf`` sheet."""

    udf_module: str = UDF_MODULE
    templates: Path = VBA_TEMPLATES_DIR
    name: str = "xlwings"

    def functions(self) -> list[tuple[str, str]]:
        return function_rows()

    def vba_modules(self) -> list[VBAModuleSource]:
        return vba_modules(self.udf_module, self.templates)

    def config_sheet(self) -> ConfigSheet:
        return ConfigSheet(
            name=XLWINGS_CONF_SHEET,
            description="xlwings 的设置（Python 解释器路径、PYTHONPATH、函数模块），格式由 xlwings 规定，请勿改动 A 列。",
            rows=tuple(xlwings_conf_rows(udf_modules=self.udf_module)),
            notes=XLWINGS_CONF_NOTES,
            fixed=("udf modules",),  # where the worksheet functions live is the build's, not the clerk's
        )


#: The add-in the front ends pass to the build (and the ``xl_ecom.addins`` entry point names).
XLWINGS_ADDIN = XlwingsAddIn()
