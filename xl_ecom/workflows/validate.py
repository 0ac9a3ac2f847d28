"""校验数据: check the input tables and the plan; list each problem with its place and a Chinese reason.

The per-row checks here (:func:`check_row`, :func:`check_table`) are the only ones: collect runs
them on returned county workbooks before merging, validate runs them on the city workbook.

- CLI: ``xl-ecom validate WORKBOOK`` prints the list; exit 1 when any 错误.
- Excel: :func:`write_validation_sheet` writes the 校验结果 sheet (openpyxl workbook or xlwings Book).
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from openpyxl.utils import get_column_letter
from openpyxl.utils.datetime import from_excel

from xl_ecom.common.errors import InputError, XlEcomError
from xl_ecom.common.problems import ERROR, WARNING, Problem
from xl_ecom.ooxml import safeio
from xl_ecom.policy import Plan, load_plan
from xl_ecom.policy.check import WARNING as PLAN_WARNING
from xl_ecom.policy.check import check_plan
from xl_ecom.rules import engine
from xl_ecom.rules.money import MAX_COUNT, MAX_YUAN, brief, describe, parse_number, to_cents
from xl_ecom.workflows import layout
from xl_ecom.workflows.tables import TABLES, Award, Column, InputTable

ERROR_VALUES = {"#NULL!", "#DIV/0!", "#VALUE!", "#REF!", "#NAME?", "#NUM!", "#N/A", "#GETTING_DATA", "#SPILL!", "#CALC!"}
EXCEL_TEXT_LIMIT = 32767  # characters in one cell
VALIDATION_HEADERS = ("序号", "级别", "文件", "工作表", "单元格", "问题")


@dataclass
class RowResult:
    """One data row of an input table after checking."""

    row: int  # sheet row number
    values: dict  # column key -> clean value (what collect writes)
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any(p.is_error for p in self.problems)


@dataclass
class TableCheck:
    table: InputTable
    sheet: str
    problems: list[Problem] = field(default_factory=list)  # sheet-level (header, missing)
    rows: list[RowResult] = field(default_factory=list)  # every non-blank row, in sheet order
    structure_ok: bool = True

    @property
    def accepted(self) -> list[RowResult]:
        return [r for r in self.rows if r.ok]

    @property
    def rejected(self) -> list[RowResult]:
        return [r for r in self.rows if not r.ok]

    def all_problems(self) -> list[Problem]:
        out = list(self.problems)
        for r in self.rows:
            out.extend(r.problems)
        return out


# ---------------------------------------------------------------------------------------------
# one value
# ---------------------------------------------------------------------------------------------


def _blank(value) -> bool:
    return value is None or (isinstance(value, str) and value.strip(" \u3000\t\r\n") == "")


def _shown(value) -> str:
    if isinstance(value, dt.datetime):
        return value.strftime("%Y-%m-%d") if value.time() == dt.time() else value.isoformat(sep=" ")
    if isinstance(value, dt.date):
        return value.isoformat()
    return describe(value)


def _number(value: Decimal):
    """A parsed number as written into a cell (int when whole)."""
    return int(value) if value == value.to_integral_value() else float(value)


_DATE_TEXT = re.compile(r"^\s*(\d{4})\s*[-/.年]\s*(\d{1,2})\s*[-/.月]\s*(\d{1,2})\s*日?\s*$")


#: what a county workbook's award cell shows when a number column holds text (= counties.FLAG_NUMBER)
TEXT_NUMBER_FLAG = "请填数字"


def check_value(column: Column, raw, counties, *, text_numbers: bool = True) -> tuple[object, list[tuple[str, str]]]:
    """(clean value, [(severity, message)]) for one cell.  Messages name the header and value.

    ``text_numbers=False`` (returned county workbooks): text in a number column ("50万") is an
    error, as the county file's own award formula shows 请填数字 for it and leaves the row out of
    the county's totals; the city reads the row the same way.  With True (the city workbook,
    whose awards are computed by the engine) such text is read as its number with a 警告."""
    label = column.header
    issues: list[tuple[str, str]] = []
    if isinstance(raw, str) and raw.strip() in ERROR_VALUES:
        return None, [(ERROR, f"{label}是错误值“{raw.strip()}”，请改为实际数据")]
    if _blank(raw):
        if column.required:
            return None, [(ERROR, f"必填项“{label}”为空")]
        return None, []
    kind = column.kind
    if kind == "county":
        text = _shown(raw).strip(" \u3000")
        if text not in counties:
            return text, [(ERROR, f"县区“{text}”不是淮南市的县区（应为：{'、'.join(counties)}）")]
        return text, []
    if kind == "text":
        if isinstance(raw, bool):
            return ("是" if raw else "否"), []
        text = raw if isinstance(raw, str) else _shown(raw)
        if len(text) > EXCEL_TEXT_LIMIT:
            return text, [(ERROR, f"{label}有{len(text)}个字符，超过 Excel 单元格上限{EXCEL_TEXT_LIMIT}个字符")]
        cleaned = safeio.clean_text(text)
        if cleaned != text:
            issues.append((WARNING, f"{label}“{cleaned}”含有不可见的控制字符，已删除"))
            text = cleaned
        if safeio.is_formula_like(text):
            issues.append((WARNING, f"{label}“{text}”以公式符号开头，已按文本保存，不会作为公式执行"))
        return text, issues
    if kind == "choice":
        text = _shown(raw).strip(" \u3000") if not isinstance(raw, bool) else ("是" if raw else "否")
        if text not in column.choices:
            return text, [(ERROR, f"{label}“{text}”无效，应为：{'、'.join(column.choices)}")]
        return text, []
    if kind == "date":
        if isinstance(raw, dt.datetime):
            return raw, []
        if isinstance(raw, dt.date):
            return dt.datetime.combine(raw, dt.time()), []
        if isinstance(raw, str):
            m = _DATE_TEXT.match(raw)
            if m:
                try:
                    value = dt.datetime(int(m.group(1)), int(m.group(2)), int(m.group(3)))
                except ValueError:
                    return raw, [(ERROR, f"{label}“{raw}”不是有效日期")]
                return value, [(WARNING, f"{label}“{raw}”是文本，已按日期{value.date().isoformat()}读取")]
        if isinstance(raw, (int, float)) and not isinstance(raw, bool) and 36526 <= raw <= 73050:
            value = from_excel(raw)
            return value, [(WARNING, f"{label}“{_shown(raw)}”是数字，已按日期{value.date().isoformat()}读取")]
        return raw, [(ERROR, f"{label}“{_shown(raw)}”不是日期（应填写如 2020-06-30）")]
    # numeric kinds
    is_text = isinstance(raw, str)
    if is_text and not text_numbers:
        try:
            number = parse_number(raw, label)
            hint = f"（如 {describe(_number(number))}）" if number is not None and abs(number) <= MAX_YUAN else ""
        except InputError:
            hint = ""
        return raw, [(ERROR, f"{label}填写的是文本“{brief(raw)}”，不是数字：县区工作簿中该行的奖补金额显示“{TEXT_NUMBER_FLAG}”，"
                             f"不计入县区合计，市级汇总同样不计入该行；请改填数字{hint}")]
    try:
        number = parse_number(raw, label)
        if kind == "money" and number is not None and (number < 0 or number > MAX_YUAN):
            to_cents(raw, label)  # raises with the money module's message (negative, implausibly large)
    except InputError as exc:
        if len(describe(raw)) > 40:  # a 400-digit number: name it, briefly
            return raw, [(ERROR, f"{label}“{brief(raw)}”不是合理的数值（金额以元为单位，不超过1万亿元）")]
        return raw, [(ERROR, str(exc))]
    if isinstance(raw, bool):
        return raw, [(ERROR, f"{label}“{raw}”不是数值")]
    if number is None:  # text the money parser reads as blank (only spaces)
        return None, []
    if number < 0:
        return raw, [(ERROR, f"{label}“{_shown(raw)}”不能为负数")]
    if kind in ("count", "years") and number > MAX_COUNT:
        return raw, [(ERROR, f"{label}“{brief(raw)}”超过{describe(int(MAX_COUNT))}，不是合理的数值，请核对")]
    if kind == "rate" and number > 1:
        return raw, [(ERROR, f"{label}“{brief(raw)}”超过100%（比例请写作小数或百分数，如 0.01 或 1%）")]
    if kind == "count" and number != number.to_integral_value():
        return raw, [(ERROR, f"{label}“{_shown(raw)}”应为整数")]
    value = _number(number) if is_text else raw
    if is_text:
        issues.append((WARNING, f"{label}填写的是文本“{raw}”，已按数值{describe(value)}读取（数值单元格请填写数字）"))
    return value, issues


# ---------------------------------------------------------------------------------------------
# one row
# ---------------------------------------------------------------------------------------------


_RATE_AWARDS: dict[tuple[str, int], list] = {}


def _rate_awards(table: InputTable) -> list[tuple[Award, list[str]]]:
    """(award, rate columns) for the awards of ``table`` whose rule takes a rate from a column."""
    key = (table.key, id(table))
    if key not in _RATE_AWARDS:
        found = []
        for award in table.awards:
            rule = engine.get_rule(award.rule)
            rate_keys = [k for name, k in award.inputs.items() if rule.input(name).kind == "rate" and not str(k).startswith("=")]
            if rate_keys:
                found.append((award, rate_keys))
        _RATE_AWARDS[key] = found
    return _RATE_AWARDS[key]


def _rule_issues(table: InputTable, values: dict, cells: dict, sheet: str, file: str) -> list[Problem]:
    """Rule-level checks through the engine (rate ceilings) for awards that take a rate from a column."""
    out = []
    for award, rate_keys in _rate_awards(table):
        if all(values.get(k) is None for k in rate_keys):
            continue
        kwargs = {name: (key[1:] if str(key).startswith("=") else values.get(key)) for name, key in award.inputs.items()}
        try:
            engine.calculate(award.rule, **kwargs)
        except InputError as exc:
            key = next(k for k in rate_keys if values.get(k) is not None)
            out.append(Problem(sheet, cells[key], str(exc), ERROR, file))
    return out


def check_row(
    table: InputTable,
    row: int,
    raw: dict,
    *,
    counties,
    sheet: str | None = None,
    file: str = "",
    expected_county: str | None = None,
    formulas: dict | None = None,
    first_col: int = 1,
    text_numbers: bool = True,
) -> RowResult:
    """Check one row (``raw``: column key -> cell value as read) of ``table`` at sheet row ``row``.

    ``formulas`` maps A1 refs of formula cells to their formula text (returned files: formulas are
    not trusted; the cached value is used and reported, a formula without one is an error).
    ``expected_county``: the county the file belongs to (collect).  ``text_numbers``: see
    :func:`check_value`."""
    sheet = sheet or table.sheet
    formulas = formulas or {}
    result = RowResult(row, {})
    cells = {}
    for i, col in enumerate(table.columns):
        ref = f"{get_column_letter(first_col + i)}{row}"
        cells[col.key] = ref
        value = raw.get(col.key)
        if col.kind == "county" and expected_county and _blank(value) and ref not in formulas:
            result.values[col.key] = expected_county
            result.problems.append(Problem(sheet, ref, f"县区为空，按本文件所属的“{expected_county}”计入", WARNING, file))
            continue
        formula = formulas.get(ref)
        if formula is not None:
            if value is None:
                result.problems.append(
                    Problem(sheet, ref, f"{col.header}是公式“{formula}”，没有保存的计算结果，无法核对（公式不予执行），"
                            "请改填数值", ERROR, file)
                )
                result.values[col.key] = None
                continue
            result.problems.append(
                Problem(sheet, ref, f"{col.header}是公式“{formula}”，已按其保存的计算结果“{_shown(value)}”读取"
                        "（公式不予执行）", WARNING, file)
            )
        clean, issues = check_value(col, value, counties, text_numbers=text_numbers)
        result.values[col.key] = clean
        for severity, message in issues:
            result.problems.append(Problem(sheet, ref, message, severity, file))
        if col.kind == "county" and expected_county and clean and not issues and clean != expected_county:
            result.problems.append(
                Problem(sheet, ref, f"县区“{clean}”与本文件所属的“{expected_county}”不符，该行未汇总", ERROR, file)
            )
    if all(p.severity != ERROR for p in result.problems):
        result.problems.extend(_rule_issues(table, result.values, cells, sheet, file))
    return result


def _key_part(value) -> str:
    if value is None:
        return ""
    if isinstance(value, (dt.datetime, dt.date)):
        return _shown(value)
    if isinstance(value, str):
        return value.strip(" \u3000\t\r\n")
    return describe(value)


def mark_duplicates(table: InputTable, rows: list[RowResult], sheet: str, file: str = "", first_col: int = 1) -> None:
    """Rows (without errors) whose unique key repeats an earlier one get an error."""
    if not table.unique:
        return
    seen: dict[tuple, int] = {}
    keys = list(table.unique)
    col0 = [c.key for c in table.columns].index(keys[0])
    for r in rows:
        if not r.ok:
            continue
        key = tuple(_key_part(r.values.get(k)) for k in keys)
        if key in seen:
            shown = "、".join(f"{table.column(k).header}“{v}”" for k, v in zip(keys, key) if v)
            ref = f"{get_column_letter(first_col + col0)}{r.row}"
            r.problems.append(Problem(sheet, ref, f"与第{seen[key]}行重复（{shown}），重复行未计入", ERROR, file))
        else:
            seen[key] = r.row


# ---------------------------------------------------------------------------------------------
# one sheet
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReadCell:
    """One cell of a :class:`ReadSheet`: what the checks read of an openpyxl cell."""

    row: int
    column: int
    value: Any

    @property
    def coordinate(self) -> str:
        return f"{get_column_letter(self.column)}{self.row}"


class ReadSheet:
    """An input sheet of a returned file as the checks read it: its values from the header row
    down, read by :meth:`xl_ecom.ooxml.package.Package.rows` with ``data_only`` (cached results, as
    openpyxl's ``data_only=True`` gives them, and the formula cells in :attr:`formulas`, read in the
    same pass) — several times faster than openpyxl's own reader on the 200 pre-formatted rows of
    each sheet.  Offers what :func:`check_table` uses of a worksheet: ``title``, ``cell()``,
    ``iter_rows()``, ``max_row``; pass check_table its ``formulas`` with it (its cells carry no data
    type to find them by)."""

    def __init__(self, pkg, title: str, ncols: int, first_row: int = layout.INPUT_HEADER_ROW):
        self.title = title
        self.first_row = first_row
        self.ncols = ncols
        #: A1 ref -> "=formula" of the formula cells read (what check_table's ``formulas`` takes)
        self.formulas: dict[str, str] = {}
        self._rows = pkg.rows(title, first_row, ncols, data_only=True, formulas=self.formulas)

    @property
    def max_row(self) -> int:
        return self.first_row + len(self._rows) - 1

    def cell(self, row: int, column: int) -> ReadCell:
        i = row - self.first_row
        value = self._rows[i][column - 1] if 0 <= i < len(self._rows) and column <= self.ncols else None
        return ReadCell(row, column, value)

    def iter_rows(self, min_row: int = 1, max_col: int | None = None):
        ncols = min(max_col or self.ncols, self.ncols)
        for i in range(max(min_row - self.first_row, 0), len(self._rows)):
            r = self.first_row + i
            values = self._rows[i]
            yield tuple(ReadCell(r, c, values[c - 1]) for c in range(1, ncols + 1))


def check_header(ws, table: InputTable, file: str = "") -> list[Problem]:
    out = []
    for i, expected in enumerate(table.headers, start=1):
        found = ws.cell(row=layout.INPUT_HEADER_ROW, column=i).value
        text = "" if found is None else str(found).strip()
        if text != expected:
            ref = f"{get_column_letter(i)}{layout.INPUT_HEADER_ROW}"
            out.append(
                Problem(
                    ws.title,
                    ref,
                    f"表头应为“{expected}”，现为“{text or '（空白）'}”：表格结构被改动（插入、删除或改名了列），该表无法读取",
                    ERROR,
                    file,
                )
            )
    return out


def _read_rows(ws, table: InputTable, formula_types: bool, extra_cols: int = 0):
    """(row number, {key: value}, {ref: formula}, extra cells) for each row from INPUT_FIRST_ROW
    that has data; ``extra_cols`` more cells to the right (the award columns) come as cells."""
    ncol = len(table.columns)
    keys = [c.key for c in table.columns]
    data_cols = [i for i, c in enumerate(table.columns) if c.kind != "county"]
    for r, cells in enumerate(ws.iter_rows(min_row=layout.INPUT_FIRST_ROW, max_col=ncol + extra_cols), start=layout.INPUT_FIRST_ROW):
        values = [c.value for c in cells[:ncol]] + [None] * (ncol - len(cells[:ncol]))
        if all(_blank(values[i]) for i in data_cols):
            continue
        formulas = {}
        if formula_types:
            for c in cells[:ncol]:
                if c.data_type == "f":
                    formulas[c.coordinate] = str(c.value)
                    values[c.column - 1] = None
        yield r, dict(zip(keys, values)), formulas, cells[ncol:]


def _award_columns_present(ws, table: InputTable) -> list[tuple[int, Award]]:
    """(0-based offset after the input columns, award) for award columns whose header is in place."""
    base = len(table.columns)
    out = []
    for j, award in enumerate(table.awards):
        text = ws.cell(row=layout.INPUT_HEADER_ROW, column=base + 1 + j).value
        if str(text or "").strip() == award.header:
            out.append((j, award))
    return out


def check_table(
    ws,
    table: InputTable,
    *,
    counties,
    file: str = "",
    expected_county: str | None = None,
    formulas: dict | None = None,
    check_awards: bool = False,
    text_numbers: bool = True,
) -> TableCheck:
    """Header, every row, duplicates.  ``formulas``: A1 ref -> formula of the sheet (untrusted files,
    opened data_only); without it, formula cells of a formula-mode workbook are found by type.
    ``check_awards``: an award cell of a data row that is not a formula (typed over) is a 警告.
    ``text_numbers=False``: text in a number column is an error (returned county workbooks, see
    :func:`check_value`)."""
    result = TableCheck(table, ws.title)
    result.problems = check_header(ws, table, file)
    if result.problems:
        result.structure_ok = False
        return result
    by_type = formulas is None
    awards = _award_columns_present(ws, table) if check_awards else []
    extra = max((j + 1 for j, _ in awards), default=0)
    for r, raw, found, extra_cells in _read_rows(ws, table, by_type, extra):
        f = found if by_type else (formulas or {})
        row = check_row(
            table, r, raw, counties=counties, sheet=ws.title, file=file, expected_county=expected_county, formulas=f,
            text_numbers=text_numbers,
        )
        for j, award in awards:
            cell = extra_cells[j] if j < len(extra_cells) else None
            ref = f"{get_column_letter(len(table.columns) + 1 + j)}{r}"
            is_formula = (cell is not None and cell.data_type == "f") if by_type else ref in (formulas or {})
            if not is_formula:
                shown = "空白" if cell is None or cell.value is None else f"“{_shown(cell.value)}”"
                row.problems.append(
                    Problem(ws.title, ref, f"{award.header}不是公式（现为{shown}），可能被手工改写；"
                            "请用“刷新”或重新汇总恢复按方案计算的公式", WARNING, file)
                )
        result.rows.append(row)
    mark_duplicates(table, result.rows, ws.title, file)
    return result


# ---------------------------------------------------------------------------------------------
# the workbook
# ---------------------------------------------------------------------------------------------


class _GridCell:
    __slots__ = ("value", "row", "column")

    def __init__(self, value, row: int, column: int):
        self.value = value
        self.row = row
        self.column = column

    @property
    def data_type(self) -> str:  # values read through Excel are results, never formulas
        return "n" if isinstance(self.value, (int, float)) else "s"

    @property
    def coordinate(self) -> str:
        return f"{get_column_letter(self.column)}{self.row}"


class _GridSheet:
    """The few worksheet calls the checks make, over the values of an xlwings sheet's used range."""

    def __init__(self, title: str, values, first_row: int = 1, first_col: int = 1):
        self.title = title
        self._values = values or []
        self._r0 = first_row
        self._c0 = first_col

    def cell(self, row: int, column: int) -> _GridCell:
        i, j = row - self._r0, column - self._c0
        value = None
        if 0 <= i < len(self._values) and 0 <= j < len(self._values[i]):
            value = self._values[i][j]
        return _GridCell(value, row, column)

    def iter_rows(self, min_row: int, max_col: int):
        last = self._r0 + len(self._values) - 1
        for r in range(min_row, last + 1):
            yield tuple(self.cell(r, c) for c in range(1, max_col + 1))


