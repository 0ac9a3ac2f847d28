"""汇总县区报表: read a folder of returned county workbooks, check each, merge the valid rows into
the city workbook's input tables.

What a clerk can rely on:

- every returned file is opened as untrusted (:mod:`xl_ecom.ooxml.safeio`): no macro runs, XML and zip
  bombs and oversized files are refused, formulas are not trusted (cached values only);
- each file is checked with the same row checks as 校验数据 (:func:`xl_ecom.workflows.validate.check_table`);
  every problem names the file, sheet, cell and the reason; a row with an error is not merged and
  is listed; nothing is dropped silently;
- a file whose county cannot be established (unknown county, file name and workbook disagree,
  changed structure) is not merged at all, and neither are two files for the same county (the
  clerk removes the wrong one and collects again);
- **a county's returned workbook replaces that county's rows** in the city workbook, table by
  table (a resubmitted report supersedes the earlier one); the report says, per county and table,
  how many rows were there and how many are now; rows of other counties and rows without a county
  are kept where they are; the previous workbook is kept as a dated backup beside it; a returned
  workbook with no data at all is not merged (a blank file attached by mistake never wipes a
  county), and rows left out for errors are counted in the change lines;
- a number cell holding text ("50万") is an error naming the cell and value and its row is not
  merged: the county file's own award formula shows 请填数字 for it and leaves the row out of the
  county's totals, and the city reads the file the same way (issue #8);
- one bad file never stops the others: a refused package, a chartsheet in place of a data sheet,
  or an error no check foresaw refuses that file with a Chinese reason; a file whose name starts
  with "." is reported (not read); control characters in names are printed escaped;
- text beginning with = + - @ is written as text, never as a formula;
- the city .xlsm keeps its VBA project and its ribbon; it is written atomically and not at all
  while Excel has it open (``~$`` lock file).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import io
import math
import re
import zipfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from openpyxl.utils import get_column_letter

from xl_ecom import ledger as ledger_mod
from xl_ecom.common.errors import InputError, XlEcomError
from xl_ecom.ledger.lock import WorkbookBusyError, workbook_lock
from xl_ecom.ooxml import safeio, xlsm
from xl_ecom.ooxml.package import Package
from xl_ecom.policy import Plan, load_plan
from xl_ecom.rules.money import EXCEL_DIGITS, brief
from xl_ecom.workflows import counties as county_books
from xl_ecom.workflows import departments as department_books
from xl_ecom.workflows import layout, sheets
from xl_ecom.workflows.citybook import OpenpyxlTables, PackageTables, county_name
from xl_ecom.workflows.tables import TABLES, InputTable
from xl_ecom.workflows.validate import (
    ERROR,
    WARNING,
    Problem,
    ReadSheet,
    TableCheck,
    check_table,
)

EXCEL_SUFFIXES = (".xlsx", ".xlsm")
MAX_ROWS = 100_000  # rows per input sheet of one returned county workbook (10,000 is a big county)
OLD_SUFFIXES = (".xls", ".et", ".ods", ".csv")

MERGED = "已汇总"  # = ledger.MERGED: the file's rows are its county's current data
READY = "可汇总"  # checked, no --into given
NOT_MERGED = "未汇总"
REFUSED = "拒收"  # = ledger.REJECTED: the file as a whole is not used (cannot be opened, wrong county, bad token…)
FAULTY = "有错"  # = ledger.FAULTY: every row has errors (or none was filled in); the previous version stays current
NO_UNIT = "（县区不明）"  # the ledger's unit for a refused file that names no county


class CollectError(XlEcomError):
    """Collect cannot run at all (folder missing, city workbook unusable)."""


@dataclass
class FileResult:
    path: Path
    county: str | None = None
    status: str = NOT_MERGED
    problems: list[Problem] = field(default_factory=list)  # file-level
    checks: dict[str, TableCheck] = field(default_factory=dict)  # table key -> check
    notes: list[str] = field(default_factory=list)
    empty: bool = False  # no data row at all: not merged (a blank workbook never wipes a county)
    claimed: str | None = None  # the county the file says it is (marker, else file name)
    verified: str | None = None  # the county its issue token belongs to
    issue_id: int | None = None
    sha256: str = ""
    size: int = 0
    version: int | None = None  # the ledger's version of this county's submissions
    submission_id: int | None = None
    kind: str = county_books.ISSUE_KIND  # 县区, or 部门 for a department's returned task sheet
    #: a department reply: ledger table -> [(row number, values)]; its unusable cells are cell_problems
    reply_rows: dict = field(default_factory=dict)
    cell_problems: list[Problem] = field(default_factory=list)
    reported: bool = False  # its lines were printed as it was recorded (CollectReport.to_text leaves them out)

    def lines(self) -> list[str]:
        """The report's lines for this file: status, county and version, counts, notes, problems."""
        ok, bad = self.counts()
        who = self.county or self.claimed or "县区不明"
        if self.version is not None and self.status in (MERGED, FAULTY):
            who += f"，第{self.version}版"
        head = f"【{self.status}】{self.name}（{who}）"
        if self.checks:
            head += f"：有效{ok}行" + (f"，有错未汇总{bad}行" if bad else "")
        out = [head]
        out.extend(f"    说明：{note}" for note in self.notes)
        for p in self.all_problems():
            out.append(f"    [{p.severity}] {p.sheet + ' ' if p.sheet else ''}{p.cell + ' ' if p.cell else ''}{p.message}".rstrip())
        return out

    @property
    def name(self) -> str:
        return self.path.name

    def all_problems(self) -> list[Problem]:
        out = list(self.problems) + list(self.cell_problems)
        for c in self.checks.values():
            out.extend(c.all_problems())
        return out

    def reject(self, message: str, sheet: str = "", cell: str = "") -> None:
        self.problems.append(Problem(sheet, cell, message, ERROR, self.name))
        self.status = NOT_MERGED

    def reject_reason(self) -> str:
        """Why the file as a whole is not used (the ledger's 拒收 reason)."""
        errors = [p.message for p in self.problems if p.is_error]
        if not errors:
            errors = [p.message for c in self.checks.values() for p in c.problems if p.is_error]
        return "；".join(errors) or "整个文件未汇总"

    @property
    def mergeable(self) -> bool:
        return (
            not self.empty
            and not any(p.is_error for p in self.problems)
            and all(c.structure_ok for c in self.checks.values())
            and bool(self.county)
        )

    def accepted_rows(self, table_key: str) -> list[dict]:
        check = self.checks.get(table_key)
        return [r.values for r in check.accepted] if check else []

    def counts(self) -> tuple[int, int]:
        """(rows accepted, rows rejected) over all tables."""
        ok = sum(len(c.accepted) for c in self.checks.values())
        bad = sum(len(c.rejected) for c in self.checks.values())
        return ok, bad


