"""Department task sheets (生成部门任务表 / ``xl-ecom departments``).

One .xlsx per unit the plan names, in ``<out>/部门任务表/<单位>.xlsx``: every measure the unit leads
(牵头) or cooperates on (配合), with clause, original text, targets, deadline and the award/subsidy
rules of that measure in words and figures, plus empty columns the unit fills in (进展情况,
完成时间, 责任人, 联系电话).  The figures come from ``engine.resolve`` as of the policy date; nothing
here knows a rate, cap or threshold.  The files hold no macros and only native content, so they
open and print the same in Excel, WPS and LibreOffice.

Also shared with :mod:`xl_ecom.workflows.counties`: the task-list sheet writer, rule descriptions and the
byte-reproducible save.
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import math
import re
import sys
import unicodedata
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

from openpyxl import Workbook
from openpyxl.styles import Font
from openpyxl.utils import get_column_letter
from openpyxl.worksheet.datavalidation import DataValidation

from xl_ecom.common.errors import InputError, XlEcomError
from xl_ecom.policy import Measure, Plan, Target, load_plan
from xl_ecom.policy.boundaries import boundary
from xl_ecom.rules.engine import percent, resolve
from xl_ecom.rules.model import Body, Factor, Fixed, PerUnit, Rate, Tiers
from xl_ecom.workflows import sheets

SUBDIR = "部门任务表"  # <out>/部门任务表/<单位>.xlsx (mail relies on it; = settings.DEPARTMENT_SUBDIR)
DEFAULT_OUT = "输出"
TASK_SHEET = "工作任务"
RULES_SHEET = "奖补标准"
#: created/modified time written into every generated file, so two runs give identical bytes
PINNED_TIME = dt.datetime(2020, 1, 1, 0, 0, 0)
ZIP_DATE_TIME = (2020, 1, 1, 0, 0, 0)

#: (header, width, kind) of the task list.  The last four are left empty for the unit.
TASK_COLUMNS: tuple[tuple[str, float, str], ...] = (
    ("序号", 5, "center"),
    ("条款", 10, "center"),
    ("工作措施（方案原文）", 42, "text"),
    ("职责", 6, "center"),
    ("责任单位", 16, "text"),
    ("目标任务", 20, "text"),
    ("完成时限", 11, "date"),
    ("奖补政策及标准", 36, "text"),
    ("进展情况", 22, "text"),
    ("完成时间", 11, "date"),
    ("责任人", 8, "center"),
    ("联系电话", 12, "center"),
)
FILL_HEADERS = ("进展情况", "完成时间", "责任人", "联系电话")
TASK_HEADER_ROW = 3
TASK_FIRST_ROW = 4
DATE_FORMAT = 'yyyy"年"m"月"d"日"'
NO_DEADLINE = "未明确"

RULE_COLUMNS: tuple[tuple[str, float, str], ...] = (
    ("序号", 5, "center"),
    ("条款", 10, "center"),
    ("奖补项目", 16, "text"),
    ("方案原文", 40, "text"),
    ("适用情形", 10, "center"),
    ("要素", 10, "center"),
    ("对象", 18, "text"),
    ("界限用语", 14, "center"),
    ("数值", 15, "number"),
    ("原文依据", 18, "text"),
    ("标准说明", 40, "text"),
)

_SECTION_FONT = Font(name="宋体", size=11, bold=True)


# --- rule descriptions, from the engine's resolved parameters --------------------------------------

@dataclass(frozen=True)
class RuleTerm:
    """One figure of a rule as of the policy date (a row of the 奖补标准 sheet)."""

    rule: str
    variant: str  # "" or the choice value selecting it
    item: str  # 门槛 | 比例 | 定额 | 分档门槛 | 分档金额 | 单价 | 上限 | 累计上限
    subject: str  # what the figure applies to (input label)
    word: str  # boundary word of the plan ("" when the text has none)
    value: Decimal  # yuan for money, a fraction for rates, a number otherwise
    kind: str  # money | rate | count | years
    reference: str  # phrase of the original text
    text: str  # the figure in words


def _yuan(cents) -> Decimal:
    return Decimal(int(cents)) / 100


def money_text(cents) -> str:
    """1000000000 cents → '10,000,000元'; fractions of a yuan keep two places."""
    cents = int(cents)
    if cents % 100 == 0:
        return f"{cents // 100:,}元"
    return f"{_yuan(cents):,.2f}元"


def _value_text(kind: str, value) -> str:
    if kind == "money":
        return money_text(value)
    if kind == "rate":
        return percent(value)
    text = format(Decimal(str(value)).normalize(), "f")
    return text + ("年" if kind == "years" else "")


def _word_note(word: str) -> str:
    b = boundary(word)
    return f"“{word}”{'含' if b.inclusive else '不含'}本数"


def _variant_label(rule, variant: str) -> str:
    if not rule.switch:
        return ""
    label = rule.input(rule.switch).label
    return f"{label}为“{variant}”" if variant else f"{label}为空白"


def _body_terms(rule, variant: str, body: Body) -> list[RuleTerm]:
    terms = []
    for c in body.conditions:
        spec = rule.input(c.input)
        value = _yuan(c.threshold) if spec.kind == "money" else Decimal(str(c.threshold))
        text = f"{spec.label}{boundary(c.word).chinese}{_value_text(spec.kind, c.threshold)}（{_word_note(c.word)}）"
        terms.append(RuleTerm(rule.id, variant, "门槛", spec.label, c.word, value, spec.kind, c.reference or "", text))
    a = body.amount
    match a:
        case Rate() | Factor():
            subject = "+".join(rule.input(n).label for n in a.basis)
            word = a.rate_word or ""
            text = f"按{subject}的{percent(a.rate)}" + ("以内（为最高比例）" if word == "以内" else "")
            terms.append(RuleTerm(rule.id, variant, "比例", subject, word, Decimal(str(a.rate)), "rate", a.rate_ref or "", text))
        case Fixed():
            terms.append(RuleTerm(rule.id, variant, "定额", "每个", "", _yuan(a.amount), "money", a.ref or "",
                                  f"给予{money_text(a.amount)}"))
        case Tiers():
            spec = rule.input(a.basis)
            for t in a.tiers:
                sym = boundary(t.word).chinese
                thr = _yuan(t.threshold) if spec.kind == "money" else Decimal(str(t.threshold))
                text = f"{spec.label}{sym}{_value_text(spec.kind, t.threshold)}（{_word_note(t.word)}）的，给予{money_text(t.amount)}"
                terms.append(RuleTerm(rule.id, variant, "分档门槛", spec.label, t.word, thr, spec.kind, t.ref or "", text))
                terms.append(RuleTerm(rule.id, variant, "分档金额", spec.label, "", _yuan(t.amount), "money", t.ref or "",
                                      f"给予{money_text(t.amount)}"))
        case PerUnit():
            for u in a.units:
                label = rule.input(u.input).label
                terms.append(RuleTerm(rule.id, variant, "单价", label, "", _yuan(u.amount), "money", "",
                                      f"{label}每个{money_text(u.amount)}"))
        case _:
            raise TypeError(f"unhandled amount kind {a!r}")
    cap = body.limit
    if cap is not None:
        item = "累计上限" if cap.cumulative else "上限"
        word = cap.word or ""
        text = ("累计" if cap.cumulative else "") + f"{word}{money_text(cap.cents)}"
        terms.append(RuleTerm(rule.id, variant, item, "奖补金额", word, _yuan(cap.cents), "money", cap.reference or "", text))
    return terms


def rule_terms(rule_id: str, on=None, plan: Plan | None = None) -> list[RuleTerm]:
    """The rule's figures (thresholds with their boundary words, rates, caps) as of ``on``."""
    plan = plan or load_plan()
    resolved = resolve(rule_id, on=on, plan=plan)
    out: list[RuleTerm] = []
    for variant, body in resolved.variants.items():
        out.extend(_body_terms(resolved.rule, variant, body))
    return out


