"""`xl-ecom setup-excel [工作簿]`: point the workbook's xlwings.conf sheet at this computer's Python.

xlwings starts Python with the ``Interpreter_Win`` value of the workbook's ``xlwings.conf`` sheet and
adds ``PYTHONPATH`` to its search path.  This command writes both from the interpreter running it:
on Windows ``pythonw.exe`` beside ``sys.executable`` (no console window), elsewhere the detected path
itself (a workbook prepared on Linux for testing); ``PYTHONPATH`` stays empty when xl-ecom is
installed (pip / the offline bundle), else it is the source checkout that holds the package.

On Windows it also checks pywin32 (xlwings talks to Excel through it) and Excel's bitness (from the
registry).  The sheet is edited through the OOXML layer (:class:`xl_ecom.ooxml.package.Package`),
so every other part — the VBA project, the ribbon — is written back byte for byte.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import struct
import sys
from dataclasses import dataclass, field
from pathlib import Path

from lxml import etree

from xl_ecom.common.errors import XlEcomError
from xl_ecom.ooxml import safeio, xml
from xl_ecom.ooxml.namespaces import MAIN, q
from xl_ecom.ooxml.package import Package
from xl_ecom.ooxml.worksheet import col_letter, split_ref

CONF_SHEET = "xlwings.conf"
INTERPRETER_KEY = "Interpreter_Win"
PYTHONPATH_KEY = "PYTHONPATH"
DISTRIBUTION = "xl-ecom"

_C, _V, _F, _IS, _T, _ROW = (q(MAIN, n) for n in ("c", "v", "f", "is", "t", "row"))


class SetupError(XlEcomError):
    """The workbook cannot be set up (the message is Chinese)."""


@dataclass
class Setup:
    """What setup-excel found and will write."""

    windows: bool
    interpreter: str
    pythonpath: str | None  # None: not needed (xl-ecom is installed)
    notes: list[str] = field(default_factory=list)  # what was decided, for the user
    problems: list[str] = field(default_factory=list)  # what the user must fix (exit code 1)


def installed() -> bool:
    """Whether xl-ecom is installed in this interpreter (pip install, editable or the offline bundle)."""
    try:
        importlib.metadata.distribution(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def source_root() -> Path:
    """The folder that holds the ``xl_ecom`` package (what PYTHONPATH needs when not installed)."""
    return Path(__file__).resolve().parents[2]


def excel_bitness() -> int | None:
    """Excel's bitness (32 or 64) from the Windows registry; None when Excel is not found or not on Windows."""
    if sys.platform != "win32":
        return None
    import winreg  # Windows only

    def value(root, key, name, view=0):
        try:
            with winreg.OpenKey(root, key, 0, winreg.KEY_READ | view) as k:
                return winreg.QueryValueEx(k, name)[0]
        except OSError:
            return None

    hklm = winreg.HKEY_LOCAL_MACHINE
    views = (winreg.KEY_WOW64_64KEY, winreg.KEY_WOW64_32KEY)
    for view in views:  # Microsoft 365 / Click-to-Run
        platform = value(hklm, r"SOFTWARE\Microsoft\Office\ClickToRun\Configuration", "Platform", view)
        if platform:
            return 64 if str(platform).lower() == "x64" else 32
    for version in ("16.0", "15.0", "14.0"):  # MSI installs record the bitness under Outlook
        for view in views:
            bitness = value(hklm, rf"SOFTWARE\Microsoft\Office\{version}\Outlook", "Bitness", view)
            if bitness:
                return 64 if str(bitness).lower() == "x64" else 32
    for view in views:
        path = value(hklm, r"SOFTWARE\Microsoft\Windows\CurrentVersion\App Paths\excel.exe", "", view)
        if path:
            return 32 if "(x86)" in str(path) else 64
    return None