@dataclass
class CollectReport:
    folder: Path
    into: Path | None = None
    files: list[FileResult] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)  # folder-level (skipped files, duplicates)
    changes: list[str] = field(default_factory=list)  # what changed in the city workbook
    backup: Path | None = None
    written: bool = False
    fatal: str | None = None
    ledger_url: str = ""
    recorded: int = 0  # submissions written to the ledger
    touched: list[str] = field(default_factory=list)  # counties whose current version is in this collect
    round_id: int | None = None  # the ledger round the submissions went to

    def all_problems(self) -> list[Problem]:
        out = list(self.problems)
        for f in self.files:
            out.extend(f.all_problems())
        return out

    @property
    def exit_code(self) -> int:
        if self.fatal:
            return 2
        return 1 if self.all_problems() else 0

    def rows(self) -> dict[str, dict[str, list[dict]]]:
        """table key -> county -> accepted rows (clean values by column key) of the files merged
        (or, without --into, the files that would be)."""
        out: dict[str, dict[str, list[dict]]] = {t.key: {} for t in TABLES}
        for f in self.files:
            if f.status in (MERGED, READY) and f.county is not None:  # a mergeable file names its county
                for key in out:
                    out[key][f.county] = f.accepted_rows(key)
        return out

    def to_text(self, heading: bool = True) -> str:
        """The whole report; files already printed as they were recorded (``reported``) are left out."""
        lines = [f"汇总县区报表：{self.folder}"] if heading else []
        if self.fatal:
            lines.append(f"错误：{self.fatal}")
        for f in self.files:
            if not f.reported:
                lines.extend(f.lines())
        for p in self.problems:
            lines.append(str(p))
        if self.changes:
            lines.append("市级工作簿的改动：")
            lines.extend(f"    {c}" for c in self.changes)
        if self.written:
            lines.append(f"已写入：{self.into}")
            if self.backup:
                lines.append(f"原文件已备份为：{self.backup}")
        elif self.into is None and not self.fatal:
            lines.append("未指定 --into，只检查，未写入任何工作簿。")
        elif self.into is not None and not self.fatal and any(
                f.kind == department_books.ISSUE_KIND and f.status == MERGED for f in self.files):
            lines.append(f"部门报送已登记到台账（“刷新”时计入），“{self.into.name}”的输入表无需改动。")
        elif self.into is not None and not self.fatal:
            lines.append(f"没有可汇总的数据，未改动“{self.into.name}”。")
        if self.fatal and not self.files:
            return "\n".join(map(printable, lines))
        errors = sum(p.is_error for p in self.all_problems())
        warnings = len(self.all_problems()) - errors
        merged = sum(f.status == MERGED for f in self.files)
        ready = sum(f.status == READY for f in self.files)
        done = f"可汇总{ready}个" if ready and not merged else f"汇总{merged}个"
        if self.ledger_url:
            if self.into is None:
                lines.append(f"台账：{self.ledger_url}（只核对下发凭证，未登记报送）")
            else:
                lines.append(f"台账：{self.ledger_url}（本次登记{self.recorded}份报送）")
        lines.append(f"共{len(self.files)}个文件，{done}；{errors}个错误，{warnings}个警告。")
        return "\n".join(map(printable, lines))