def _body_sentence(rule, body: Body, terms: list[RuleTerm]) -> str:
    conds = [t.text for t in terms if t.item == "门槛"]
    a = body.amount
    match a:
        case Tiers():
            amount = "；".join(t.text for t in terms if t.item == "分档门槛")
        case PerUnit():
            amount = "按" + "、".join(t.text for t in terms if t.item == "单价")
        case Rate() | Factor():
            amount = next(t.text for t in terms if t.item == "比例")
            amount += "计（可按核定比例，不超过该比例）" if a.rate_input else "计"
        case Fixed():
            amount = next(t.text for t in terms if t.item == "定额")
        case _:
            raise TypeError(f"unhandled amount kind {a!r}")
    caps = [t.text for t in terms if t.item in ("上限", "累计上限")]
    text = ("且".join(conds) + "的，") if conds else ""
    text += amount
    if caps:
        text += "，" + caps[0]
    return text


def rule_summary(rule_id: str, on=None, plan: Plan | None = None) -> str:
    """The rule in one sentence with its resolved figures, e.g.
    '农村产品上行奖励（一次性奖励）：上行网络销售额>10,000,000元（“超”不含本数）的，按上行网络销售额的1%以内（为最高比例）计，最高1,000,000元'."""
    plan = plan or load_plan()
    resolved = resolve(rule_id, on=on, plan=plan)
    rule = resolved.rule
    parts = []
    for variant, body in resolved.variants.items():
        sentence = _body_sentence(rule, body, _body_terms(rule, variant, body))
        label = _variant_label(rule, variant)
        parts.append(f"{label}：{sentence}" if label else sentence)
    head = f"{rule.name}（{rule.payment}）" if rule.payment else rule.name
    return f"{head}：" + "；".join(parts) + "。"


# --- units ---------------------------------------------------------------------------------------------

def unit_entry(unit: str, plan: Plan | None = None) -> dict:
    """The plan's department entry for a unit given by its name or short name."""
    plan = plan or load_plan()
    key = str(unit or "").strip()
    for d in plan.departments:
        if key in (d["name"], d.get("short")):
            return d
    names = "、".join(d.get("short") or d["name"] for d in plan.departments)
    raise InputError(f"单位“{unit}”不在方案点名的单位中（可用：{names}）")


def file_stem(unit: str, plan: Plan | None = None) -> str:
    """File name (without .xlsx) of a unit's task sheet: its short name if the plan gives one."""
    d = unit_entry(unit, plan)
    return d.get("short") or d["name"]


def unit_targets(unit: str, plan: Plan) -> list[Target]:
    """General targets (not tied to a measure) the unit is responsible for."""
    return [t for t in plan.targets if t.measure is None and (t.lead == unit or unit in t.cooperating)]


# --- layout helpers ---------------------------------------------------------------------------------

def _display_width(text: str) -> float:
    return sum(2.0 if unicodedata.east_asian_width(ch) in "WF" else 1.05 for ch in text)


def fit_height(values: Iterable, widths: Iterable[float], font_size: float = 11, minimum: float = 20) -> float:
    """Row height (points) for wrapped text, so the row prints whole in Excel, WPS and LibreOffice."""
    lines = 1
    for value, width in zip(values, widths):
        if value is None or value == "":
            continue
        text = value if isinstance(value, str) else str(value)
        if text.startswith("="):  # a formula shows a short number, not its text
            continue
        usable = max(width - 1.5, 2)
        n = sum(max(1, math.ceil(_display_width(part) / usable)) for part in text.split("\n"))
        lines = max(lines, n)
    return max(minimum, round(lines * font_size * 1.4 + 6, 1))