def detect(interpreter: str | None = None, pythonpath: str | None = None, *, platform: str | None = None) -> Setup:
    """Decide what to write for this computer (``interpreter`` / ``pythonpath`` override the detection)."""
    windows = (platform or sys.platform) == "win32"
    notes: list[str] = []
    problems: list[str] = []
    if interpreter:
        chosen = interpreter
        notes.append(f"解释器：按 --interpreter 写入 {chosen}")
    else:
        exe = Path(sys.executable)
        if windows:
            pythonw = exe.with_name("pythonw.exe")
            if pythonw.is_file():
                chosen = str(pythonw)
                notes.append(f"解释器：{chosen}（python.exe 旁的 pythonw.exe，运行时不弹出黑色窗口）")
            else:
                chosen = str(exe)
                problems.append(f"在 {exe.parent} 中没有找到 pythonw.exe，暂写入 {exe}（运行时会弹出黑色窗口）；请重新安装 Python")
        else:
            chosen = str(exe)
            notes.append(
                f"本机不是 Windows：在 Windows 上会写入 python.exe 旁的 pythonw.exe（如 C:\\xl-ecom\\.venv\\Scripts\\pythonw.exe）；"
                f"现写入检测到的解释器 {chosen}"
            )
    if pythonpath:
        path_value: str | None = pythonpath
        notes.append(f"PYTHONPATH：按 --pythonpath 写入 {pythonpath}")
    elif installed():
        path_value = None
        notes.append("PYTHONPATH：不需要（xl-ecom 已安装在这个 Python 中），留空")
    else:
        path_value = str(source_root())
        notes.append(f"PYTHONPATH：{path_value}（xl-ecom 未安装，从源代码文件夹运行）")
    if windows:
        if importlib.util.find_spec("win32com") is None:
            problems.append(f'缺少 pywin32（xlwings 通过它与 Excel 通信）：请执行 "{sys.executable}" -m pip install pywin32')
        else:
            notes.append("pywin32：已安装")
        python_bits = struct.calcsize("P") * 8
        excel_bits = excel_bitness()
        if excel_bits is None:
            problems.append("没有在注册表中找到 Excel：请确认本机已安装 Microsoft Excel（2013 或更新版本）")
        else:
            notes.append(f"Excel：{excel_bits} 位；Python：{python_bits} 位"
                         + ("" if excel_bits == python_bits else "（位数不同也可以使用；离线安装包只支持 64 位 Python）"))
    return Setup(windows=windows, interpreter=chosen, pythonpath=path_value, notes=notes, problems=problems)


def _set_texts(data: bytes, values: dict[tuple[int, int], str | None]) -> bytes:
    """Text (inline strings) into cells {(row, col): text}, keeping each cell's style; None empties the
    cell.  The rows must exist (the keys sit in column A)."""
    root = xml.parse(data, CONF_SHEET)
    rows = {int(r.get("r")): r for r in root.iter(_ROW) if r.get("r")}
    for (r, c), text in sorted(values.items()):
        row = rows.get(r)
        if row is None:
            raise SetupError(f"“{CONF_SHEET}”表第{r}行不存在，表格结构被改动")
        ref = f"{col_letter(c)}{r}"
        cell = next((o for o in row.iter(_C) if o.get("r") == ref), None)
        if cell is None:
            cell = etree.Element(_C, r=ref)
            later = [o for o in row.iter(_C) if o.get("r") and split_ref(o.get("r"))[1] > c]
            if later:
                later[0].addprevious(cell)
            else:
                row.append(cell)
        style = cell.get("s")
        cell.attrib.clear()
        for child in list(cell):
            cell.remove(child)
        cell.set("r", ref)
        if style is not None:
            cell.set("s", style)
        if text:
            cell.set("t", "inlineStr")
            t = etree.SubElement(etree.SubElement(cell, _IS), _T)
            t.text = text
            if text != text.strip():
                t.set("{http://www.w3.org/XML/1998/namespace}space", "preserve")
    return xml.to_bytes(root, data)


def configure(workbook, setup: Setup, *, write: bool = True, backup: bool = True) -> tuple[dict[str, str | None], Path | None]:
    """Write ``setup`` into the workbook's xlwings.conf sheet.  Returns ({key: value written}, backup path)."""
    path = Path(workbook)
    if not path.is_file():
        raise SetupError(f"找不到工作簿“{path}”")
    if not write:
        return _configure(path, setup, write=False, backup=backup)
    # the ledger (SQLAlchemy) is imported only when writing
    from xl_ecom.ledger.lock import workbook_lock

    with workbook_lock(path, "设置 Excel"):  # no other command rewrites it meanwhile
        return _configure(path, setup, write=True, backup=backup)