def printable(line: str) -> str:
    """A report line with control and format characters (ESC, newline, bidi overrides…) escaped as
    ``\\x1b``, ``\\n``, ``\\u202e``: a file name can never break a line or drive the terminal."""
    if line.isprintable():
        return line
    out = []
    for ch in line:
        if ch.isprintable() or ch == "\u3000":
            out.append(ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif ord(ch) < 0x100:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(f"\\u{ord(ch):04x}" if ord(ch) < 0x10000 else f"\\U{ord(ch):08x}")
    return "".join(out)


# ---------------------------------------------------------------------------------------------
# one returned file
# ---------------------------------------------------------------------------------------------


def county_in_name(name: str, counties) -> str | None:
    """The county a file name names (the longest match), or None."""
    found = [c for c in counties if c in name]
    return max(found, key=len) if found else None


def read_marker(wb) -> tuple[str | None, str | None]:
    """(county, structure version) from the county workbook's marker (xl_ecom.workflows.counties), or
    (None, None) without one.  Raises InputError when its two copies disagree."""
    return county_books.county_marker(wb)


def verify_token(result: FileResult, wb, ledger, issued: bool) -> None:
    """Check the file's issue token (xl_ecom.workflows.counties.set_token) against the county it claims.

    - the token names another county: refused, naming both;
    - unknown or forged token, or its two copies differ: refused;
    - no token: refused when the ledger has issued county workbooks (``issued``); while it has no
      issue record at all (workbooks generated before tokens existed, or without a ledger) the file
      is collected by its marker, and the report says so."""
    by_name, by_prop = county_books.issue_token(wb)
    claimed = result.claimed
    who = claimed or "县区"
    if by_name and by_prop and by_name != by_prop:
        result.reject(f"下发凭证的两处记录不一致（隐藏名称与文档属性不同），文件被改动过，整个文件未汇总；请让{who}用下发的工作簿重新填报")
        return
    token = by_name or by_prop
    if token is None:
        if issued:
            result.reject(
                f"文件中没有下发凭证：不是市里下发的县区工作簿，或凭证被删除，整个文件未汇总；"
                f"请让{who}用市里下发的县区工作簿（“生成县区工作簿”生成的文件）填报后再报送"
            )
        else:
            result.notes.append("文件没有下发凭证（台账中尚无下发记录，县区工作簿是在启用下发凭证之前生成的），按工作簿标记的县区汇总")
        return
    issue = ledger.verify_token(token)
    if issue is None or issue.kind != county_books.ISSUE_KIND:
        result.reject(f"下发凭证无效（不是本台账签发的，或已被改动），整个文件未汇总；请让{who}用市里下发的县区工作簿重新填报")
        return
    result.issue_id, result.verified = issue.id, issue.unit
    if claimed and issue.unit != claimed:
        result.reject(
            f"文件声称是{claimed}，但其下发凭证属于{issue.unit}：这是下发给{issue.unit}的工作簿，整个文件未汇总；"
            f"{claimed}的数据保持不变，请核实报送单位"
        )


def _is_data_sheet(wb, name: str) -> bool:
    """A worksheet with cells (not a chartsheet or dialog sheet put in its place)."""
    return hasattr(wb[name], "iter_rows")


def check_file(path: Path, plan: Plan, ledger=None, issued: bool = False) -> FileResult:
    """Open one returned file as untrusted and check it; nothing is written.

    Whatever goes wrong inside one file (a refused package, a chartsheet where a data sheet should
    be, a value no check foresaw) refuses that file with a Chinese reason; it never stops the batch.

    With a ``ledger`` the file's issue token is verified (:func:`verify_token`); ``issued``: the
    ledger holds issue records (then a file without a token is refused)."""
    try:
        return _check_file(path, plan, ledger, issued)
    except XlEcomError as exc:
        return FileResult(path, status=REFUSED, problems=[Problem("", "", f"{exc}，整个文件未汇总", ERROR, path.name)])
    except Exception as exc:  # noqa: BLE001 - an untrusted file reached a path no check foresaw: refuse it, go on
        first = str(exc).splitlines()[0][:200] if str(exc) else ""
        return FileResult(path, status=REFUSED, problems=[Problem(
            "", "", f"读取时出错（{type(exc).__name__}：{first}），文件可能已损坏或被改动，整个文件未汇总；"
            "请让县区用下发的工作簿重新填报", ERROR, path.name)])


def _check_file(path: Path, plan: Plan, ledger=None, issued: bool = False) -> FileResult:
    result = FileResult(path)
    counties = plan.counties
    result.claimed = county_in_name(path.stem, counties)
    try:
        # rows parsed as they are checked; the input sheets' formulas are read with their values (ReadSheet)
        wb = safeio.open_untrusted(path, read_only=True, scan_formulas=False)
    except safeio.UntrustedFileError as exc:
        result.status = REFUSED
        result.problems.append(Problem("", "", str(exc), ERROR, path.name))
        return result
    report = wb.untrusted_report
    expected = (county_books.COUNTY_MARKER_SHEET, *(t.sheet for t in TABLES))
    not_data = [n for n in expected if n in wb.sheetnames and not _is_data_sheet(wb, n)]
    if not_data:
        wb.close()
        result.status = REFUSED
        result.problems.append(Problem(
            "", "", f"工作表“{'、'.join(not_data)}”不是数据工作表（是图表工作表等），县区工作簿的结构已被改动，整个文件未汇总；"
            "请使用下发的县区工作簿重新填报", ERROR, path.name))
        return result
    for note in report.notes:  # macros and other active content: ignored, never run
        result.problems.append(Problem("", "", note, WARNING, path.name))
    if department_books.department_marker(wb)[0] is not None:
        try:
            return _check_department(path, wb, plan, ledger, result)
        finally:
            wb.close()

    # which county: the workbook's marker, checked against the file name
    by_name = county_in_name(path.stem, counties)
    try:
        marked, version = read_marker(wb)
    except InputError as exc:
        marked, version = None, None
        result.reject(f"{exc}：标记被改动，无法确定是哪个县区的报表，整个文件未汇总")
    else:
        if marked is None:
            result.reject(
                "没有县区工作簿标记（填报说明!B3、B4）：不是本系统下发的县区工作簿，或标记被删除，整个文件未汇总；"
                "请使用下发的县区工作簿填报"
            )
        elif marked not in counties:
            result.reject(
                f"工作簿标记的县区“{marked}”不是淮南市的县区（应为：{'、'.join(counties)}），整个文件未汇总",
                county_books.COUNTY_MARKER_SHEET,
                county_books.COUNTY_CELL,
            )
        else:
            result.county = result.claimed = marked
            if by_name and by_name != marked:
                result.reject(
                    f"文件名写的是“{by_name}”，工作簿却是下发给“{marked}”的：无法确定是哪个县区的报表，整个文件未汇总；"
                    "请核实后改正文件名，或让县区用本县区的工作簿重新填报"
                )
        if marked is not None and version != county_books.STRUCTURE_VERSION:
            result.reject(
                f"县区工作簿的结构版本为“{version}”，当前应为“{county_books.STRUCTURE_VERSION}”：表格结构已变，"
                "请使用最新下发的县区工作簿重新填报，整个文件未汇总",
                county_books.COUNTY_MARKER_SHEET,
                county_books.VERSION_CELL,
            )

    if ledger is not None:
        verify_token(result, wb, ledger, issued)

    tables = TABLES
    pkg = None  # the package, read once the structure passed: the input sheets' rows come from it
    missing = [t.sheet for t in tables if t.sheet not in wb.sheetnames]
    if missing:
        result.reject(f"缺少录入表“{'、'.join(missing)}”：工作表被删除或改名，表格结构已改动，整个文件未汇总")
    for table in tables:
        if table.sheet not in wb.sheetnames:
            continue
        ws = wb[table.sheet]
        if (ws.max_row or 0) > MAX_ROWS:
            result.reject(
                f"工作表“{ws.title}”用到了第{ws.max_row}行，超过县区报表的上限{MAX_ROWS}行，疑为异常文件，整个文件未汇总；"
                "请删除表格下方多余的内容后再报送",
                ws.title,
            )
            continue
        if pkg is None:
            pkg = Package(path.read_bytes(), path.name)
        sheet = ReadSheet(pkg, table.sheet, len(table.columns))
        check = check_table(
            sheet,
            table,
            counties=counties,
            file=path.name,
            expected_county=result.county,
            formulas=sheet.formulas,
            text_numbers=False,  # as the county file's own formulas read them (请填数字)
        )
        result.checks[table.key] = check
        _refuse_impossible_numbers(result, table, check)
    if any(not c.structure_ok for c in result.checks.values()):
        result.reject("表格结构已改动（见上面的表头问题），整个文件未汇总")
    if result.county:
        _read_county_progress(result, wb, plan, result.county)

    wb.close()
    if result.mergeable and not any(c.rows for c in result.checks.values()) and not result.reply_rows:
        result.empty = True
        result.problems.append(
            Problem("", "", "报表中没有填写任何数据，未汇总；市级工作簿中该县区原有的数据保持不变", WARNING, path.name)
        )
    return result


# EXCEL_DIGITS (rules.money): digits Excel keeps in a number: a longer integer was never typed into Excel or WPS
_NUMBER_TEXT = re.compile(r"\s*[+-]?(\d[\d,]*)(\.\d*)?([eE][+-]?\d+)?\s*")


def impossible_number(value) -> bool:
    """A value in a number column that no spreadsheet cell can hold: not finite (1e309, 1e5000), or an
    integer longer than Excel's 15 digits (a 401-digit integer) — as a number or as number-like text.
    Such a file was not saved by Excel or WPS from the issued workbook."""
    if isinstance(value, bool):
        return False
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, int):
        return abs(value) >= 10**EXCEL_DIGITS
    if isinstance(value, str) and len(value) < 10_000:
        found = _NUMBER_TEXT.fullmatch(value)
        if found:
            digits = found.group(1).replace(",", "").lstrip("0")
            exponent = found.group(3)
            if len(digits) > EXCEL_DIGITS:
                return True
            return exponent is not None and abs(int(exponent[1:])) > 308
    return False