def _deadline(measure: Measure | None, targets: list[Target]):
    if measure is not None and measure.deadline:
        return measure.deadline
    dates = sorted(t.deadline for t in targets if t.deadline)
    return dates[0] if dates else None


def _responsible(lead: str | None, cooperating) -> str:
    text = f"牵头：{lead}" if lead else ""
    if cooperating:
        text += ("\n" if text else "") + f"配合：{'、'.join(cooperating)}"
    return text


def _write_row(ws, row: int, values: list, columns) -> None:
    widths = [c[1] for c in columns]
    for col, (value, (_head, _w, kind)) in enumerate(zip(values, columns), start=1):
        cell = ws.cell(row=row, column=col, value=value)
        sheets.body_cell(cell, "date" if kind == "date" and isinstance(value, dt.date) else ("center" if kind == "date" else kind))
        if kind == "date":
            cell.number_format = DATE_FORMAT
        if kind == "text":
            cell.alignment = sheets.TOP_LEFT
    ws.row_dimensions[row].height = fit_height(values, widths)


def _section(ws, row: int, text: str, ncols: int) -> None:
    cell = ws.cell(row=row, column=1, value=text)
    cell.font = _SECTION_FONT
    cell.alignment = sheets.LEFT
    for col in range(1, ncols + 1):
        ws.cell(row=row, column=col).border = sheets.BORDER
    ws.merge_cells(start_row=row, start_column=1, end_row=row, end_column=ncols)
    ws.row_dimensions[row].height = 22


def _note(ws, row: int, text: str, ncols: int) -> None:
    cell = ws.cell(row=row, column=1, value=text)
    cell.font = sheets.NOTE_FONT
    cell.alignment = sheets.TOP_LEFT
    ws.merge_cells(start_row=row, start_column=1, end_row=row, end_column=ncols)
    ws.row_dimensions[row].height = fit_height([text], [sum(c[1] for c in TASK_COLUMNS)], 10)


def write_task_sheet(ws, unit: str, plan: Plan, *, on=None, due=None, filler: str | None = None, heading: str | None = None,
                     named: tuple[str, list[Measure]] | None = None) -> dict:
    """The task list of ``unit``: its general targets and every measure it leads or cooperates on.

    ``named`` = (section title, measures): further measures listed with the role 涉及 (a county
    workbook's measures whose text names that county, e.g. 寿县's 国家电子商务进农村综合示范).

    Returns {"measures": [ids], "targets": [ids], "last_row": n}.  ``filler`` is the 填报单位 shown
    (default: the unit).
    """
    ncols = len(TASK_COLUMNS)
    subtitle = f"填报单位：{filler or unit}"
    if due:
        subtitle += f"　　报送截止日期：{_date_text(due)}"
    sheets.title(ws, heading or f"{plan.meta['title']}任务落实情况表", ncols, subtitle)
    sheets.header(ws, TASK_HEADER_ROW, [c[0] for c in TASK_COLUMNS], [c[1] for c in TASK_COLUMNS])
    row = TASK_FIRST_ROW
    n = 0
    measures = plan.measures_for(unit)
    targets = unit_targets(unit, plan)
    done_measures, done_targets = [], []
    if targets:
        _section(ws, row, "一、目标要求", ncols)
        row += 1
        for t in targets:
            n += 1
            role = "牵头" if t.lead == unit else "配合"
            values = [n, t.clause, t.text, role, _responsible(t.lead, t.cooperating), t.name, t.deadline or NO_DEADLINE, "",
                      None, None, None, None]
            _write_row(ws, row, values, TASK_COLUMNS)
            done_targets.append(t.id)
            row += 1
    current_task = None
    title, named_measures = named or ("", [])
    extra = [m for m in named_measures if m not in measures]
    for m in [*measures, *extra]:
        if m is (extra[0] if extra else None):
            _section(ws, row, title, ncols)
            row += 1
            current_task = None
        elif m.task_id != current_task and m in measures:
            current_task = m.task_id
            _section(ws, row, f"{m.task_id}　{m.task_title}", ncols)
            row += 1
        n += 1
        mt = plan.targets_for_measure(m.id)
        rules = plan.rules_for_measure(m.id)
        target_text = "\n".join(t.text for t in mt)
        summaries = [rule_summary(r.id, on=on, plan=plan) for r in rules]
        rule_text = "\n".join(f"{i}. {text}" if len(rules) > 1 else text for i, text in enumerate(summaries, start=1))
        values = [n, m.id, m.text, m.role_of(unit) or "涉及", _responsible(m.lead, m.cooperating), target_text,
                  _deadline(m, mt) or NO_DEADLINE, rule_text, None, None, None, None]
        _write_row(ws, row, values, TASK_COLUMNS)
        done_measures.append(m.id)
        row += 1
    last = row - 1
    if n == 0:
        _section(ws, row, "方案未给本单位分配工作措施。", ncols)
        last = row
        row += 1
    # the unit types a date into 完成时间
    done_col = get_column_letter([c[0] for c in TASK_COLUMNS].index("完成时间") + 1)
    dv = DataValidation(type="date", operator="greaterThan", formula1="36526", allow_blank=True)
    dv.error = "完成时间应为日期，如 2020-12-31"
    dv.errorTitle = "输入有误"
    dv.showErrorMessage = True
    ws.add_data_validation(dv)
    dv.add(f"{done_col}{TASK_FIRST_ROW}:{done_col}{max(last, TASK_FIRST_ROW)}")
    basis = f"政策日期{_date_text(on)}" if on else "现行方案"
    _note(
        ws,
        row + 1,
        "说明：1. 职责栏“牵头”指本单位为牵头单位，“配合”指本单位为配合单位"
        + ("，“涉及”指方案原文点名本县区、由其他单位牵头的措施" if extra else "")
        + "；2. 奖补标准按"
        + basis
        + "的方案参数列出，界限用语按《民法典》第一千二百五十九条理解（以上、以下、以内、届满、达到含本数，不满、超过、超、以外不含本数）；"
        "3. “进展情况”“完成时间”“责任人”“联系电话”由本单位填写后报市商务局。",
        ncols,
    )
    ws.freeze_panes = ws.cell(row=TASK_FIRST_ROW, column=1)
    sheets.page_setup(ws, f"{TASK_HEADER_ROW}:{TASK_HEADER_ROW}")
    return {"measures": done_measures, "targets": done_targets, "last_row": last}


