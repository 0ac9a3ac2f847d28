"""Build workbook/目标任务分解表.xlsm from the plan data and templates/.

Sheets, in order: 说明, 目标任务分解表, 任务清单, 奖补测算, the input tables of
:data:`xl_ecom.workflows.tables.TABLES`, 通讯录, 设置, and the add-in's own sheet (xlwings.conf).  The sheet
content is written with openpyxl (official A4-landscape styling from :mod:`xl_ecom.workflows.sheets`); the
VBA project, the ribbon and the deterministic packaging come from :func:`xl_ecom.ooxml.xlsm.build_xlsm`.

What makes the workbook run in Excel — the VBA modules, the worksheet functions the 说明 sheet lists, the
add-in's settings sheet — is the front end's: the caller passes an :class:`AddIn` (the front ends pass
:data:`xl_ecom.frontends.addin.XLWINGS_ADDIN`).  Called without one, the build takes the add-in the
installed package declares under the ``xl_ecom.addins`` entry point (pyproject.toml), so this layer never
imports a front end.  :class:`KeptData` carries a clerk's data into a rebuild (see
:mod:`xl_ecom.workflows.upgrade`).  Every number and
formula comes from plan.yaml through the engine's resolution and :mod:`xl_ecom.rules.formulas`; nothing
here restates a rate, cap or threshold.

Two builds give the same bytes (times in docProps/core.xml are pinned by the assembler; the
policy date of the compiled formulas is the 设置 default, not the clock).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from defusedxml import ElementTree as SafeET
from openpyxl import Workbook
from openpyxl.formatting.rule import CellIsRule
from openpyxl.styles import Alignment, Font, PatternFill
from openpyxl.utils import get_column_letter
from openpyxl.worksheet.datavalidation import DataValidation
from openpyxl.worksheet.pagebreak import Break

from xl_ecom.common import resources
from xl_ecom.common.errors import XlEcomError
from xl_ecom.policy import Plan, load_plan
from xl_ecom.policy.boundaries import APPROXIMATE_WORDS, boundary
from xl_ecom.rules import formulas
from xl_ecom.rules.engine import calculate_cents, calculate_sequence, get_rule, percent, resolve
from xl_ecom.rules.model import Body, Condition, Factor, Fixed, PerUnit, Rate, Tiers
from xl_ecom.workflows import layout, settings, sheets
from xl_ecom.workflows.tables import TABLES

if TYPE_CHECKING:
    from xl_ecom.ooxml.vba import VBAModuleSource

TEMPLATES_DIR = resources.TEMPLATES_DIR
SHEET_TEMPLATES_DIR = TEMPLATES_DIR / "sheets"
README_TEMPLATE = SHEET_TEMPLATES_DIR / "说明.txt"
DEFAULT_OUT = Path("workbook") / layout.WORKBOOK_NAME

#: The policy date the workbook's native formulas are compiled for: the 设置 default.
POLICY_DATE: dt.date = settings.SETTINGS_DEFAULTS["政策日期"]

#: Cell fill of the cells the 刷新 button fills (完成数).
INPUT_FILL = PatternFill("solid", fgColor="FFF2CC")
FLAG_BAD_FONT = Font(name="仿宋", size=11, bold=True, color="C00000")
FLAG_OK_FONT = Font(name="仿宋", size=11, color="006100")
SECTION_FONT = Font(name="宋体", size=12, bold=True)


class BuildError(XlEcomError, ValueError):
    """The workbook cannot be built (the message is Chinese)."""


# ---------------------------------------------------------------------------
# What the caller brings: the add-in, and data kept from an earlier workbook
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ConfigSheet:
    """A settings sheet the add-in reads itself (xlwings.conf): keys in column A from A1 down,
    values in column B, a note in column D for the keys of ``notes`` (matched in lower case)."""

    name: str
    description: str  # its row on the 说明 sheet
    rows: Sequence[tuple[str, Any]]
    notes: Mapping[str, str] = field(default_factory=dict)
    fixed: Sequence[str] = ()  # keys (lower case) a rebuild always resets to ``rows``' value


class AddIn(Protocol):
    """What only the front end knows: how the workbook runs in Excel."""

    @property
    def name(self) -> str:
        """The add-in's name, as the 说明 sheet and the build report give it."""
        ...

    def functions(self) -> Sequence[tuple[str, str]]:
        """The 说明 sheet's rows for the worksheet functions: (signature, description)."""
        ...

    def vba_modules(self) -> Sequence[VBAModuleSource]:
        """Every module of the VBA project, in declaration order (ASCII, see xl_ecom.ooxml.vba)."""
        ...

    def config_sheet(self) -> ConfigSheet | None:
        """The add-in's own settings sheet, written last; None for none."""
        ...


#: Entry point group under which the installed package names its add-in (pyproject.toml).
ADDIN_ENTRY_POINTS = "xl_ecom.addins"


def installed_addin() -> AddIn:
    """The add-in the installed package declares (entry point group :data:`ADDIN_ENTRY_POINTS`)."""
    from importlib.metadata import entry_points

    found = sorted(entry_points(group=ADDIN_ENTRY_POINTS), key=lambda e: e.name)
    if not found:
        raise BuildError(
            f"没有找到工作簿的加载项（入口点组 {ADDIN_ENTRY_POINTS} 为空）：请在项目目录重新执行 pip install -e .，"
            "或由调用方传入加载项。"
        )
    if len(found) > 1:
        raise BuildError(f"安装了多个工作簿加载项（{'、'.join(e.name for e in found)}），请由调用方指定用哪一个。")
    try:
        return found[0].load()
    except (ImportError, AttributeError) as exc:
        raise BuildError(f"无法载入工作簿加载项“{found[0].name}”（{found[0].value}）：{exc}") from None


def _addin(addin: AddIn | None) -> AddIn:
    return installed_addin() if addin is None else addin


@dataclass
class KeptData:
    """A clerk's data read from an existing city workbook, written into the rebuilt one.

    ``contacts``: 通讯录 rows by header; ``settings``: 设置 项目 → 值 in the sheet's order;
    ``table_rows``: input table key → rows keyed by column key; ``annex_done``: (县区, annex column
    key) → 完成数; ``extra_sheets``: other sheets (发送记录 and any the clerk added), name → rows of
    values from A1.  A text value that looks like a formula is a :class:`KeptText`, written as text."""

    contacts: list[dict[str, Any]] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)
    table_rows: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    annex_done: dict[tuple[str, str], Any] = field(default_factory=dict)
    extra_sheets: dict[str, list[list[Any]]] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)  # the add-in's sheet: key (lower case) → value


class KeptText(str):
    """Text that was text in the old workbook although it starts like a formula (=, +, -, @)."""


def _put(cell, value) -> None:
    cell.value = value
    if isinstance(value, KeptText):
        cell.data_type = "s"


# ---------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------


def _text_lines(text: str, width_chars: float) -> int:
    """Printed lines a wrapped cell needs: CJK characters count double."""
    if not text:
        return 1
    total = 0
    for part in str(text).split("\n"):
        units = sum(2 if ord(ch) > 0x2E80 else 1 for ch in part)
        total += max(1, math.ceil(units / max(width_chars * 0.95, 1)))
    return total