def _refuse_impossible_numbers(result: FileResult, table: InputTable, check) -> None:
    """Refuse the whole file (拒收) when a number column holds a value no cell can hold, naming the first."""
    numeric = [(i, c) for i, c in enumerate(table.columns) if c.numeric]
    for row in check.rows:
        for i, col in numeric:
            value = row.values.get(col.key)
            if impossible_number(value):
                ref = f"{get_column_letter(i + 1)}{row.row}"
                result.reject(
                    f"{col.header}（{table.sheet}!{ref}）是“{brief(value)}”，不是 Excel 或 WPS 单元格能保存的数值，"
                    "文件可能被改动，整个文件未汇总；请用下发的县区工作簿重新填报",
                    table.sheet,
                    ref,
                )
                return


def _read_county_progress(result: FileResult, wb, plan: Plan, county: str) -> None:
    """The 进展情况 / 完成时间 a county wrote on its 工作任务 sheet, for the measures of 各县区人民政府 and
    those naming the county (filed as the county's 县区进展 rows, so what it wrote is never lost)."""
    sheet = county_books.SHEET_TASKS
    if sheet not in wb.sheetnames or not _is_data_sheet(wb, sheet):
        return
    unit = department_books.COUNTY_UNIT
    roles = {m.id: m.role_of(unit) for m in plan.measures_for(unit)}
    roles.update({m.id: "涉及" for m in county_books.county_measures(county, plan) if m.id not in roles})
    rows, problems = department_books.read_task_progress(wb[sheet], roles)
    result.cell_problems += [Problem(s, cell, reason, ERROR, result.name) for s, cell, reason, _v in problems]
    if department_books.filled_progress(rows):
        result.reply_rows[department_books.TABLE_COUNTY_PROGRESS] = rows


def _check_department(path: Path, wb, plan: Plan, ledger, result: FileResult) -> FileResult:
    """A department's returned task sheet (marker XL_ECOM_DEPARTMENT): its unit, its issue token (kind
    部门), then 完成数 and 进展情况 / 完成时间 (:func:`xl_ecom.workflows.departments.read_reply`)."""
    result.kind = department_books.ISSUE_KIND
    unit, version = department_books.department_marker(wb)
    names = {d["name"] for d in plan.departments if d.get("kind") == department_books.ISSUE_KIND}
    if unit is None or unit not in names:
        result.reject(f"部门任务表标记的单位“{unit}”不是方案点名的报送部门，整个文件未汇总")
        return result
    result.county = result.claimed = unit
    if version != department_books.DEPARTMENT_VERSION:
        result.reject(f"部门任务表的结构版本为“{version}”，当前应为“{department_books.DEPARTMENT_VERSION}”："
                      "请使用最新下发的部门任务表重新填报，整个文件未汇总")
    if ledger is not None:
        _verify_department_token(result, wb, ledger, unit)
    if not result.mergeable:
        return result
    try:
        reply = department_books.read_reply(wb, unit, plan)
    except InputError as exc:
        result.reject(f"{exc}，整个文件未汇总；请使用下发的部门任务表重新填报")
        return result
    result.cell_problems = [Problem(sheet, cell, reason, ERROR, path.name) for sheet, cell, reason, _v in reply.problems]
    if reply.done:
        result.reply_rows[department_books.TABLE_DONE] = reply.done
    if department_books.filled_progress(reply.progress):
        result.reply_rows[department_books.TABLE_PROGRESS] = reply.progress
    if not result.reply_rows and not result.cell_problems:
        result.empty = True
        result.problems.append(Problem(
            "", "", "任务表中没有填写完成数、进展情况或完成时间，未汇总；台账中该单位原有的数据保持不变", WARNING, path.name))
    return result