def write_rules_sheet(ws, rule_ids: list[str], plan: Plan, *, on=None, filler: str = "") -> None:
    """One row per figure of each rule: its boundary word and resolved value as a number."""
    ncols = len(RULE_COLUMNS)
    sheets.title(ws, f"{plan.meta['title']}奖补标准", ncols, f"填报单位：{filler}" if filler else None)
    header_row = 3 if filler else 2
    sheets.header(ws, header_row, [c[0] for c in RULE_COLUMNS], [c[1] for c in RULE_COLUMNS])
    row = header_row + 1
    widths = [c[1] for c in RULE_COLUMNS]
    for i, rid in enumerate(rule_ids, start=1):
        rule = plan.rules[rid]
        first_row = row
        heights = []
        for j, term in enumerate(rule_terms(rid, on=on, plan=plan)):
            first = j == 0
            values = [
                i if first else None,
                rule.clause if first else None,
                rule.name if first else None,
                rule.text if first else None,
                _variant_label(rule, term.variant).split("为", 1)[-1] if rule.switch else "",
                term.item,
                term.subject,
                _word_note(term.word) if term.word else "",
                float(term.value),
                term.reference,
                term.text,
            ]
            for col, (value, (_h, _w, kind)) in enumerate(zip(values, RULE_COLUMNS), start=1):
                cell = ws.cell(row=row, column=col, value=value)
                if kind == "number":
                    sheets.body_cell(cell, "money")
                    cell.number_format = _number_format(term)
                else:
                    sheets.body_cell(cell, kind)
                    if kind == "text":
                        cell.alignment = sheets.TOP_LEFT
            heights.append(fit_height(values[4:], widths[4:]))
            row += 1
        # the rule's own cells (序号, 条款, 奖补项目, 方案原文) span its figure rows
        if row - first_row > 1:
            for col in range(1, 5):
                ws.merge_cells(start_row=first_row, start_column=col, end_row=row - 1, end_column=col)
        need = fit_height([i, rule.clause, rule.name, rule.text], widths[:4])
        extra = max(0.0, need - sum(heights)) / len(heights)
        for k, h in enumerate(heights):
            ws.row_dimensions[first_row + k].height = round(h + extra, 1)
    ws.freeze_panes = ws.cell(row=header_row + 1, column=1)
    sheets.page_setup(ws, f"{header_row}:{header_row}")


def _number_format(term: RuleTerm) -> str:
    if term.kind == "money":
        return sheets.MONEY_FORMAT if term.value != term.value.to_integral_value() else "#,##0"
    if term.kind == "rate":
        pct = term.value * 100
        return "0%" if pct == pct.to_integral_value() else "0.0##%"
    return "0" if term.value == term.value.to_integral_value() else "0.0##"


def _date_text(value) -> str:
    if isinstance(value, dt.datetime):
        value = value.date()
    if isinstance(value, dt.date):
        return f"{value.year}年{value.month}月{value.day}日"
    return str(value)


def department_workbook(unit: str, plan: Plan | None = None, *, on=None, due=None) -> Workbook:
    """The task sheet of one unit (name or short name) as an openpyxl Workbook."""
    plan = plan or load_plan()
    d = unit_entry(unit, plan)
    name = d["name"]
    wb = Workbook()
    ws = wb.active
    ws.title = TASK_SHEET
    info = write_task_sheet(ws, name, plan, on=on, due=due)
    unlock_inputs(ws, info["last_row"])
    owned = owned_targets(name, plan)
    if owned:
        write_done_sheet(wb.create_sheet(DONE_SHEET), name, owned, due=due)
    rule_ids = [r.id for mid in info["measures"] for r in plan.rules_for_measure(mid)]
    if rule_ids:
        write_rules_sheet(wb.create_sheet(RULES_SHEET), rule_ids, plan, on=on, filler=name)
    set_marker(wb, name)
    pin_properties(wb, f"{name}任务落实情况表")
    return wb


# --- department replies: 完成数 of the targets a department owns, marker, reading back ---------------------

DONE_SHEET = "完成数"
DONE_COLUMNS: tuple[tuple[str, float, str], ...] = (
    ("序号", 5, "center"),
    ("指标", 24, "text"),
    ("目标（方案原文）", 34, "text"),
    ("目标任务数", 11, "count"),
    ("单位", 6, "center"),
    ("完成时限", 12, "date"),
    ("完成数", 11, "count"),
    ("说明", 30, "text"),
)
DONE_HEADER_ROW = 3
DONE_FIRST_ROW = 4
DONE_VALUE_COL = 7  # G: 完成数, filled in by the department
#: the department reply's marker: hidden defined names (constant strings), as county workbooks carry theirs
DEPARTMENT_NAME = "XL_ECOM_DEPARTMENT"
DEPARTMENT_VERSION_NAME = "XL_ECOM_DEPARTMENT_VERSION"
DEPARTMENT_VERSION = "D1"
ISSUE_KIND = "部门"
COUNTY_UNIT = "各县区人民政府"
#: ledger tables of a department submission
TABLE_DONE = "部门完成数"  # rows {target, value}
TABLE_PROGRESS = "部门进展"  # rows {measure, role, progress, done, person, phone}
TABLE_COUNTY_PROGRESS = "县区进展"  # the same, from a county workbook's 工作任务 (unit: the county)
#: states of a measure in 部门进展
NOT_STARTED, IN_PROGRESS, DONE, OVERDUE = "未开始", "推进中", "已完成", "逾期"