def _fit_row(ws, row: int, texts_widths: Sequence[tuple[str, float]], line_height: float = 15.0, minimum: float = 20.0) -> None:
    lines = max((_text_lines(t, w) for t, w in texts_widths), default=1)
    ws.row_dimensions[row].height = max(minimum, lines * line_height + 6)


def _page_capacity(widths: Sequence[float], repeated: float = 0.0, margin: float = 1.0) -> float:
    """Sheet points of rows that fit on one A4 landscape page when a sheet of ``widths``
    (character units) is fitted to one page wide (the layout of sheets.page_setup)."""
    printable_w = (11.69 - 1.0) * 72
    printable_h = (8.27 - 1.5) * 72
    sheet_w = sum(w * 7 + 5 for w in widths) * 0.75
    scale = min(1.0, printable_w / sheet_w)
    return printable_h / scale * margin - repeated


def _date_text(value) -> str:
    return settings.format_date(value) if value else ""


def _store_text(cell, text: str) -> None:
    """Write ``text`` as a string even when it starts with '=' (openpyxl would take a formula)."""
    cell.value = text
    cell.data_type = "s"


def _yuan(value) -> str:
    """1000000 → '100万元', 500000 → '50万元', 12345.6 → '12345.6元' (for labels only)."""
    d = Decimal(str(value))
    if d >= 10000 and d % 10000 == 0:
        return f"{(d / 10000).normalize():f}万元"
    return f"{d.normalize():f}元"


# ---------------------------------------------------------------------------
# 说明
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class RibbonButton:
    id: str
    label: str
    on_action: str
    supertip: str


def ribbon_buttons(path: Path | None = None) -> list[RibbonButton]:
    """The buttons of the ribbon template, in order (the 说明 sheet lists them)."""
    from xl_ecom.ooxml.xlsm import CUSTOM_UI_NAMESPACE, RIBBON_TEMPLATE

    root = SafeET.fromstring((path or RIBBON_TEMPLATE).read_bytes())
    ns = f"{{{CUSTOM_UI_NAMESPACE}}}"
    return [
        RibbonButton(b.get("id", ""), b.get("label", ""), b.get("onAction", ""), b.get("supertip") or b.get("screentip") or "")
        for b in root.iter(f"{ns}button")
    ]


def _sheet_descriptions(plan: Plan, addin: AddIn) -> list[tuple[str, str]]:
    rows = [
        (layout.SHEET_README, "本说明。"),
        (layout.SHEET_ANNEX, "方案附件的目标任务分解表（各县区示范镇、示范村、年上行超1000万元企业目标任务数），"
         "含合计行、与方案正文目标的核对行，以及由“刷新”按钮填入的完成数、完成率和差额。"),
        (layout.SHEET_TASKS, f"方案全部{len(plan.measures)}项任务措施：条款、原文、牵头单位、配合单位、目标、完成时限和对应的奖补函数。"),
        (layout.SHEET_EXAMPLES, "每个奖补函数的算例，旁边是同一规则的原生公式和一致性检查。"),
    ]
    for t in TABLES:
        tail = "；右侧灰色列为按方案自动计算的奖补金额（原生公式）。" if t.awards else "。"
        rows.append((t.sheet, f"输入表：{t.title}。县区从下拉列表选择，金额、人数不能为负数" + tail))
    rows += [
        (settings.CONTACTS_SHEET, "各部门、各县区联系人和邮箱，“发送邮件”按此发送。"),
        (settings.SETTINGS_SHEET, "政策日期、输出文件夹、发件服务器等设置。不保存密码。"),
    ]
    config = addin.config_sheet()
    if config is not None:
        rows.append((config.name, config.description))
    return rows


def write_readme(ws, plan: Plan, addin: AddIn | None = None, template: Path = README_TEMPLATE) -> None:
    addin = _addin(addin)
    widths = (30, 110)
    ws.column_dimensions["A"].width = widths[0]
    ws.column_dimensions["B"].width = widths[1]
    meta = plan.meta
    sheets.title(
        ws,
        f"{meta.get('title', '')}工作簿说明",
        2,
        f"{meta.get('issuer', '')}　　方案状态：{meta.get('status', '')}　　规则政策日期：{_date_text(POLICY_DATE)}",
    )
    replacements = {
        "{方案名称}": str(meta.get("title", "")),
        "{状态}": str(meta.get("status", "")),
        "{发布单位}": str(meta.get("issuer", "")),
        "{政策日期}": _date_text(POLICY_DATE),
    }
    row = 3
    full = widths[0] + widths[1]

    def paragraph(text: str) -> None:
        nonlocal row
        cell = ws.cell(row=row, column=1, value=text)
        sheets.body_cell(cell)
        cell.border = sheets.Border()
        cell.alignment = sheets.TOP_LEFT
        ws.merge_cells(start_row=row, start_column=1, end_row=row, end_column=2)
        _fit_row(ws, row, [(text, full)])
        row += 1

    def pair(left: str, right: str) -> None:
        nonlocal row
        a = ws.cell(row=row, column=1, value=left)
        b = ws.cell(row=row, column=2, value=right)
        for c in (a, b):
            sheets.body_cell(c)
            c.alignment = sheets.TOP_LEFT
        a.font = Font(name="仿宋", size=11, bold=True)
        _fit_row(ws, row, [(left, widths[0]), (right, widths[1])])
        row += 1

    expansions = {
        "{{工作表}}": lambda: _sheet_descriptions(plan, addin),
        "{{按钮}}": lambda: [(b.label, b.supertip) for b in ribbon_buttons()],
        "{{函数}}": lambda: list(addin.functions()),
    }
    for raw in template.read_text(encoding="utf-8").splitlines():
        line = raw.rstrip()
        if not line or line.startswith("#"):
            continue
        for key, value in replacements.items():
            line = line.replace(key, value)
        if line.startswith("== "):
            row += 0 if row == 3 else 1
            cell = ws.cell(row=row, column=1, value=line[3:])
            cell.font = SECTION_FONT
            cell.alignment = Alignment(horizontal="left", vertical="center")
            ws.merge_cells(start_row=row, start_column=1, end_row=row, end_column=2)
            ws.row_dimensions[row].height = 24
            row += 1
        elif line.strip() in expansions:
            for left, right in expansions[line.strip()]():
                pair(left, right)
        elif "｜" in line:
            left, right = line.split("｜", 1)
            pair(left, right)
        else:
            paragraph(line)
    sheets.page_setup(ws, "1:1")


# ---------------------------------------------------------------------------
# 目标任务分解表
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class TargetCheck:
    """How the 核对 row compares one annex column's total with the plan text's target."""

    column_key: str
    target_id: str
    text: str
    word: str
    value: Any
    unit: str
    symbol: str | None  # Excel comparison operator; None for an approximate word (左右)

    @property
    def need(self) -> str:
        """What the 核对 text says the total should be: "≥15", "约60%"."""
        value = formulas._num(self.value)
        return f"约{value}" if self.symbol is None else f"{boundary(self.word).chinese}{value}"

    def holds(self, total) -> bool | None:
        if self.symbol is None:
            return None
        return boundary(self.word).op(total, self.value)