def _verify_department_token(result: FileResult, wb, ledger, unit: str) -> None:
    """As :func:`verify_token` for county workbooks, with the issue kind 部门."""
    issued = any(i.kind == department_books.ISSUE_KIND for i in ledger.issues())
    by_name, by_prop = county_books.issue_token(wb)
    token = by_name or by_prop
    if by_name and by_prop and by_name != by_prop:
        result.reject(f"下发凭证的两处记录不一致（隐藏名称与文档属性不同），文件被改动过，整个文件未汇总；请让{unit}用下发的任务表重新填报")
    elif token is None:
        if issued:
            result.reject(f"文件中没有下发凭证：不是市里下发的部门任务表，或凭证被删除，整个文件未汇总；请让{unit}用市里下发的任务表填报后再报送")
        else:
            result.notes.append("文件没有下发凭证（台账中尚无部门任务表的下发记录），按任务表标记的单位汇总")
    else:
        issue = ledger.verify_token(token)
        if issue is None or issue.kind != department_books.ISSUE_KIND:
            result.reject(f"下发凭证无效（不是本台账签发的部门任务表，或已被改动），整个文件未汇总；请让{unit}用市里下发的任务表重新填报")
            return
        result.issue_id, result.verified = issue.id, issue.unit
        if issue.unit != unit:
            result.reject(f"文件声称是{unit}，但其下发凭证属于{issue.unit}：这是下发给{issue.unit}的任务表，整个文件未汇总；请核实报送单位")


# ---------------------------------------------------------------------------------------------
# the folder
# ---------------------------------------------------------------------------------------------


def _is_own_file(path: Path, into: Path | None) -> bool:
    if into is None:
        return False
    try:
        if path.resolve() == into.resolve():
            return True
    except OSError:
        return False
    return path.parent.resolve() == into.parent.resolve() and path.name.startswith(f"{into.stem}.备份")


def check_folder(folder, plan: Plan | None = None, into: Path | None = None, ledger=None) -> CollectReport:
    """Check every file of ``folder``; nothing is written.  With a ``ledger`` issue tokens are verified."""
    plan = plan or load_plan()
    issued = ledger is not None and any(i.kind == county_books.ISSUE_KIND for i in ledger.issues())
    folder = Path(folder)
    report = CollectReport(folder, Path(into) if into else None)
    if not folder.is_dir():
        report.fatal = f"文件夹“{folder}”不存在或不是文件夹"
        return report
    for path in sorted(folder.iterdir(), key=lambda p: p.name):
        if path.is_dir():
            report.problems.append(Problem("", "", "是子文件夹，未读取（请把县区工作簿直接放在所选文件夹中）", WARNING, path.name))
            continue
        if path.name.startswith(("~$", ".~lock.")):
            report.problems.append(Problem("", "", "是 Excel/WPS 的临时锁定文件，已跳过（对应工作簿可能仍在打开）", WARNING, path.name))
            continue
        if _is_own_file(path, report.into):
            continue
        if path.name.startswith("."):
            report.problems.append(Problem(
                "", "", "文件名以“.”开头，是隐藏文件（如 macOS 生成的“._”文件），未读取；如确是县区报表，请去掉文件名开头的“.”后重新汇总",
                WARNING, path.name))
            continue
        suffix = path.suffix.lower()
        if suffix in EXCEL_SUFFIXES or suffix in OLD_SUFFIXES:
            if suffix in OLD_SUFFIXES:
                report.files.append(FileResult(path, status=REFUSED, problems=[Problem(
                    "", "", f"是 {suffix} 格式，无法汇总；请用 Excel 或 WPS 另存为 .xlsx 后重新汇总", ERROR, path.name)]))
                continue
            report.files.append(check_file(path, plan, ledger, issued))
        else:
            report.problems.append(Problem("", "", "不是 Excel 工作簿（.xlsx/.xlsm），已跳过", WARNING, path.name))
    if not report.files:
        report.problems.append(Problem("", "", f"文件夹“{folder}”中没有 .xlsx/.xlsm 县区工作簿", WARNING))

    # a second file for the same county: neither is merged
    by_county: dict[str, list[FileResult]] = {}
    for f in report.files:
        if f.county and f.mergeable:
            by_county.setdefault(f.county, []).append(f)
    for county, files in by_county.items():
        if len(files) > 1:
            names = "、".join(f"“{f.name}”" for f in files)
            for f in files:
                f.reject(f"{county}有{len(files)}个报表文件（{names}），无法确定以哪个为准，均未汇总；请只保留一个后重新汇总")
    for f in report.files:
        if f.mergeable:
            f.status = READY
    return report


# ---------------------------------------------------------------------------------------------
# writing into the city workbook
# ---------------------------------------------------------------------------------------------


def formula_options(wb) -> dict:
    """Extra arguments for sheets.award_formula: the workbook's policy date (设置), of an openpyxl
    workbook or of a :class:`~xl_ecom.workflows.citybook.PackageTables`'s package."""
    from xl_ecom.workflows.settings import SETTINGS_SHEET, read_settings, settings_from_rows

    try:
        if isinstance(wb, PackageTables):
            pkg = wb.pkg
            rows = pkg.rows(SETTINGS_SHEET, 1, 2) if SETTINGS_SHEET in pkg.sheet_names else []
            return {"on": settings_from_rows(rows).get("政策日期")}
        return {"on": read_settings(wb).get("政策日期")}
    except XlEcomError as exc:
        raise CollectError(f"市级工作簿的“设置”表有误：{exc}") from None