def owned_targets(unit: str, plan: Plan) -> list[Target]:
    """Targets whose actual figure the department reports itself (完成数): it leads them (plan.yaml's
    ``departments.lead``, or for a measure's target the measure's lead), and no county input table
    counts them (annex columns and 全市网络销售额 come from the county files)."""
    if unit == COUNTY_UNIT:
        return []
    annex = {col.get("target") for col in plan.annex_columns}
    return [t for t in plan.targets if t.lead == unit and t.id not in annex and t.actual is None]


def _is_rate(t: Target) -> bool:
    return t.unit == "比例"


def unlock_inputs(ws, last_row: int) -> None:
    """The cells the department fills in (进展情况, 完成时间, 责任人, 联系电话) are unlocked."""
    from openpyxl.styles import Protection

    heads = [c[0] for c in TASK_COLUMNS]
    for head in FILL_HEADERS:
        col = heads.index(head) + 1
        for r in range(TASK_FIRST_ROW, max(last_row, TASK_FIRST_ROW) + 1):
            ws.cell(row=r, column=col).protection = Protection(locked=False)


def write_done_sheet(ws, unit: str, targets: list[Target], *, due=None) -> None:
    """完成数: one row per owned target; the department types 完成数 (a non-negative number)."""
    from openpyxl.styles import Protection

    ncols = len(DONE_COLUMNS)
    subtitle = f"填报单位：{unit}　　请在“完成数”一列填写截至报送日的累计完成数"
    if due:
        subtitle += f"　　报送截止日期：{_date_text(due)}"
    sheets.title(ws, f"{unit}牵头目标任务完成数", ncols, subtitle)
    sheets.header(ws, DONE_HEADER_ROW, [c[0] for c in DONE_COLUMNS], [c[1] for c in DONE_COLUMNS])
    r = DONE_FIRST_ROW
    for i, t in enumerate(targets, start=1):
        rate = _is_rate(t)
        values = [i, t.name, t.text, t.value, "%" if rate else t.unit, t.deadline or NO_DEADLINE, None,
                  "填小数或百分比，如 62%" if rate else "填数字，不写单位"]
        _write_row(ws, r, values, DONE_COLUMNS)
        for col in (4, DONE_VALUE_COL):
            ws.cell(row=r, column=col).number_format = "0%" if rate else "General"
        ws.cell(row=r, column=DONE_VALUE_COL).protection = Protection(locked=False)
        r += 1
    last = r - 1
    dv = DataValidation(type="decimal", operator="greaterThanOrEqual", formula1="0", allow_blank=True)
    dv.error = "完成数应为不小于0的数字（不写单位）"
    dv.errorTitle = "输入有误"
    dv.showErrorMessage = True
    ws.add_data_validation(dv)
    dv.add(f"G{DONE_FIRST_ROW}:G{max(last, DONE_FIRST_ROW)}")
    _note(ws, r + 1, "说明：完成数填截至报送日的累计数，只填数字（不写单位）；比例类指标填百分比（如 62%）。"
          "市级工作簿“完成情况”表按本表计算差额（目标任务数－完成数，为0或负数表示已完成）。", ncols)
    ws.freeze_panes = ws.cell(row=DONE_FIRST_ROW, column=1)
    ws.protection.sheet = True
    sheets.page_setup(ws, f"{DONE_HEADER_ROW}:{DONE_HEADER_ROW}")


def set_marker(wb, unit: str) -> None:
    from openpyxl.workbook.defined_name import DefinedName

    for name, value in ((DEPARTMENT_NAME, unit), (DEPARTMENT_VERSION_NAME, DEPARTMENT_VERSION)):
        if name in wb.defined_names:
            del wb.defined_names[name]
        wb.defined_names[name] = DefinedName(name, attr_text='"' + value.replace('"', '""') + '"', hidden=True)


def department_marker(wb) -> tuple[str | None, str | None]:
    """(unit, version) a department task sheet says it is, or (None, None) (works read-only)."""
    from xl_ecom.workflows.counties import _name_value

    return _name_value(wb, DEPARTMENT_NAME), _name_value(wb, DEPARTMENT_VERSION_NAME)


@dataclass
class Reply:
    """What one department file reports: rows for the ledger and the cells that could not be used."""

    unit: str
    done: list[tuple[int, dict]]  # (row, {target, value})
    progress: list[tuple[int, dict]]  # (row, {measure, role, progress, done, person, phone})
    problems: list[tuple[str, str, str, str]]  # (sheet, cell, reason, value)


def _parse_date(value) -> dt.date | None:
    """A typed date: a date cell, or text such as 2020-10-31 / 2020/10/31 / 2020年10月31日; else ValueError."""
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    text = str(value).strip()
    m = re.fullmatch(r"(\d{4})\s*[-/.年]\s*(\d{1,2})\s*[-/.月]\s*(\d{1,2})\s*日?", text)
    if not m:
        raise ValueError(text)
    return dt.date(int(m[1]), int(m[2]), int(m[3]))