def annex_checks(plan: Plan) -> list[TargetCheck]:
    checks = []
    for col in plan.annex_columns:
        target = plan.target(col["target"])
        symbol = None if target.word in APPROXIMATE_WORDS else boundary(target.word).symbol
        checks.append(TargetCheck(col["key"], target.id, target.text, target.word, target.value, target.unit, symbol))
    return checks


def excel_text(value) -> str:
    """A number as Excel's General format turns it into text (``&``): 15 significant digits."""
    f = float(value)
    if f.is_integer() and abs(f) < 1e15:
        return str(int(f))
    return f"{f:.15g}"


def annex_values(plan: Plan, targets: Mapping[tuple[str, str], Any], done: Mapping[tuple[str, str], Any]) -> dict[tuple[int, int], Any]:
    """{(row, col): value} of the annex's formula cells (完成率, 差额, 合计, 核对) as Excel computes them
    from ``targets`` and ``done`` (目标任务数 and 完成数 by (县区, annex column key); blank when absent or
    None).  A cell whose formula gives an error on such data (text in a number cell) is left out."""
    counties = plan.counties
    first, total, check = layout.annex_rows(len(counties))
    out: dict[tuple[int, int], Any] = {}

    def block(i: int, r: int, t, d) -> None:
        rate, diff = layout.annex_col(i, "完成率"), layout.annex_col(i, "差额")
        blank = d is None or d == ""
        if blank:
            out[(r, rate)] = out[(r, diff)] = ""
            return
        if not sheets.is_number(d) or not (t is None or t == "" or sheets.is_number(t)):
            return  # #VALUE! in Excel: no cached value
        t_num = float(t) if sheets.is_number(t) else 0.0
        out[(r, rate)] = "" if t_num == 0 else float(d) / t_num
        out[(r, diff)] = t_num - float(d)

    for i, (col, chk) in enumerate(zip(plan.annex_columns, annex_checks(plan))):
        key = col["key"]
        column_targets: list[Any] = [targets.get((county, key)) for county in counties]
        column_done: list[Any] = [done.get((county, key)) for county in counties]
        for k, (t, d) in enumerate(zip(column_targets, column_done)):
            block(i, first + k, t, d)
        t_total = sum([float(t) for t in column_targets if sheets.is_number(t)], 0.0)
        numbers = [float(d) for d in column_done if sheets.is_number(d)]
        d_total: float | str = sum(numbers, 0.0) if numbers else ""
        out[(total, layout.annex_col(i, "目标任务数"))] = t_total
        out[(total, layout.annex_col(i, "完成数"))] = d_total
        block(i, total, t_total, d_total)
        t = layout.annex_col(i, "目标任务数")
        holds = chk.holds(t_total)
        out[(check, t)] = "约数" if holds is None else ("符合" if holds else "不足")
        out[(check, t + 1)] = f"正文：{chk.text}（合计应{chk.need}）；分解合计{excel_text(t_total)}{chk.unit}"
    return out


def write_annex(ws, plan: Plan, done: Mapping[tuple[str, str], Any] | None = None) -> None:
    """The annex; ``done`` holds 完成数 kept from an earlier workbook, by (县区, annex column key)."""
    done = done or {}
    counties = plan.counties
    cols = plan.annex_columns
    block = layout.ANNEX_BLOCK
    targets = {(county, col["key"]): plan.annex_value(county, col["key"]) for county in counties for col in cols}
    values = annex_values(plan, targets, done)  # the formulas' results, cached in the file
    ncols = 1 + len(cols) * len(block)
    first, total, check = layout.annex_rows(len(counties))
    last = first + len(counties) - 1
    units = "、".join(sorted({c["unit"] for c in cols}))
    sheets.title(ws, layout.SHEET_ANNEX, ncols, f"单位：{units}", row=layout.ANNEX_TITLE_ROW)

    hr, sr = layout.ANNEX_HEADER_ROW, layout.ANNEX_SUBHEADER_ROW
    ws.column_dimensions["A"].width = 12
    cell = ws.cell(row=hr, column=1, value="地区")
    ws.merge_cells(start_row=hr, start_column=1, end_row=sr, end_column=1)
    for i, col in enumerate(cols):
        start = layout.annex_col(i, block[0])
        ws.cell(row=hr, column=start, value=col["short"])
        ws.merge_cells(start_row=hr, start_column=start, end_row=hr, end_column=start + len(block) - 1)
        for j, name in enumerate(block):
            ws.cell(row=sr, column=start + j, value=f"{name}({col['unit']})" if name in ("目标任务数", "完成数", "差额") else name)
            ws.column_dimensions[get_column_letter(start + j)].width = 12.5
    for r in (hr, sr):
        for c in range(1, ncols + 1):
            cell = ws.cell(row=r, column=c)
            cell.font = sheets.HEADER_FONT
            cell.alignment = sheets.CENTER
            cell.border = sheets.BORDER
            cell.fill = sheets.HEADER_FILL
        ws.row_dimensions[r].height = 30

    def block_cells(i: int, r: int, target_value, done_formula: str | None) -> None:
        t = layout.annex_col(i, "目标任务数")
        d = layout.annex_col(i, "完成数")
        rate = layout.annex_col(i, "完成率")
        diff = layout.annex_col(i, "差额")
        tl, dl = get_column_letter(t), get_column_letter(d)
        for c, value in ((t, target_value), (d, done_formula)):
            if isinstance(value, str) and value.startswith("="):
                sheets.put_formula(ws.cell(row=r, column=c), value, values.get((r, c)))
            else:
                ws.cell(row=r, column=c, value=value)
        sheets.put_formula(ws.cell(row=r, column=rate), f'=IF(OR({dl}{r}="",N({tl}{r})=0),"",{dl}{r}/{tl}{r})', values.get((r, rate)))
        sheets.put_formula(ws.cell(row=r, column=diff), f'=IF({dl}{r}="","",{tl}{r}-{dl}{r})', values.get((r, diff)))
        sheets.body_cell(ws.cell(row=r, column=t), "count")
        sheets.body_cell(ws.cell(row=r, column=d), "count")
        sheets.body_cell(ws.cell(row=r, column=rate), "percent")
        sheets.body_cell(ws.cell(row=r, column=diff), "count")
        ws.cell(row=r, column=diff).number_format = "+0;-0;0"
        for c in (t, d, rate, diff):
            ws.cell(row=r, column=c).alignment = sheets.CENTER
        for c in (rate, diff):
            ws.cell(row=r, column=c).fill = sheets.FORMULA_FILL

    for k, county in enumerate(counties):
        r = first + k
        ws.cell(row=r, column=1, value=county)
        sheets.body_cell(ws.cell(row=r, column=1), "center")
        for i, col in enumerate(cols):
            block_cells(i, r, plan.annex_value(county, col["key"]), None)
            if (county, col["key"]) in done:
                _put(ws.cell(row=r, column=layout.annex_col(i, "完成数")), done[(county, col["key"])])
            ws.cell(row=r, column=layout.annex_col(i, "完成数")).fill = INPUT_FILL
        ws.row_dimensions[r].height = 22

    # 完成数: typed or filled by 刷新, a whole number not below 0
    dv = DataValidation(type="whole", operator="greaterThanOrEqual", formula1="0", allow_blank=True)
    dv.error = "完成数应为不小于0的整数"
    dv.errorTitle = "输入有误"
    dv.showErrorMessage = True
    ws.add_data_validation(dv)
    for i, _ in enumerate(cols):
        dl = get_column_letter(layout.annex_col(i, "完成数"))
        dv.add(f"{dl}{first}:{dl}{last}")

    # 合计
    ws.cell(row=total, column=1, value="合计")
    sheets.body_cell(ws.cell(row=total, column=1), "center")
    for i, _ in enumerate(cols):
        tl = get_column_letter(layout.annex_col(i, "目标任务数"))
        dl = get_column_letter(layout.annex_col(i, "完成数"))
        block_cells(i, total, f"=SUM({tl}{first}:{tl}{last})", f'=IF(COUNT({dl}{first}:{dl}{last})=0,"",SUM({dl}{first}:{dl}{last}))')
        for c in range(layout.annex_col(i, "目标任务数"), layout.annex_col(i, "差额") + 1):
            ws.cell(row=total, column=c).fill = sheets.FORMULA_FILL
    for c in range(1, ncols + 1):
        ws.cell(row=total, column=c).font = Font(name="仿宋", size=11, bold=True)
    ws.row_dimensions[total].height = 22

    # 核对: each total against the text's target, using the target's boundary word.
    ws.cell(row=check, column=1, value="核对正文目标")
    sheets.body_cell(ws.cell(row=check, column=1), "center")
    ws.cell(row=check, column=1).font = Font(name="仿宋", size=11, bold=True)
    for i, chk in enumerate(annex_checks(plan)):
        t = layout.annex_col(i, "目标任务数")
        tl = get_column_letter(t)
        ref = f"{tl}{total}"
        value = formulas._num(chk.value)
        flag = '="约数"' if chk.symbol is None else f'=IF({ref}{chk.symbol}{value},"符合","不足")'
        sheets.put_formula(ws.cell(row=check, column=t), flag, values.get((check, t)))
        sheets.body_cell(ws.cell(row=check, column=t), "center")
        quoted = chk.text.replace('"', '""')
        detail = f'="正文：{quoted}（合计应{chk.need}）；分解合计"&{ref}&"{chk.unit}"'
        sheets.put_formula(ws.cell(row=check, column=t + 1), detail, values.get((check, t + 1)))
        sheets.body_cell(ws.cell(row=check, column=t + 1))
        for c in range(t + 1, t + len(block)):
            ws.cell(row=check, column=c).border = sheets.BORDER
        ws.merge_cells(start_row=check, start_column=t + 1, end_row=check, end_column=t + len(block) - 1)
        rng = f"{tl}{check}"
        ws.conditional_formatting.add(rng, CellIsRule(operator="equal", formula=['"不足"'], font=FLAG_BAD_FONT))
        ws.conditional_formatting.add(rng, CellIsRule(operator="equal", formula=['"符合"'], font=FLAG_OK_FONT))
    _fit_row(ws, check, [(f"正文：{c.text}（合计应≥{c.value}）；分解合计99个", 12.5 * 3) for c in annex_checks(plan)], minimum=36)

    note = check + 2
    text = (
        "注：1. 目标任务数为方案附件原数；完成数（黄色单元格）由“刷新”按钮按各输入表计算填入，也可手工填写。"
        "2. 完成率＝完成数÷目标任务数，差额＝目标任务数－完成数（与县区工作簿相同），为0或负数表示已完成目标任务，完成数未填时不显示。"
        "3. 核对行按《民法典》第一千二百五十九条理解“以上”“达到”（含本数）。"
    )
    ws.cell(row=note, column=1, value=text).font = sheets.NOTE_FONT
    ws.cell(row=note, column=1).alignment = sheets.TOP_LEFT
    ws.merge_cells(start_row=note, start_column=1, end_row=note, end_column=ncols)
    _fit_row(ws, note, [(text, 12 + 12.5 * (ncols - 1))])
    ws.freeze_panes = ws.cell(row=first, column=2)
    sheets.page_setup(ws, f"{hr}:{sr}")