def merge_into_workbook(wb, report: CollectReport, plan: Plan | None = None, options: dict | None = None,
                        current: dict[str, dict[str, list[dict]]] | None = None) -> list[str]:
    """Merge the files that can be merged into an openpyxl workbook, or into the package of
    :class:`~xl_ecom.workflows.citybook.PackageTables` (the same rows and cells); returns the change lines.

    A county's rows are replaced table by table with the rows of its returned file, or, given
    ``current`` (county -> table key -> rows: the ledger's current version of each county), with
    those.  ``options``: extra arguments for :func:`xl_ecom.workflows.sheets.award_formula` (default:
    :func:`formula_options` of ``wb``, i.e. its 设置 policy date once the compiler takes one)."""
    plan = plan or load_plan()
    files = [f for f in report.files if f.mergeable] if current is None else [f for f in report.files if f.status == MERGED]
    book = wb if isinstance(wb, PackageTables) else OpenpyxlTables(wb)
    # the city workbook must have every input table with the expected header
    for table in TABLES:
        if table.sheet not in book.sheetnames:
            raise CollectError(f"市级工作簿中没有录入表“{table.sheet}”，无法汇总；请用“生成工作簿”重新生成")
        bad = book.header_problems(table)
        if bad:
            raise CollectError(f"市级工作簿的录入表“{table.sheet}”结构已改动：{bad[0].cell} {bad[0].message}")
    changes: list[str] = []
    options = formula_options(wb) if options is None else options
    replaced = {f.county for f in files} if current is None else set(current)
    order = {c: i for i, c in enumerate(plan.counties)}
    for table in TABLES:
        existing, old_data_last = book.existing(table)
        county_col = next(i for i, c in enumerate(table.columns) if c.kind == "county")
        if current is None:
            new_by_county = {f.county: f.accepted_rows(table.key) for f in files}
        else:
            new_by_county = {county: tables.get(table.key, []) for county, tables in current.items()}
        old_counts: dict[str | None, int] = {}
        for row in existing:
            name = county_name(row[county_col].value)
            if name in replaced:
                old_counts[name] = old_counts.get(name, 0) + 1
        if not old_counts and not any(new_by_county.values()):
            continue
        merged: list = []
        placed: set[str | None] = set()
        for row in existing:
            name = county_name(row[county_col].value)
            if name in replaced:
                if name not in placed:
                    merged.extend(new_by_county[name])
                    placed.add(name)
                continue
            merged.append(row)
        for county in sorted(replaced - placed, key=lambda c: order.get(c, 99)):
            merged.extend(new_by_county[county])
        book.write(table, merged, old_data_last, options)
        rejected = dict.fromkeys(replaced, 0)
        rejected.update({f.county: len(f.checks[table.key].rejected) if table.key in f.checks else 0 for f in files})
        for county in sorted(replaced, key=lambda c: order.get(c, 99)):
            old, new = old_counts.get(county, 0), len(new_by_county[county])
            if old:
                line = f"{county}：“{table.sheet}”原有{old}行，已替换为报来的{new}行"
                if new == 0 and not rejected[county]:
                    line += "（报表中该表为空，原有行已删除）"
            elif new:
                line = f"{county}：“{table.sheet}”新增{new}行"
            else:
                line = ""
            if line and rejected[county]:
                line += f"；另有{rejected[county]}行有错未汇总（见上）"
            if line:
                changes.append(line)
    if current is None:
        for f in files:
            f.status = MERGED
    return changes


# parts openpyxl rebuilds or Excel recreates: not worth a warning when they do not survive
_REBUILT = re.compile(r"^(xl/calcChain\.xml|xl/printerSettings/.*|docProps/thumbnail\..*)$")


def _part_groups(names) -> Counter:
    """Parts counted by folder and extension (openpyxl renumbers parts and relationship files when
    it saves, so names alone would report renamed parts as lost)."""
    groups: Counter = Counter()
    for name in names:
        if "_rels/" in name or _REBUILT.match(name):
            continue
        folder, _, file = name.rpartition("/")
        groups[(folder, file.rpartition(".")[2].lower())] += 1
    return groups


def save_city_workbook(wb, path: Path, original: bytes) -> tuple[bytes, list[str]]:
    """The package to write for the city workbook: openpyxl's output with the ribbon restored and
    checked to hold the VBA project and the ribbon when the original did.  Returns (bytes, warnings)."""
    with zipfile.ZipFile(io.BytesIO(original)) as before:
        old_names = set(before.namelist())
        ribbon = xlsm.ribbon_parts(before)
    # formulas carry their values: the award columns written (sheets.put_formula), and the sheets
    # collect does not change (annex, 奖补测算) the results they had
    saved = sheets.with_cached_values(wb, original, carry=(layout.SHEET_ANNEX, layout.SHEET_EXAMPLES))
    data = xlsm.restore_ribbon(saved, ribbon)
    with zipfile.ZipFile(io.BytesIO(data)) as after:
        new_names = set(after.namelist())
        ribbon_after = xlsm.ribbon_parts(after)
    if xlsm.VBA_PROJECT_PART in old_names and xlsm.VBA_PROJECT_PART not in new_names:
        raise CollectError(f"保存“{path.name}”时宏（vbaProject.bin）会丢失，已停止写入，原文件未改动")
    if set(ribbon) != set(ribbon_after):
        raise CollectError(f"保存“{path.name}”时功能区（customUI）会丢失，已停止写入，原文件未改动")
    groups_before, groups_after = _part_groups(old_names), _part_groups(new_names)
    lost = [
        f"{folder or '根目录'}中的 .{ext} 部件（原{n}个，现{groups_after.get((folder, ext), 0)}个）"
        for (folder, ext), n in sorted(groups_before.items())
        if groups_after.get((folder, ext), 0) < n
    ]
    warnings = [f"保存时以下内容未能全部保留：{'、'.join(lost)}；原文件已备份"] if lost else []
    return data, warnings


# ---------------------------------------------------------------------------------------------
# the ledger: each file one submission
# ---------------------------------------------------------------------------------------------


def _digest(path: Path) -> tuple[str, int]:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest(), path.stat().st_size


def _json_row(values: dict) -> dict:
    """A row's clean values as the ledger stores them (JSON: dates as ISO text)."""
    return {k: (v.isoformat() if isinstance(v, (dt.datetime, dt.date)) else v) for k, v in values.items()}