def read_task_progress(ws, roles: dict[str, str | None]) -> tuple[list, list]:
    """进展情况 / 完成时间 / 责任人 / 联系电话 of the measures ``roles`` lists (measure id → the unit's
    role) on a task sheet written by :func:`write_task_sheet` (a department's, or a county
    workbook's 工作任务): ([(row, values)], [(sheet, cell, reason, value)]).  A 完成时间 that is not a
    date is a problem naming its cell; the rest of the row is still read."""
    heads = [c[0] for c in TASK_COLUMNS]
    col = {h: heads.index(h) for h in ("条款", "职责", *FILL_HEADERS)}
    progress_rows: list = []
    problems: list = []
    for r, row in enumerate(ws.iter_rows(min_row=TASK_FIRST_ROW, max_col=len(TASK_COLUMNS), values_only=True), start=TASK_FIRST_ROW):
        row = tuple(row) + (None,) * (len(TASK_COLUMNS) - len(row))
        key = str(row[col["条款"]] or "").strip()
        if key not in roles:
            continue
        text = row[col["进展情况"]]
        progress = str(text).strip() if text is not None else ""
        done_raw = row[col["完成时间"]]
        done = None
        if done_raw is not None and str(done_raw).strip():
            try:
                parsed = _parse_date(done_raw)
                done = parsed.isoformat() if parsed is not None else None
            except ValueError:
                letter = get_column_letter(col["完成时间"] + 1)
                reason = f"措施{key}的完成时间“{done_raw}”不是日期，请填写如 2020-10-31"
                problems.append((ws.title, f"{letter}{r}", reason, str(done_raw)))
        person, phone = (row[col[h]] for h in ("责任人", "联系电话"))
        progress_rows.append((r, {
            "measure": key, "role": roles[key], "progress": progress or None, "done": done,
            "person": None if person is None else str(person).strip() or None,
            "phone": None if phone is None else str(phone).strip() or None,
        }))
    return progress_rows, problems


def filled_progress(rows: list) -> bool:
    """Whether any row :func:`read_task_progress` read has something filled in."""
    return any(r["progress"] or r["done"] or r["person"] or r["phone"] for _n, r in rows)


def read_reply(wb, unit: str, plan: Plan) -> Reply:
    """Read a returned department file (openpyxl, read-only is fine): 完成数 by target and 进展情况 /
    完成时间 by measure.  Every unusable cell is a problem naming sheet, cell and reason; its value is
    not filed."""
    reply = Reply(unit, [], [], [])
    if TASK_SHEET not in wb.sheetnames:
        raise InputError(f"缺少“{TASK_SHEET}”工作表：部门任务表的结构已被改动")
    measures = {m.id: m for m in plan.measures_for(unit)}
    reply.progress, reply.problems = read_task_progress(wb[TASK_SHEET], {k: m.role_of(unit) for k, m in measures.items()})
    owned = {t.name: t for t in owned_targets(unit, plan)}
    if owned:
        if DONE_SHEET not in wb.sheetnames:
            raise InputError(f"缺少“{DONE_SHEET}”工作表：部门任务表的结构已被改动")
        ws = wb[DONE_SHEET]
        for r, row in enumerate(ws.iter_rows(min_row=DONE_FIRST_ROW, max_col=len(DONE_COLUMNS), values_only=True), start=DONE_FIRST_ROW):
            row = tuple(row) + (None,) * (len(DONE_COLUMNS) - len(row))
            t = owned.get(str(row[1] or "").strip())
            if t is None:
                continue
            value = row[DONE_VALUE_COL - 1]
            cell = f"{get_column_letter(DONE_VALUE_COL)}{r}"
            if value is None or (isinstance(value, str) and not value.strip()):
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float, Decimal)):
                reply.problems.append((DONE_SHEET, cell, f"“{t.name}”的完成数“{value}”不是数字，请只填数字（不写单位）", str(value)))
                continue
            number = Decimal(str(value))
            if not number.is_finite() or number < 0:
                reply.problems.append((DONE_SHEET, cell, f"“{t.name}”的完成数“{value}”应为不小于0的数字", str(value)))
                continue
            if _is_rate(t) and number > 1:
                reply.problems.append((DONE_SHEET, cell, f"“{t.name}”是比例，完成数“{value}”超过100%，请填百分比，如 62%", str(value)))
                continue
            reply.done.append((r, {"target": t.id, "value": float(number)}))
    return reply


def measure_state(progress: str | None, done: dt.date | None, deadline: dt.date | None, today: dt.date) -> str:
    """未开始 / 推进中 / 已完成 / 逾期: blank 进展情况 and no 完成时间 → 未开始; 完成时间 filled and ≤ today →
    已完成; otherwise 推进中; not 已完成 and the measure's 时限 has passed → 逾期."""
    if done is not None and done <= today:
        return DONE
    if deadline is not None and deadline < today:
        return OVERDUE
    if not (progress or "").strip() and done is None:
        return NOT_STARTED
    return IN_PROGRESS


@dataclass(frozen=True)
class MeasureState:
    measure: str
    task: str
    text: str
    lead: str
    deadline: dt.date | None
    progress: str | None
    done: dt.date | None
    state: str
    source: str  # the round the reply comes from ("" when none)


@dataclass
class DepartmentFigures:
    """The department replies standing in a round: target → (value, unit, round), lead measures' states."""

    targets: dict = field(default_factory=dict)
    measures: list = field(default_factory=list)


def _records(frame) -> list[dict]:
    if frame is None or not len(frame):
        return []
    return frame.astype(object).where(frame.notna(), None).to_dict("records")