# ---------------------------------------------------------------------------
# 任务清单
# ---------------------------------------------------------------------------

TASK_HEADERS = ("条款", "任务", "内容（原文）", "牵头单位", "配合单位", "目标", "完成时限", "奖补规则")
TASK_WIDTHS = (11, 12, 62, 14, 18, 24, 16, 24)


def task_rows(plan: Plan) -> list[tuple[str, ...]]:
    """One row per measure (and per overall target of 一、目标要求), as the 任务清单 shows them."""
    rows: list[tuple[str, ...]] = []
    for t in plan.targets:
        if t.measure is None:
            rows.append(
                (t.clause, "目标要求", t.text, t.lead or "", "、".join(t.cooperating), t.text, _date_text(t.deadline), "")
            )
    for m in plan.measures:
        targets = "；".join(t.text for t in plan.targets_for_measure(m.id))
        rules = "\n".join(f"{r.name}：{r.id}" for r in plan.rules_for_measure(m.id))
        rows.append((m.id, m.task_title, m.text, m.lead, "、".join(m.cooperating), targets, _date_text(m.deadline), rules))
    return rows


def write_tasks(ws, plan: Plan) -> None:
    basis = f"依据：{plan.meta.get('title', '')}（{plan.meta.get('status', '')}）　　目标单位：个、家、元"
    sheets.title(ws, "任务清单", len(TASK_HEADERS), basis)
    sheets.header(ws, 3, TASK_HEADERS, TASK_WIDTHS)
    for k, values in enumerate(task_rows(plan)):
        r = 4 + k
        for c, value in enumerate(values, start=1):
            cell = ws.cell(row=r, column=c, value=value or None)
            sheets.body_cell(cell, "center" if c in (1, 2, 7) else "text")
            cell.alignment = sheets.CENTER if c in (1, 2, 7) else sheets.LEFT
        _fit_row(ws, r, list(zip(values, TASK_WIDTHS)))
    ws.freeze_panes = "A4"
    ws.auto_filter.ref = f"A3:{get_column_letter(len(TASK_HEADERS))}{3 + len(task_rows(plan))}"
    sheets.page_setup(ws, "3:3")