class _XlwingsBook:
    """An xlwings Book seen through _GridSheet (the Excel button validates the open workbook)."""

    def __init__(self, book):
        self._book = book
        self.sheetnames = [s.name for s in book.sheets]

    def __getitem__(self, name: str) -> _GridSheet:
        sheet = self._book.sheets[name]
        used = sheet.used_range
        values = used.options(ndim=2).value
        return _GridSheet(name, values, used.row, used.column)


def plan_problems(plan: Plan | None = None) -> list[Problem]:
    """The lead's plan check (xl_ecom.policy.check.check_plan), as Problems: its 警告 are 警告, notes are left out."""
    out = []
    for finding in check_plan(plan):
        if finding.severity == PLAN_WARNING:
            out.append(Problem(message=finding.message, severity=WARNING, file="方案", subject=finding.subject))
    return out


def validate_workbook(
    path_or_wb,
    plan: Plan | None = None,
    *,
    tables=TABLES,
    include_plan: bool = True,
    check_awards: bool | None = None,
) -> list[Problem]:
    """Every problem in the input tables of the city workbook, then the plan's own warnings.

    ``path_or_wb``: a path (opened for values, through the untrusted-file checks: formulas are
    reported with their saved results), an openpyxl Workbook, or an xlwings Book (the values Excel
    shows).

    ``check_awards``: report award cells that are not formulas (typed over).  By default on for a
    path (formulas are read from the file) and off for workbook objects, which may be snapshots
    holding values only; pass True for an openpyxl workbook loaded with its formulas."""
    plan = plan or load_plan()
    counties = plan.counties
    formulas_by_sheet = None
    if isinstance(path_or_wb, (str, Path)):
        wb = safeio.open_untrusted(path_or_wb)
        formulas_by_sheet = wb.untrusted_report.formulas
    elif hasattr(path_or_wb, "sheetnames"):  # openpyxl
        wb = path_or_wb
    else:  # xlwings Book
        wb = _XlwingsBook(path_or_wb)
    if check_awards is None:
        check_awards = formulas_by_sheet is not None
    if formulas_by_sheet is None and (getattr(wb, "_data_only", False) or isinstance(wb, _XlwingsBook)):
        check_awards = False  # values only: a formula cannot be told from a typed number
    problems: list[Problem] = []
    for table in tables:
        if table.sheet not in wb.sheetnames:
            problems.append(Problem(table.sheet, "", f"缺少录入表“{table.sheet}”（{table.title}）", ERROR))
            continue
        ws = wb[table.sheet]
        formulas = None if formulas_by_sheet is None else formulas_by_sheet.get(ws.title, {})
        problems.extend(check_table(ws, table, counties=counties, formulas=formulas, check_awards=check_awards).all_problems())
    if include_plan:
        problems.extend(plan_problems(plan))
    return problems