def department_figures(ledger, plan: Plan | None = None, round_id: int | None = None, today: dt.date | None = None) -> DepartmentFigures:
    """From the ledger (each department's current reply in the round, else its newest earlier one; then
    the counties' own progress on their measures)."""
    from xl_ecom.workflows.cycle import round_rows

    plan = plan or load_plan()
    today = today or dt.date.today()
    out = DepartmentFigures()
    for rec in _records(round_rows(ledger, TABLE_DONE, round_id)):
        if rec.get("target") and rec.get("value") is not None:
            out.targets[rec["target"]] = (float(rec["value"]), rec.get("_unit"), rec.get("_round") or "")
    replies: dict[tuple[str, str], dict] = {}
    for rec in _records(round_rows(ledger, TABLE_PROGRESS, round_id)):
        if rec.get("measure") and rec.get("_unit"):
            replies[(rec["_unit"], rec["measure"])] = rec
    kinds = {d["name"]: d.get("kind") for d in plan.departments}
    for m in plan.measures:
        if m.lead == COUNTY_UNIT or kinds.get(m.lead) not in (None, "部门"):
            continue
        rec = replies.get((m.lead, m.id), {})
        done = dt.date.fromisoformat(rec["done"]) if rec.get("done") else None
        progress = rec.get("progress")
        deadline = _deadline(m, plan.targets_for_measure(m.id))  # the 完成时限 the task sheet shows
        out.measures.append(MeasureState(m.id, m.task_id, m.text, m.lead, deadline, progress, done,
                                         measure_state(progress, done, deadline, today), rec.get("_round") or ""))
    # what the counties wrote on their workbooks' 工作任务 (measures of 各县区人民政府, and those naming
    # the county): one row per county and measure it filled in, in the annex's county order
    by_id = {m.id: m for m in plan.measures}
    order = {c: i for i, c in enumerate(plan.counties)}
    county_rows = [rec for rec in _records(round_rows(ledger, TABLE_COUNTY_PROGRESS, round_id))
                   if rec.get("_unit") in order and rec.get("measure") in by_id
                   and (rec.get("progress") or rec.get("done") or rec.get("person") or rec.get("phone"))]
    measure_order = {m.id: i for i, m in enumerate(plan.measures)}
    for rec in sorted(county_rows, key=lambda r: (order[r["_unit"]], measure_order[r["measure"]])):
        m = by_id[rec["measure"]]
        done = dt.date.fromisoformat(rec["done"]) if rec.get("done") else None
        deadline = _deadline(m, plan.targets_for_measure(m.id))
        who = rec["_unit"] if rec.get("role") != "涉及" else f"{rec['_unit']}（涉及）"
        out.measures.append(MeasureState(m.id, m.task_id, m.text, who, deadline, rec.get("progress"), done,
                                         measure_state(rec.get("progress"), done, deadline, today), rec.get("_round") or ""))
    return out


def figures_beside(workbook, plan: Plan | None = None, today: dt.date | None = None) -> DepartmentFigures | None:
    """The department figures of the ledger beside the city workbook, or None when it has no ledger yet
    (nothing is created)."""
    from xl_ecom.ledger import default_path, open_ledger

    if not default_path(workbook).is_file():
        return None
    with open_ledger(workbook) as ledger:
        return department_figures(ledger, plan, today=today)


# --- reproducible files ---------------------------------------------------------------------------------

def pin_properties(wb: Workbook, title: str) -> None:
    props = wb.properties
    props.creator = "淮南市商务局（xl-ecom）"
    props.lastModifiedBy = None
    props.title = title
    props.created = PINNED_TIME
    props.modified = PINNED_TIME


_MODIFIED = re.compile(rb"(<dcterms:modified[^>]*>)[^<]*(</dcterms:modified>)")