# ---------------------------------------------------------------------------
# Cases: worked examples (奖补测算) and the boundary table the tests recalculate
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One evaluation of a rule: ``args`` in the rule's input order (None = blank cell).

    ``error``: the engine refuses the input (the native formula shows a message instead).
    ``sequence``: rows evaluated in order with a cumulative cap (``args`` is then a tuple of rows).
    ``on_sheet``: shown as a worked example on 奖补测算.
    """

    rule: str
    label: str
    args: tuple
    error: bool = False
    sequence: bool = False
    on_sheet: bool = False


def _yuan_of_cents(cents) -> Decimal:
    return (Decimal(int(cents)) / 100).quantize(Decimal("0.01"))


def _step(kind: str):
    return Decimal("0.01") if kind == "money" else (Decimal("0.5") if kind == "years" else Decimal(1))


def _external(kind: str, internal) -> Any:
    """Internal (cents for money) → what a clerk types (yuan / number)."""
    if kind == "money":
        return _yuan_of_cents(internal)
    d = Decimal(internal)
    return int(d) if kind == "count" else d


def rule_cases(rule_id: str, *, on=POLICY_DATE, plan: Plan | None = None) -> list[Case]:
    """Cases that exercise one rule: each threshold at −0.01 / exactly / +0.01, each cap edge,
    a half-cent rounding, every choice, rate below/at/above its ceiling, blank input, and for a
    cumulative cap a sequence that reaches it.  Derived from the resolved plan data (the typed rule
    model: one ``match`` per amount kind in :func:`_amount_cases`)."""
    plan = plan or load_plan()
    rule = get_rule(rule_id, plan)
    res = resolve(rule.id, on=on, plan=plan)
    names = rule.input_names
    cases: list[Case] = []

    def add(label, values: dict, **kw):
        cases.append(Case(rule.id, label, tuple(values.get(n) for n in names), **kw))

    for variant, body in res.variants.items():
        prefix = f"{variant}：" if variant else ""
        base: dict = {}
        for spec in rule.inputs:
            if rule.switch == spec.name:
                base[spec.name] = variant or None
            elif spec.kind == "rate" or spec.default_input:
                base[spec.name] = None
            elif spec.kind == "money":
                base[spec.name] = Decimal("12345.67")
            elif spec.kind == "count":
                base[spec.name] = 2
            elif spec.kind == "years":
                base[spec.name] = Decimal(3)
        for c in body.conditions:
            kind = rule.input(c.input).kind
            t = _external(kind, c.threshold)
            base[c.input] = (t * Decimal("1.5")).quantize(Decimal("0.01")) if kind == "money" else t + 1
        a = body.amount
        match a:  # every kind gets its general case; _amount_cases adds the kind's own edges
            case Rate() | Factor() | Fixed() | PerUnit():
                pass
            case Tiers():
                base[a.basis] = _external("money", a.tiers[0].threshold) * 2
            case _:
                raise TypeError(f"unhandled amount kind {a!r}")
        cases.append(Case(rule.id, f"{prefix}一般情形", tuple(base.get(n) for n in names), on_sheet=True))
        # thresholds of the conditions, then of a tiered amount (in that order)
        for c in body.conditions:
            _threshold_cases(rule, c.input, c.threshold, c.word, c.reference, base, prefix, add)
        _amount_cases(rule, body, base, prefix, add, cases)

    # blank required input, invalid choice
    required = [s for s in rule.inputs if not s.optional and not s.default_input]
    if required:
        first = cases[0]
        v = dict(zip(names, first.args if not first.sequence else first.args[0]))
        v[required[0].name] = None
        add(f"{required[0].label}未填", v)
    if rule.switch:
        first = next(c for c in cases if not c.sequence)
        v = dict(zip(names, first.args))
        v[rule.switch] = "其他"
        add(f"{rule.input(rule.switch).label}填写无效", v, error=True)
    return _dedupe(cases)


def _threshold_cases(rule, name: str, threshold, word: str, reference, base: dict, prefix: str, add) -> None:
    """A threshold at one step below, exactly, and one step above (the side shown on the sheet is the
    one the boundary word makes interesting)."""
    kind = rule.input(name).kind
    t = _external(kind, threshold)
    step = _step(kind)
    strict = not boundary(word).inclusive
    for delta, text, show in ((-step, "差一点", not strict), (0, "恰为门槛", True), (step, "刚超过", strict)):
        v = dict(base)
        v[name] = t + delta
        add(f"{prefix}{reference}：{text}", v, on_sheet=show)


def _amount_cases(rule, body: Body, base: dict, prefix: str, add, cases: list[Case]) -> None:
    """The edges of the amount's own kind: tier thresholds; a rate's cap edges, half-cent rounding,
    typed rate and cumulative sequence; a per-unit amount's nothing/some."""
    a = body.amount
    match a:
        case Tiers():
            for t in a.tiers:
                _threshold_cases(rule, a.basis, t.threshold, t.word, t.ref, base, prefix, add)
        case Rate() | Factor():
            _rate_cases(rule, body, a, base, prefix, add, cases)
        case PerUnit():
            add(f"{prefix}均为0", {u.input: 0 for u in a.units}, on_sheet=True)
            add(f"{prefix}各1", {u.input: 1 for u in a.units})
        case Fixed():
            pass
        case _:
            raise TypeError(f"unhandled amount kind {a!r}")


def _rate_cases(rule, body: Body, a: Rate | Factor, base: dict, prefix: str, add, cases: list[Case]) -> None:
    names = rule.input_names
    basis = a.basis[0]
    cap = body.limit
    # cap edges (a rate amount reaching its cap)
    if cap is not None and not cap.cumulative:
        edge_cents = Decimal(cap.cents) / a.rate
        if edge_cents == edge_cents.to_integral_value():
            others = {n: Decimal(0) for n in a.basis[1:]}
            for delta, text, show in ((-1, "差一分到上限", False), (0, "恰达上限", True), (1, "超过上限", True)):
                v = dict(base, **others)
                v[basis] = _yuan_of_cents(edge_cents + delta)
                if all(_cond_ok(rule, c, v) for c in body.conditions):
                    add(f"{prefix}{cap.reference}：{text}", v, on_sheet=show)
        v = dict(base)
        v[basis] = _yuan_of_cents(edge_cents * 3)
        add(f"{prefix}{cap.reference}：远超上限", v)

    # half-cent rounding
    spec = rule.input(basis)
    seed = base.get(basis) if base.get(basis) is not None else base.get(spec.default_input or "")
    start = int(Decimal(str(seed if seed is not None else Decimal("12345.67"))) * 100)
    other_cents = sum(int(Decimal(str(base.get(n) or 0)) * 100) for n in a.basis[1:])
    for b in range(start, start + 2000):
        if (Decimal(b + other_cents) * a.rate) % 1 == Decimal("0.5"):
            v = dict(base)
            v[basis] = _yuan_of_cents(b)
            if cap is None or Decimal(b + other_cents) * a.rate < cap.cents:
                add(f"{prefix}四舍五入：半分进位", v, on_sheet=True)
            break

    # a rate typed by the clerk (a Rate whose rate is a ceiling)
    if isinstance(a, Rate) and a.rate_input:
        ceiling = a.rate
        rate_cases = (
            (ceiling / 2, f"比例{percent(ceiling / 2)}", False),
            (ceiling, f"比例恰为上限{percent(ceiling)}", False),
            (ceiling + Decimal("0.001"), "比例超过上限", True),
        )
        for rate, text, err in rate_cases:
            v = dict(base)
            v[a.rate_input] = rate
            add(f"{prefix}{text}", v, error=err, on_sheet=not err and rate != ceiling)

    # cumulative cap: a sequence of events reaching it
    if cap is not None and cap.cumulative:
        half = _yuan_of_cents(Decimal(cap.cents) / a.rate / 2)
        rows = []
        for value in (half, half - Decimal("0.01"), Decimal("20000"), Decimal("0.01")):
            v = dict(base)
            v[basis] = value
            rows.append(tuple(v.get(n) for n in names))
        cases.append(Case(rule.id, f"{prefix}{cap.reference}：按场累计", tuple(rows), sequence=True, on_sheet=True))


def _cond_ok(rule, c: Condition, values) -> bool:
    kind = rule.input(c.input).kind
    value = values.get(c.input)
    if value is None:
        return False
    internal = int(Decimal(str(value)) * 100) if kind == "money" else Decimal(str(value))
    return boundary(c.word).op(internal, c.threshold)