def record_file(ledger, f: FileResult, round_id: int | None = None, received_at=None) -> None:
    """Write one checked file as one ledger submission (one transaction) and take the ledger's
    status and version: 已汇总 (its rows become the county's current data), 有错 (no row passed: the
    previous version stays current), 拒收 (the file as a whole is not used)."""
    if not f.sha256:
        try:
            f.sha256, f.size = _digest(f.path)
        except OSError as exc:
            f.notes.append(f"无法读取文件计算校验值（{exc.strerror or exc}），未登记到台账")
            return
    unit_claimed = f.claimed or (None if f.verified else NO_UNIT)
    # a blank workbook is 有错 (no row, one problem): it never becomes current, the previous version stays
    accept = (f.mergeable and f.status in (READY, MERGED)) or f.empty
    sub = ledger.submission(f.name, f.sha256, f.size, unit_claimed, f.verified, issue_id=f.issue_id,
                            round_id=round_id, received_at=received_at)
    with sub:
        for p in f.all_problems():
            sub.add_problem(p.sheet, p.cell, f"[{p.severity}] {p.message}")
        if not accept:
            sub.reject(f.reject_reason())
        else:
            for key, check in f.checks.items():
                ok = check.accepted
                if ok:
                    sub.add_rows(key, [_json_row(r.values) for r in ok], [r.row for r in ok])
            for key, rows in f.reply_rows.items():
                sub.add_rows(key, [values for _n, values in rows], [n for n, _values in rows])
    f.submission_id, f.version = sub.id, sub.version
    f.status = {ledger_mod.MERGED: MERGED, ledger_mod.FAULTY: FAULTY, ledger_mod.REJECTED: REFUSED}[sub.status]
    unit = sub.unit
    if sub.status == ledger_mod.FAULTY:
        if sub.kept_previous:
            prev = ledger.get_submission(sub.previous_id)
            f.notes.append(
                f"没有一行可以汇总，{unit}仍以台账中的第{prev.version}版（“{prev.file_name}”，{prev.received_at:%Y-%m-%d %H:%M}收到）"
                f"为当前数据，市级工作簿中{unit}的数据保持不变；本文件已登记为第{sub.version}版（有错）"
            )
        else:
            f.notes.append(f"没有一行可以汇总，{unit}在台账中尚无可用的数据；本文件已登记为第{sub.version}版（有错）")
    elif sub.status == ledger_mod.MERGED:
        if sub.previous_id is not None:
            prev = ledger.get_submission(sub.previous_id)
            f.notes.append(f"已登记为{unit}的第{sub.version}版，替代第{prev.version}版（“{prev.file_name}”）")
        else:
            f.notes.append(f"已登记为{unit}的第{sub.version}版")


def _clean_current(table: InputTable, records: list[dict]) -> list[dict]:
    """Rows read back from the ledger as cell values: NaN → blank, whole numbers as int, dates as datetime."""
    kinds = {c.key: c.kind for c in table.columns}
    out = []
    for rec in records:
        row = {}
        for key, kind in kinds.items():
            v = rec.get(key)
            if v is None or (isinstance(v, float) and math.isnan(v)):
                v = None
            elif hasattr(v, "item"):  # numpy scalar
                v = v.item()
            if kind == "date" and isinstance(v, str):
                try:
                    v = dt.datetime.fromisoformat(v)
                except ValueError:
                    pass
            elif isinstance(v, float) and v.is_integer() and kind in ("money", "count", "years", "rate"):
                v = int(v)
            row[key] = v
        out.append(row)
    return out


def current_rows(ledger, counties: list[str], round_id: int | None = None) -> dict[str, dict[str, list[dict]]]:
    """county -> table key -> its current rows in the ledger (sheet order of the source file)."""
    out: dict[str, dict[str, list[dict]]] = {c: {} for c in counties}
    for table in TABLES:
        for county in counties:
            frame = ledger.current_rows(table.key, round_id=round_id, unit=county)
            if len(frame):
                frame = frame.sort_values("_row", kind="stable")
                records = frame.astype(object).where(frame.notna(), None).to_dict("records")
                out[county][table.key] = _clean_current(table, records)
    return out


def collect(folder, into=None, plan: Plan | None = None, db: str | None = None, ledger=None,
            on_file: Callable[[FileResult], None] | None = None) -> CollectReport:
    """Check every .xlsx/.xlsm in ``folder``; with ``into``, record each file in the ledger (beside
    the city workbook, or at ``db``) as one submission and update the city workbook's input tables
    from the ledger's current versions (atomic write, dated backup, refused while Excel has it open
    or another xl-ecom command holds the workbook: the workbook's lock, ``汇总县区报表``).

    Without ``into`` nothing is written; with ``db`` the issue tokens are still verified.
    ``on_file(f)`` is called as each file is recorded (its transaction committed), for a caller that
    reports progress file by file."""
    plan = plan or load_plan()
    into = Path(into) if into else None
    if into is None:
        return _collect_with_ledger(folder, into, plan, db, ledger, on_file)
    try:
        safeio.ensure_not_open(into)  # Excel/WPS has it open: said first, in the words the other commands use
    except safeio.FileBusyError as exc:
        report = CollectReport(Path(folder), into)
        report.fatal = str(exc)
        return report
    try:
        with workbook_lock(into, COMMAND) if into.is_file() else contextlib.nullcontext():
            return _collect_with_ledger(folder, into, plan, db, ledger, on_file)
    except WorkbookBusyError as exc:
        report = CollectReport(Path(folder), into)
        report.fatal = str(exc)
        return report


#: the command's name in the workbook's lock (what another command is told holds it)
COMMAND = "汇总县区报表"


def _collect_with_ledger(folder, into: Path | None, plan: Plan, db: str | None, ledger,
                         on_file: Callable[[FileResult], None] | None) -> CollectReport:
    if into is not None:
        if not into.is_file():
            report = CollectReport(Path(folder), into)
            report.fatal = f"市级工作簿“{into}”不存在"
            return report
        try:
            safeio.ensure_not_open(into)
        except safeio.FileBusyError as exc:
            report = CollectReport(Path(folder), into)
            report.fatal = str(exc)
            return report
    own = None
    if ledger is None and (into is not None or db):
        try:
            ledger = own = ledger_mod.open_ledger(into, db)
        except XlEcomError as exc:
            report = CollectReport(Path(folder), into)
            report.fatal = f"无法打开台账：{exc}"
            return report
    try:
        return _collect(folder, into, plan, ledger, on_file)
    finally:
        if own is not None:
            own.close()