def workbook_bytes(wb: Workbook) -> bytes:
    """The .xlsx package, byte for byte reproducible: openpyxl stamps the clock into core.xml and
    the zip entries; both are pinned."""
    for ws in wb.worksheets:
        # openpyxl derives <sheetFormatPr outlineLevelCol> from the previous save's column pass;
        # run that pass first so the first and any later save of a workbook write the same XML
        ws.column_dimensions.to_tree()
    raw = io.BytesIO(sheets.with_cached_values(wb))  # formulas carry the engine's values
    stamp = PINNED_TIME.strftime("%Y-%m-%dT%H:%M:%SZ").encode()
    out = io.BytesIO()
    with zipfile.ZipFile(raw) as src, zipfile.ZipFile(out, "w") as dst:
        for item in src.infolist():
            data = src.read(item.filename)
            if item.filename == "docProps/core.xml":
                data = _MODIFIED.sub(rb"\g<1>" + stamp + rb"\g<2>", data)
            info = zipfile.ZipInfo(item.filename, date_time=ZIP_DATE_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = 0
            info.external_attr = 0
            dst.writestr(info, data, compress_type=zipfile.ZIP_DEFLATED, compresslevel=6)
    return out.getvalue()


def check_not_open(path: Path) -> None:
    """Refuse to overwrite a file Excel or WPS has open (its ``~$`` lock file is present)."""
    path = Path(path)
    for lock in (path.with_name("~$" + path.name), path.with_name("~$" + path.name[2:])):
        if len(lock.name) > 2 and lock.exists() and lock != path:
            raise XlEcomError(f"文件“{path}”正在被 Excel 或 WPS 打开（发现锁定文件 {lock.name}），请关闭后重试。")


def save_workbook(wb: Workbook, path: Path) -> Path:
    """Write atomically (temporary file in the same folder, then rename)."""
    return save_bytes(workbook_bytes(wb), path)


def issue_workbook(wb: Workbook, path: Path, ledger, unit: str, kind: str) -> Path:
    """Save ``wb`` as ``path``: with a ledger, recorded as issued to ``unit`` and carrying the issue's
    token (the record keeps the hash of the file as written); without one, as it is."""
    if ledger is None:
        return save_workbook(wb, path)
    from xl_ecom.workflows.counties import set_token

    def render(token: str) -> bytes:
        set_token(wb, token)
        return workbook_bytes(wb)

    _issue, data = ledger.issue_file(unit, kind, Path(path).name, render)
    return save_bytes(data, path)


def save_bytes(data: bytes, path: Path) -> Path:
    """Write ``data`` atomically as ``path`` (temporary file in the same folder, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    from xl_ecom.ooxml.safeio import remove_stale_temporaries, write_new

    remove_stale_temporaries(path.parent)
    write_new(path, data)  # generated files follow the user's umask
    return path


# --- export ---------------------------------------------------------------------------------------------

from xl_ecom.common.progress import Progress  # noqa: E402 (the one progress protocol)


def make_department_sheets(out_dir, plan: Plan | None = None, on=None, *, due=None, progress: Progress | None = None,
                           ledger=None, workbook=None, db: str | None = None) -> list[Path]:
    """Write ``<out_dir>/部门任务表/<单位>.xlsx`` for every unit the plan names; returns the paths.

    With a ledger (``ledger``, or opened beside the city ``workbook`` / at ``db``) each department's file
    (kind 部门 in plan.yaml) is recorded as issued (``ledger.issue_file(单位, "部门", 文件名, render)``) and
    carries the token, as county workbooks do (:func:`xl_ecom.workflows.counties.set_token`)."""
    plan = plan or load_plan()
    folder = Path(out_dir) / SUBDIR
    targets = [(d, folder / f"{d.get('short') or d['name']}.xlsx") for d in plan.departments]
    for _d, path in targets:
        check_not_open(path)
    own = None
    if ledger is None and (workbook is not None or db):
        from xl_ecom.ledger import open_ledger

        ledger = own = open_ledger(workbook, db)
    written = []
    try:
        for i, (d, path) in enumerate(targets, start=1):
            if progress:
                progress(d.get("short") or d["name"], i, len(targets))
            wb = department_workbook(d["name"], plan, on=on, due=due)
            issue_workbook(wb, path, ledger if d.get("kind") == ISSUE_KIND else None, d["name"], ISSUE_KIND)
            written.append(path)
    finally:
        if own is not None:
            own.close()
    return written


# --- command line ---------------------------------------------------------------------------------------

def cli_context(args) -> tuple[Path, object, object]:
    """(output folder, policy date, 报送截止日期) from --out/--workbook; reads 设置 when a workbook is given."""
    if getattr(args, "workbook", None):
        from xl_ecom.workflows.settings import SettingsError, output_dir, read_settings

        workbook = Path(args.workbook)
        if not workbook.is_file():
            raise XlEcomError(f"找不到工作簿：{workbook}")
        try:
            settings = read_settings(workbook)
        except SettingsError as exc:
            raise XlEcomError(str(exc)) from None
        out = Path(args.out) if args.out else output_dir(settings, workbook)
        return out, settings.get("政策日期"), settings.get("报送截止日期")
    try:
        from xl_ecom.workflows.settings import SETTINGS_DEFAULTS
    except ImportError:  # pragma: no cover - settings is part of the package
        SETTINGS_DEFAULTS = {}
    out = Path(args.out) if args.out else Path.cwd() / DEFAULT_OUT
    return out, SETTINGS_DEFAULTS.get("政策日期"), SETTINGS_DEFAULTS.get("报送截止日期")


def _add_common(parser) -> None:
    parser.add_argument("--out", metavar="DIR", help=f"输出文件夹（默认：工作簿旁或当前文件夹下的“{DEFAULT_OUT}”）")
    parser.add_argument("--workbook", metavar="WB", help="市级工作簿：从其“设置”表读取政策日期、输出文件夹和报送截止日期")


def run_export_cli(args, make, label: str, subdir: str, stdout=None, stderr=None) -> int:
    """Shared body of `xl-ecom departments` and `xl-ecom counties`: ``make(folder, on=, due=)``."""
    out = stdout or sys.stdout
    err = stderr or sys.stderr
    try:
        folder, on, due = cli_context(args)
        paths = make(folder, on=on, due=due)
    except XlEcomError as exc:
        print(f"错误：{exc}", file=err)
        return 2
    print(f"已生成{label}{len(paths)}个，在 {folder / subdir}：", file=out)
    for p in paths:
        print(f"  {p.name}", file=out)
    return 0


def make_for_cli(args):
    """make_department_sheets with the ledger the command line names: ``--db``, else beside ``--workbook``."""
    workbook, db = getattr(args, "workbook", None), getattr(args, "db", None)

    def make(folder, **kwargs):
        return make_department_sheets(folder, workbook=workbook, db=db, **kwargs)

    return make


def run_cli(args, stdout=None, stderr=None) -> int:
    return run_export_cli(args, make_for_cli(args), "部门任务表", SUBDIR, stdout, stderr)


def add_cli(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "departments",
        help="生成部门任务表：每个单位一个 .xlsx",
        description=f"为方案点名的每个单位生成任务落实情况表，写入输出文件夹的“{SUBDIR}”子文件夹。",
    )
    _add_common(parser)
    parser.add_argument(
        "--db", metavar="URL",
        help="台账数据库（如 postgresql://用户:密码@主机/库名）；默认为 --workbook 旁的“<工作簿名>.台账.sqlite”。"
        "指定 --workbook 或 --db 时，每个部门的任务表都登记为已下发并带下发凭证，汇总时据此核对单位",
    )
    parser.set_defaults(func=run_cli)
    return parser