def _dedupe(cases: list[Case]) -> list[Case]:
    seen: dict = {}
    for case in cases:
        key = (case.args, case.sequence)
        if key in seen:
            if case.on_sheet and not seen[key].on_sheet:
                seen[key] = case
            continue
        seen[key] = case
    return list(seen.values())


# ---------------------------------------------------------------------------
# 奖补测算
# ---------------------------------------------------------------------------

EXAMPLE_HEADERS = ("算例", "输入1", "输入2", "输入3", "输入4", "函数结果(元)", "原生公式结果(元)", "是否一致", "函数公式")
EXAMPLE_WIDTHS = (36, 15, 15, 15, 15, 15, 17, 12, 34)
MAX_INPUTS = 4
EXAMPLES_FIRST_ROW = 3
COL_UDF, COL_NATIVE, COL_AGREE, COL_TEXT = 6, 7, 8, 9


@dataclass
class ExampleCell:
    """Where a worked example sits on 奖补测算 (for tests and readers)."""

    rule: str
    label: str
    row: int
    input_cells: dict = field(default_factory=dict)  # input name -> "B5"
    udf_formula: str = ""
    native_formula: str = ""
    sequence_first_row: int | None = None


def _input_value(spec, value):
    if value is None:
        return None
    if spec.kind == "money":
        return float(value)
    if spec.kind in ("rate", "years"):
        return float(value)
    if spec.kind == "count":
        return int(value)
    return value


#: text an xlwings UDF cell shows when Python did not answer: xlwings' VBA wrapper puts the error's
#: description (the Python exception text, "Error"/"Traceback ...", or xlwings' own message) into the
#: cell; "#N/A waiting..." and similar start with "#".  SEARCH is case-insensitive.
UDF_ERROR_MARKS = ("xlwings", "python", "error", "错误", "traceback", "exception")


def agreement_formula(udf: str, native: str) -> str:
    """The 核对 cell of 奖补测算: "一致" / "不一致" between the UDF and its native twin, and
    "未启用Python" when the UDF cell holds an error value or xlwings' error text instead of an
    answer.  A UDF text that contains the native cell's own flag (the engine raising the same
    message, e.g. a rate above its ceiling) counts as 一致."""
    u, n = udf, native
    marks = ",".join([f'LEFT({u},1)="#"'] + [f'ISNUMBER(SEARCH("{m}",{u}))' for m in UDF_ERROR_MARKS])
    return (
        f'=IF(ISERROR({u}),"未启用Python",IF(AND(ISNUMBER({u}),ISNUMBER({n})),'
        f'IF(ABS({u}-{n})<0.005,"一致","不一致"),IF({u}&""={n}&"","一致",'
        f'IF(AND(ISTEXT({u}),ISTEXT({n}),{n}<>""),IF(ISNUMBER(SEARCH({n},{u})),"一致",'
        f'IF(OR({marks}),"未启用Python","不一致")),'
        f'IF(AND(ISTEXT({u}),OR({marks})),"未启用Python","不一致")))))'
    )


#: how an input cell of each input kind is formatted on the 奖补测算 sheet
INPUT_CELL_STYLE = {"money": "money", "count": "count", "rate": "percent", "years": "count", "choice": "center"}


def write_examples(ws, plan: Plan) -> list[ExampleCell]:
    ncols = len(EXAMPLE_HEADERS)
    sheets.title(
        ws,
        "奖补测算",
        ncols,
        "单位：元　　“函数结果”由 Python 规则引擎计算（需启用 xlwings）；"
        "“原生公式结果”是同一规则写成的 Excel 原生公式，WPS 和没有 Python 的电脑也能计算。",
    )
    for c, width in enumerate(EXAMPLE_WIDTHS, start=1):
        ws.column_dimensions[get_column_letter(c)].width = width
    placed: list[ExampleCell] = []
    row = EXAMPLES_FIRST_ROW
    capacity = _page_capacity(EXAMPLE_WIDTHS, repeated=45)
    used = 0.0
    for number, (rule_id, rule) in enumerate(plan.rules.items(), start=1):
        block_start = row
        if len(rule.inputs) > MAX_INPUTS:
            raise BuildError(f"规则 {rule_id} 有 {len(rule.inputs)} 个输入，奖补测算表最多容纳 {MAX_INPUTS} 个。")
        # block title and original text
        head = ws.cell(row=row, column=1, value=f"{number}. {rule.name}　{rule_id}（条款{rule.clause}）")
        head.font = SECTION_FONT
        head.alignment = Alignment(horizontal="left", vertical="center")
        ws.merge_cells(start_row=row, start_column=1, end_row=row, end_column=ncols)
        ws.row_dimensions[row].height = 22
        row += 1
        text = f"原文：{rule.text}"
        ws.cell(row=row, column=1, value=text).font = sheets.BODY_FONT
        ws.cell(row=row, column=1).alignment = sheets.TOP_LEFT
        ws.merge_cells(start_row=row, start_column=1, end_row=row, end_column=ncols)
        _fit_row(ws, row, [(text, sum(EXAMPLE_WIDTHS))], minimum=18)
        row += 1
        labels = ["算例"] + [s.label + ("(元)" if s.kind == "money" else "") for s in rule.inputs]
        labels += [""] * (1 + MAX_INPUTS - len(labels))
        labels += list(EXAMPLE_HEADERS[COL_UDF - 1 :])
        for c, text in enumerate(labels, start=1):
            cell = ws.cell(row=row, column=c, value=text or None)
            cell.font = Font(name="宋体", size=10, bold=True)
            cell.alignment = sheets.CENTER
            cell.border = sheets.BORDER
            cell.fill = sheets.HEADER_FILL
        _fit_row(ws, row, [(t, w) for t, w in zip(labels, EXAMPLE_WIDTHS)], line_height=13, minimum=20)
        row += 1
        for case in rule_cases(rule_id, plan=plan):
            if not case.on_sheet:
                continue
            rows = case.args if case.sequence else (case.args,)
            seq_first = row
            written = [tuple(_input_value(spec, a[i]) for i, spec in enumerate(rule.inputs)) for a in rows]
            if case.sequence:
                cents = list(calculate_sequence(rule_id, written, on=POLICY_DATE, plan=plan))
            else:
                cents = [calculate_cents(rule_id, *written[0], on=POLICY_DATE, plan=plan)]
            for k, args in enumerate(rows):
                refs = {spec.name: f"{get_column_letter(2 + i)}{row}" for i, spec in enumerate(rule.inputs)}
                label = case.label if not case.sequence else f"{case.label}（第{k + 1}场）"
                ws.cell(row=row, column=1, value=label)
                sheets.body_cell(ws.cell(row=row, column=1))
                for i, spec in enumerate(rule.inputs):
                    cell = ws.cell(row=row, column=2 + i, value=_input_value(spec, args[i]))
                    sheets.body_cell(cell, INPUT_CELL_STYLE.get(spec.kind, "text"))
                    if spec.kind == "years":
                        cell.number_format = "0.0"
                    if spec.kind == "rate":
                        cell.number_format = "0.0%"
                for i in range(len(rule.inputs), MAX_INPUTS):
                    sheets.body_cell(ws.cell(row=row, column=2 + i))
                nl = get_column_letter(COL_NATIVE)
                if case.sequence:
                    col = refs[rule.inputs[0].name][0]
                    udf = f"=INDEX({rule_id}({col}${seq_first}:{col}{row}),ROWS({col}${seq_first}:{col}{row}))"
                    prior = "0" if row == seq_first else f"SUM({nl}${seq_first}:{nl}{row - 1})"
                    native = formulas.compile_rule(rule_id, refs, on=POLICY_DATE, plan=plan, prior_paid=prior)
                else:
                    udf = f"={rule_id}({','.join(refs.values())})"
                    native = formulas.compile_rule(rule_id, refs, on=POLICY_DATE, plan=plan)
                value = "" if cents[k] is None else float(_yuan_of_cents(cents[k]))
                sheets.put_formula(ws.cell(row=row, column=COL_UDF), udf, value)
                sheets.put_formula(ws.cell(row=row, column=COL_NATIVE), native, value)
                ul = get_column_letter(COL_UDF)
                sheets.put_formula(ws.cell(row=row, column=COL_AGREE), agreement_formula(f"{ul}{row}", f"{nl}{row}"), "一致")
                _store_text(ws.cell(row=row, column=COL_TEXT), udf)
                for c, kind in ((COL_UDF, "money"), (COL_NATIVE, "money"), (COL_AGREE, "center"), (COL_TEXT, "text")):
                    sheets.body_cell(ws.cell(row=row, column=c), kind)
                    ws.cell(row=row, column=c).fill = sheets.FORMULA_FILL
                ws.cell(row=row, column=COL_TEXT).font = Font(name="Consolas", size=9)
                _fit_row(ws, row, [(label, EXAMPLE_WIDTHS[0]), (udf, EXAMPLE_WIDTHS[-1] * 1.1)], line_height=14, minimum=20)
                placed.append(
                    ExampleCell(rule_id, label, row, dict(refs), udf, native, seq_first if case.sequence else None)
                )
                row += 1
        # keep each rule's block on one printed page
        height = sum(ws.row_dimensions[r].height or 15 for r in range(block_start, row))
        if used and used + height > capacity:
            ws.row_breaks.append(Break(id=block_start - 1))
            used = 0.0
        used += height + 15
        row += 1
    agree = get_column_letter(COL_AGREE)
    rng = f"{agree}{EXAMPLES_FIRST_ROW}:{agree}{row}"
    ws.conditional_formatting.add(rng, CellIsRule(operator="equal", formula=['"不一致"'], font=FLAG_BAD_FONT))
    ws.conditional_formatting.add(rng, CellIsRule(operator="equal", formula=['"一致"'], font=FLAG_OK_FONT))
    ws.freeze_panes = ws.cell(row=EXAMPLES_FIRST_ROW, column=1)
    sheets.page_setup(ws, "1:2")
    return placed