def _collect(folder, into: Path | None, plan: Plan, ledger, on_file=None) -> CollectReport:
    # 1. the ledger, the system of record: each file one submission, one transaction each
    report = record_folder(folder, into, plan, ledger, on_file)
    if report.fatal or into is None or not report.touched:
        return report
    # 2. the workbook, a view: each touched county's rows are its current version in the ledger,
    #    written into the sheet parts of its package (every other part kept byte for byte)
    original = into.read_bytes()
    try:
        book = PackageTables(Package(original, into.name))
    except XlEcomError as exc:
        report.fatal = f"无法打开市级工作簿“{into.name}”：{exc}（报送已登记到台账）"
        return report
    try:
        write_current(book, report, plan, ledger, options=formula_options(book))
        book.finish()
        data = book.pkg.to_bytes()
        check_macros_kept(original, data, into.name)
        report.backup = safeio.write_atomically(into, data)
    except (CollectError, safeio.FileBusyError, OSError, XlEcomError) as exc:
        report.changes = []
        if isinstance(exc, OSError):
            report.fatal = f"无法写入“{into.name}”（{exc.strerror or exc}），原文件未改动"
        else:
            report.fatal = str(exc)
        report.fatal += "；报送已登记到台账，再次汇总同一文件夹即可更新市级工作簿"
        return report
    report.written = True
    return report


def check_macros_kept(before: bytes, after: bytes, name: str) -> None:
    """The VBA project and the ribbon are byte-identical to the file as it was (a package edited in place)."""
    with zipfile.ZipFile(io.BytesIO(before)) as a, zipfile.ZipFile(io.BytesIO(after)) as b:
        kept = set(b.namelist())
        for part in (xlsm.VBA_PROJECT_PART, *xlsm.ribbon_parts(a)):
            if part in a.namelist() and (part not in kept or a.read(part) != b.read(part)):
                raise CollectError(f"保存“{name}”时“{part}”会改变，已停止写入，原文件未改动")


def write_current(wb, report: CollectReport, plan: Plan, ledger, options: dict | None = None) -> list[str]:
    """Step 2 of collect, "ledger → workbook rows": replace the rows of ``report.touched`` counties in
    the input tables of the openpyxl workbook ``wb`` (the city file, or the ribbon's in-memory copy
    of the open book) with their current version in the ledger; returns (and stores in
    ``report.changes``) the change lines.  ``options``: formula options, as for
    :func:`merge_into_workbook`."""
    current = current_rows(ledger, report.touched, report.round_id)
    report.changes = merge_into_workbook(wb, report, plan, options=options, current=current)
    return report.changes


def record_folder(folder, into: Path | None, plan: Plan, ledger,
                  on_file: Callable[[FileResult], None] | None = None) -> CollectReport:
    """Step 1 of collect, "files → ledger": check every file of ``folder`` (:func:`check_folder`)
    and, with ``into`` and a ``ledger``, record each one as one submission (one transaction each;
    a file collected again unchanged is not recorded twice).  The report's ``touched`` lists the
    counties whose rows the city workbook must now take from the ledger (:func:`write_current`);
    nothing but the ledger is written.  The CLI (:func:`collect`) and the ribbon's 汇总县区报表 both
    run this step.  ``on_file(f)``: called once each file is recorded (or found unchanged)."""
    try:
        report = check_folder(folder, plan, into, ledger)
    except XlEcomError as exc:  # the ledger cannot be read
        report = CollectReport(Path(folder), into)
        report.fatal = str(exc)
        return report
    if ledger is not None:
        report.ledger_url = ledger.url
    if report.fatal or into is None:
        return report
    received = dt.datetime.now().replace(microsecond=0)
    touched = report.touched
    try:
        rnd = ledger.ensure_round()
        report.round_id = rnd.id
        for f in report.files:
            current = ledger.current_submission(f.county, rnd.id) if f.mergeable and f.county else None
            if current is not None and f.status == READY:
                f.sha256, f.size = _digest(f.path)
                if current.sha256 == f.sha256:  # collected again unchanged: no new version
                    f.status, f.version, f.submission_id = MERGED, current.version, current.id
                    f.notes.append(f"与台账中{f.county}的第{current.version}版内容相同，未重复登记")
                    if f.kind == county_books.ISSUE_KIND and f.county is not None:
                        touched.append(f.county)
                    if on_file:
                        on_file(f)
                    continue
            record_file(ledger, f, rnd.id, received)
            report.recorded += 1
            # department replies live in the ledger only; a merged county file names its county
            if f.status == MERGED and f.kind == county_books.ISSUE_KIND and f.county is not None:
                touched.append(f.county)
            if on_file:
                on_file(f)
    except (XlEcomError, OSError) as exc:
        report.fatal = f"写入台账时出错：{exc}；已登记的报送保留在台账中，市级工作簿未改动"
        report.touched = []
        return report
    return report


# ---------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------


def cmd_collect(args) -> int:
    heading = [False]

    def show(f: FileResult) -> None:
        """A file's lines as soon as its submission is in the ledger (a run stopped later loses none)."""
        if not heading[0]:
            print(printable(f"汇总县区报表：{args.folder}"), flush=True)
            heading[0] = True
        print("\n".join(map(printable, f.lines())), flush=True)
        f.reported = True

    report = collect(args.folder, into=args.into, db=getattr(args, "db", None), on_file=show if args.into else None)
    print(report.to_text(heading=not heading[0]))
    return report.exit_code


def add_cli(subparsers) -> None:
    p = subparsers.add_parser(
        "collect",
        help="汇总县区报表：检查文件夹中报回的县区工作簿，把有效数据并入市级工作簿（每个县区的数据整体替换）",
    )
    p.add_argument("folder", help="存放报回的县区工作簿（.xlsx）的文件夹")
    p.add_argument("--into", help="市级工作簿（目标任务分解表.xlsm）；不指定则只检查不写入")
    p.add_argument(
        "--db", metavar="URL",
        help="台账数据库（如 postgresql://用户:密码@主机/库名，多台电脑共用时使用）；默认为市级工作簿旁的“<工作簿名>.台账.sqlite”",
    )
    p.set_defaults(func=cmd_collect)