def summary(problems: list[Problem]) -> str:
    errors = sum(p.is_error for p in problems)
    warnings = len(problems) - errors
    if not problems:
        return "校验通过：未发现问题。"
    return f"共发现{errors}个错误、{warnings}个警告。"


def report_text(problems: list[Problem]) -> str:
    lines = [str(p) for p in problems]
    lines.append(summary(problems))
    return "\n".join(lines)


def _fresh_openpyxl_sheet(wb, name: str):
    """An empty sheet ``name`` in the place of the old one (or at the end)."""
    if name in wb.sheetnames:
        index = wb.sheetnames.index(name)
        wb.remove(wb[name])
        return wb.create_sheet(name, index)
    return wb.create_sheet(name)


def validation_rows(problems: list[Problem]) -> list[list]:
    return [[i, p.severity, p.file, p.sheet, p.cell or p.subject, p.message] for i, p in enumerate(problems, start=1)]


def write_validation_sheet(wb, problems: list[Problem], when: dt.datetime | None = None):
    """Write (replace) the 校验结果 sheet: title, time and summary, then one row per problem.

    ``wb`` is an openpyxl Workbook or an xlwings Book.  Text goes in as text, never as a formula."""
    when = when or dt.datetime.now()
    heading = "校验结果"
    sub = f"校验时间：{when:%Y-%m-%d %H:%M}　{summary(problems)}"
    rows = validation_rows(problems)
    if hasattr(wb, "create_sheet"):  # openpyxl
        from xl_ecom.workflows import sheets

        ws = _fresh_openpyxl_sheet(wb, layout.SHEET_VALIDATION)
        next_row = sheets.title(ws, heading, len(VALIDATION_HEADERS), sub)
        sheets.header(ws, next_row, VALIDATION_HEADERS, [6, 8, 22, 14, 10, 80])
        for i, values in enumerate(rows, start=next_row + 1):
            for j, value in enumerate(values, start=1):
                cell = ws.cell(row=i, column=j)
                safeio.write_cell_value(cell, value)
                sheets.body_cell(cell, "center" if j in (1, 2, 5) else "text")
        sheets.page_setup(ws, f"{next_row}:{next_row}")
        ws.freeze_panes = ws.cell(row=next_row + 1, column=1)
        return ws
    # xlwings Book
    names = [s.name for s in wb.sheets]
    if layout.SHEET_VALIDATION in names:
        ws = wb.sheets[layout.SHEET_VALIDATION]
        ws.clear()
    else:
        ws = wb.sheets.add(layout.SHEET_VALIDATION, after=wb.sheets[len(names) - 1])
    ws["A1"].value = heading
    ws["A2"].value = safeio.safe_text(sub)
    ws["A3"].value = list(VALIDATION_HEADERS)
    if rows:
        ws["A4"].value = [[safeio.safe_text(v) for v in r] for r in rows]
    return ws


# ---------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------


def cmd_validate(args) -> int:
    path = Path(args.workbook)
    if not path.exists():
        print(f"错误：工作簿“{path}”不存在")
        return 2
    try:
        problems = validate_workbook(path, include_plan=not args.no_plan)
    except XlEcomError as exc:
        print(f"错误：{exc}")
        return 2
    print(f"校验数据：{path.name}")
    print(report_text(problems))
    return 1 if any(p.is_error for p in problems) else 0


def add_cli(subparsers) -> None:
    p = subparsers.add_parser("validate", help="校验数据：检查工作簿录入表与方案的一致性，列出每个问题的位置和原因")
    p.add_argument("workbook", help="目标任务分解表.xlsm 或其他含录入表的工作簿")
    p.add_argument("--no-plan", action="store_true", help="只检查录入表，不列出方案本身的警告")
    p.set_defaults(func=cmd_validate)