# ---------------------------------------------------------------------------
# 通讯录, 设置, xlwings.conf
# ---------------------------------------------------------------------------

CONTACT_WIDTHS = {"单位": 30, "类别": 10, "联系人": 14, "邮箱": 40, "电话": 18}


def contact_units(plan: Plan) -> list[tuple[str, str]]:
    """(单位, 类别): every department of the plan, then every county of the annex."""
    rows = [(d["name"], settings.DEPARTMENT) for d in plan.departments if d.get("kind") == "部门"]
    rows += [(county, settings.COUNTY) for county in plan.counties]
    return rows


def write_contacts(ws, plan: Plan, kept: Sequence[Mapping[str, Any]] = ()) -> None:
    """通讯录: a row per unit of the plan.  ``kept`` rows (by header, from an earlier workbook) fill
    the units they name; the kept rows of units the plan does not list follow, in their order."""
    headers = settings.CONTACT_HEADERS
    sheets.title(ws, "通讯录", len(headers), "邮箱可填多个，用分号隔开；“发送邮件”按单位名称把部门任务表、县区工作簿发到这里的邮箱。")
    sheets.header(ws, 3, headers, [CONTACT_WIDTHS.get(h, 16) for h in headers])
    by_unit: dict[str, Mapping[str, Any]] = {}
    for row in kept:
        by_unit.setdefault(str(row.get("单位") or "").strip(), row)
    rows: list[Mapping[str, Any]] = []
    consumed: set[int] = set()
    for unit, category in contact_units(plan):
        old = by_unit.get(unit, {})
        consumed.add(id(old))
        rows.append({**{h: old.get(h) for h in headers}, "单位": unit, "类别": old.get("类别") or category})
    rows += [row for row in kept if id(row) not in consumed]
    last = 3 + len(rows)
    for k, row in enumerate(rows):
        r = 4 + k
        for c, h in enumerate(headers, start=1):
            cell = ws.cell(row=r, column=c)
            _put(cell, row.get(h))
            sheets.body_cell(cell, "center" if h == "类别" else "text")
        ws.row_dimensions[r].height = 20
    if "类别" in headers:
        col = get_column_letter(headers.index("类别") + 1)
        dv = sheets.list_validation(settings.CONTACT_CATEGORIES, f"类别只能填写：{'、'.join(settings.CONTACT_CATEGORIES)}")
        ws.add_data_validation(dv)
        dv.add(f"{col}4:{col}{last + 50}")
    ws.freeze_panes = "A4"
    sheets.page_setup(ws, "3:3")


def write_settings(ws, kept: Mapping[str, Any] | None = None) -> None:
    """设置: header row 1, then one row per SETTINGS_ROWS item (read back by settings.read_settings).

    ``kept`` (项目 → 值, from an earlier workbook) replaces the defaults; its items the build does
    not know follow the known ones, so nothing a clerk entered is dropped."""
    headers = settings.SETTINGS_HEADERS
    sheets.header(ws, 1, headers, [16, 28, 70])
    kept = dict(kept or {})
    known = {key for key, _, _ in settings.SETTINGS_ROWS}
    items = [(key, kept.pop(key, default), note) for key, default, note in settings.SETTINGS_ROWS]
    items += [(key, value, "（保留自原工作簿）") for key, value in kept.items() if key not in known]
    for k, (key, value, note) in enumerate(items):
        r = 2 + k
        a = ws.cell(row=r, column=1, value=key)
        b = ws.cell(row=r, column=2)
        _put(b, value)
        c = ws.cell(row=r, column=3, value=note)
        sheets.body_cell(a)
        a.font = Font(name="仿宋", size=11, bold=True)
        is_date = isinstance(value, dt.date) or "日期" in key
        sheets.body_cell(b, "date" if is_date else "text")
        sheets.body_cell(c)
        _fit_row(ws, r, [(note, 70)])
        if key in ("加密方式",):
            dv = sheets.list_validation(settings.SECURITY_CHOICES, f"加密方式只能填写：{'、'.join(settings.SECURITY_CHOICES)}")
            ws.add_data_validation(dv)
            dv.add(f"B{r}")
        if "端口" in key:
            dv = DataValidation(type="whole", operator="between", formula1="1", formula2="65535", allow_blank=True)
            dv.error = "端口应为 1 到 65535 之间的整数"
            dv.errorTitle = "输入有误"
            dv.showErrorMessage = True
            ws.add_data_validation(dv)
            dv.add(f"B{r}")
    note_row = 2 + len(items) + 1
    note = ws.cell(row=note_row, column=3, value="密码不写在本表：请设置环境变量 XL_ECOM_SMTP_PASSWORD，或保存到系统钥匙串。")
    note.font = sheets.NOTE_FONT
    sheets.page_setup(ws, "1:1")