def _configure(path: Path, setup: Setup, *, write: bool, backup: bool) -> tuple[dict[str, str | None], Path | None]:
    pkg = Package(path.read_bytes(), path.name)
    if CONF_SHEET not in pkg.sheet_names:
        raise SetupError(f"工作簿“{path.name}”中没有“{CONF_SHEET}”表；请使用 xl-ecom build 生成的工作簿")
    wanted = {INTERPRETER_KEY.lower(): setup.interpreter, PYTHONPATH_KEY.lower(): setup.pythonpath}
    found: dict[str, int] = {}
    for r, row in enumerate(pkg.rows(CONF_SHEET, 1, 2), start=1):
        key = row[0] if row else None
        if key is None or str(key).strip() == "":
            break  # xlwings reads column A down to the first empty cell
        if str(key).strip().lower() in wanted:
            found[str(key).strip().lower()] = r
    missing = [k for k in (INTERPRETER_KEY, PYTHONPATH_KEY) if k.lower() not in found]
    if missing:
        raise SetupError(f"“{CONF_SHEET}”表的 A 列中没有 {'、'.join(missing)}；请使用 xl-ecom build 生成的工作簿")
    written = {INTERPRETER_KEY: setup.interpreter, PYTHONPATH_KEY: setup.pythonpath}
    if not write:
        return written, None
    part = pkg.sheet_part(CONF_SHEET)
    pkg.parts[part] = _set_texts(pkg.parts[part], {(found[k], 2): v for k, v in wanted.items()})
    saved = safeio.write_atomically(path, pkg.to_bytes(), backup=backup)
    return written, saved


NEXT_STEPS = (
    "下一步：",
    "  1. 打开工作簿，选择“启用内容（启用宏）”（邮件收到的文件先在“属性”中勾选“解除锁定”）。",
    "  2. 在任一空白单元格输入 =AWARD_LIVESTREAM(800000)，应显示 50000；“奖补测算”表“一致”列应全部为“是”。",
    "  3. 功能区“农村电商”选项卡的按钮即可使用；Python 换了位置或重装后，再运行一次 xl-ecom setup-excel。",
    "  4. 发送邮件需要 SMTP 密码：setx XL_ECOM_SMTP_PASSWORD 密码，或 python -m keyring set xl-ecom SMTP用户名。",
)


def cmd_setup_excel(args) -> int:
    from xl_ecom.frontends.cli import (
        DONE,
        DONE_WITH_PROBLEMS,
        WORKBOOK_NAME,
        default_workbook,
    )

    workbook = Path(args.workbook) if args.workbook else default_workbook()
    if workbook is None:
        raise SetupError(f"没有指定工作簿，当前文件夹下也没有 workbook\\{WORKBOOK_NAME}；请写出工作簿路径")
    setup = detect(args.interpreter, args.pythonpath)
    written, saved = configure(workbook, setup, write=not args.dry_run, backup=not args.no_backup)
    print(f"工作簿：{workbook}")
    for note in setup.notes:
        print(f"  {note}")
    verb = "将写入" if args.dry_run else "已写入"
    for key, value in written.items():
        print(f"  {verb}“{CONF_SHEET}”表 {key} = {value if value else '（空白）'}")
    if saved:
        print(f"  原文件已备份为：{saved}")
    if args.dry_run:
        print("  （--dry-run：未改动工作簿）")
    for problem in setup.problems:
        print(f"  问题：{problem}")
    for line in NEXT_STEPS:
        print(line)
    return DONE_WITH_PROBLEMS if setup.problems else DONE


def add_cli(subparsers) -> None:
    p = subparsers.add_parser(
        "setup-excel",
        help="设置工作簿的 xlwings.conf 表：写入本机 Python 的路径，检查 pywin32 和 Excel",
        description="把运行本命令的 Python（Windows 上为 python.exe 旁的 pythonw.exe）写入工作簿“xlwings.conf”表的 "
        "Interpreter_Win；xl-ecom 已安装时 PYTHONPATH 留空，否则写入源代码文件夹。在 Windows 上还检查 pywin32 和 "
        "Excel 的位数，最后列出下一步。请先关闭该工作簿。",
    )
    p.add_argument("workbook", metavar="工作簿", nargs="?",
                   help="市级工作簿（默认当前文件夹下的 workbook\\目标任务分解表.xlsm）")
    p.add_argument("--interpreter", metavar="路径", help="写入这个解释器路径，而不是本机检测到的（为另一台电脑准备工作簿时用）")
    p.add_argument("--pythonpath", metavar="文件夹", help="写入这个 PYTHONPATH（默认：已安装时留空）")
    p.add_argument("--dry-run", action="store_true", help="只显示将写入的内容，不改动工作簿")
    p.add_argument("--no-backup", action="store_true", help="不保留备份文件")
    p.set_defaults(func=cmd_setup_excel)