def write_config_sheet(ws, config: ConfigSheet, kept: Mapping[str, Any] | None = None) -> None:
    """The add-in's settings sheet (xlwings.conf) in its own format: keys in column A from A1 down,
    values in column B.  Explanations sit in column D, which the add-in does not read.  ``kept``
    values (by lower-case key, from an earlier workbook) replace the defaults, except ``fixed`` keys."""
    kept = kept or {}
    for r, (key, value) in enumerate(config.rows, start=1):
        ws.cell(row=r, column=1, value=key)
        if key.lower() in kept and key.lower() not in config.fixed:
            value = kept[key.lower()]
        _put(ws.cell(row=r, column=2), value)
        note = config.notes.get(key.lower())
        if note:
            ws.cell(row=r, column=4, value=note).font = sheets.NOTE_FONT
    ws.column_dimensions["A"].width = 18
    ws.column_dimensions["B"].width = 28
    ws.column_dimensions["D"].width = 60
    sheets.page_setup(ws)
    # hidden, so "print entire workbook" (Excel) and a PDF export (LibreOffice) leave it out; the add-in
    # (xlwings) reads it by name all the same, and 取消隐藏 shows it again
    ws.sheet_state = "hidden"


# ---------------------------------------------------------------------------
# The workbook
# ---------------------------------------------------------------------------


#: Sheets refresh and validate generate: a rebuild leaves them out (the next 刷新 writes them again).
GENERATED_SHEETS = (layout.SHEET_AWARDS, layout.SHEET_SUMMARY, layout.SHEET_PROGRESS, layout.SHEET_VALIDATION)


def sheet_names(addin: AddIn | None = None) -> list[str]:
    config = _addin(addin).config_sheet()
    return (
        [layout.SHEET_README, layout.SHEET_ANNEX, layout.SHEET_TASKS, layout.SHEET_EXAMPLES]
        + [t.sheet for t in TABLES]
        + [settings.CONTACTS_SHEET, settings.SETTINGS_SHEET]
        + ([config.name] if config is not None else [])
    )


def write_kept_sheet(ws, rows: Sequence[Sequence[Any]]) -> None:
    """A sheet kept from an earlier workbook (发送记录, or one the clerk added): its values from A1."""
    for r, row in enumerate(rows, start=1):
        for c, value in enumerate(row, start=1):
            if value is not None:
                _put(ws.cell(row=r, column=c), value)


def build_openpyxl(plan: Plan | None = None, addin: AddIn | None = None, kept: KeptData | None = None) -> Workbook:
    """The sheets of the city workbook, as an openpyxl Workbook (no VBA yet); ``kept`` fills in a
    clerk's data from an earlier workbook."""
    plan = plan or load_plan()
    addin = _addin(addin)
    kept = kept or KeptData()
    wb = Workbook()
    ws = wb.active
    ws.title = layout.SHEET_README
    write_readme(ws, plan, addin)
    write_annex(wb.create_sheet(layout.SHEET_ANNEX), plan, kept.annex_done)
    write_tasks(wb.create_sheet(layout.SHEET_TASKS), plan)
    write_examples(wb.create_sheet(layout.SHEET_EXAMPLES), plan)
    for table in TABLES:
        ws = wb.create_sheet(table.sheet)
        rows = kept.table_rows.get(table.key, [])
        sheets.write_input_table(ws, table, plan.counties, rows, on=POLICY_DATE)
        for i, row in enumerate(rows):
            for c, col in enumerate(table.columns, start=1):
                if isinstance(row.get(col.key), KeptText):
                    ws.cell(row=layout.INPUT_FIRST_ROW + i, column=c).data_type = "s"
    write_contacts(wb.create_sheet(settings.CONTACTS_SHEET), plan, kept.contacts)
    write_settings(wb.create_sheet(settings.SETTINGS_SHEET), kept.settings)
    config = addin.config_sheet()
    if config is not None:
        write_config_sheet(wb.create_sheet(config.name), config, kept.config)
    if wb.sheetnames != sheet_names(addin):  # pragma: no cover - guards the order contract
        raise BuildError(f"工作表顺序不对：{wb.sheetnames}")
    for name, values in kept.extra_sheets.items():
        if name in wb.sheetnames:
            raise BuildError(f"要保留的工作表“{name}”与生成的工作表同名。")
        write_kept_sheet(wb.create_sheet(name), values)
    wb.properties.creator = str(plan.meta.get("issuer", ""))
    wb.properties.title = layout.WORKBOOK_NAME.rsplit(".", 1)[0]
    wb.properties.lastModifiedBy = None
    return wb


def build_xlsx_bytes(plan: Plan | None = None, addin: AddIn | None = None, kept: KeptData | None = None) -> bytes:
    """The sheets as an .xlsx package; formula cells carry the engine's values as cached results."""
    return sheets.with_cached_values(build_openpyxl(plan, addin, kept))


def build_bytes(plan: Plan | None = None, addin: AddIn | None = None, kept: KeptData | None = None) -> bytes:
    """The .xlsm bytes: sheets, the add-in's VBA project (for xlwings: its runtime, UDF wrappers,
    ribbon callbacks), ribbon."""
    from xl_ecom.ooxml.xlsm import build_xlsm

    addin = _addin(addin)
    return build_xlsm(build_xlsx_bytes(plan, addin, kept), addin.vba_modules())


def build_workbook(out_path: str | Path | None = None, plan: Plan | None = None, addin: AddIn | None = None) -> Path:
    """Write the workbook to ``out_path`` (default workbook/目标任务分解表.xlsm under the cwd).

    An existing workbook there is upgraded in place — its data kept, a backup written first — by
    :func:`xl_ecom.workflows.upgrade.write_city_workbook`, which also takes the workbook's lock."""
    from xl_ecom.workflows import upgrade

    return upgrade.write_city_workbook(out_path or DEFAULT_OUT, plan=plan, addin=addin).path


# ---------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------


def _run_build(args) -> int:
    import sys

    from xl_ecom.workflows import upgrade

    try:
        report = upgrade.write_city_workbook(args.out or DEFAULT_OUT, command="xl-ecom build")
    except XlEcomError as exc:
        print(f"生成失败：{exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"生成失败：无法写入“{args.out or DEFAULT_OUT}”（{exc.strerror or exc}）。", file=sys.stderr)
        return 2
    print(report.to_text())
    return 0


def add_cli(subparsers) -> None:
    """Register ``xl-ecom build [--out PATH]``."""
    p = subparsers.add_parser("build", help="生成目标任务分解表.xlsm（含功能区、工作表函数和输入表）",
                              description="从方案数据和 templates/ 生成市级工作簿。")
    p.add_argument("--out", default=None, help=f"输出文件，默认 {DEFAULT_OUT}；已有的工作簿按新版结构重建，数据保留，原文件先备份")
    p.set_defaults(func=_run_build)
