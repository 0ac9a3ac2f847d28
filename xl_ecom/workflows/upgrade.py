"""Upgrade in place: ``build`` and ``run`` on an existing city workbook rebuild its structure from
source and keep the clerk's data.

:func:`write_city_workbook` is what the commands call for the city workbook's path:

- no file there: a fresh build;
- a city workbook there: its data is read (:func:`read_kept`) —

  - 通讯录: every row (联系人, 邮箱, 电话 of the plan's units, and rows of units the plan does not list);
  - 设置: every 项目 and its 值 (a row that looks like a password is left out, as the 设置 sheet
    forbids; it stays in the backup);
  - the input tables: every row with a value in an input column (columns matched by header);
  - 目标任务分解表: the 完成数 typed or filled by 刷新, by 县区 and column;
  - the add-in's sheet (xlwings.conf): the values a clerk set (the interpreter path), except those
    the add-in fixes;
  - 发送记录 and any sheet a clerk added: their values from A1;

  the sheets 刷新 and 校验 generate (奖补明细, 奖补汇总, 完成情况, 校验结果) are left out: the next 刷新
  writes them again;
- the new workbook is built with that data; the old file is first copied to a dated backup beside
  it (``<name>.备份YYYYmmdd-HHMMSS.xlsm``), then replaced.  Both writes go through
  :func:`xl_ecom.ooxml.safeio.write_atomically` (temporary file, fsync, rename), so a full disk
  leaves neither a truncated backup nor a partial workbook: the old workbook stays as it was.

All of it runs under :func:`xl_ecom.ledger.lock.workbook_lock`.  :class:`UpgradeReport` says in
Chinese what was kept, sheet by sheet.
"""

from __future__ import annotations

import datetime as dt
import errno
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xl_ecom.common.errors import XlEcomError
from xl_ecom.common.textsafe import is_formula_like
from xl_ecom.ledger.lock import workbook_lock
from xl_ecom.ooxml import safeio
from xl_ecom.policy import Plan, load_plan
from xl_ecom.workflows import build, layout, settings
from xl_ecom.workflows.tables import TABLES

#: What the lock file says the command is, when the caller does not name it.
DEFAULT_COMMAND = "生成工作簿"


class UpgradeError(XlEcomError):
    """The workbook cannot be rebuilt; the old one is left as it was (the message is Chinese)."""


@dataclass
class UpgradeReport:
    """What :func:`write_city_workbook` did."""

    path: Path
    created: bool = False  # no workbook was there: a fresh build
    unchanged: bool = False  # the rebuild gave the very same bytes: nothing written, no backup
    backup: Path | None = None
    kept: list[tuple[str, int, str]] = field(default_factory=list)  # (sheet, count, what)
    regenerated: list[str] = field(default_factory=list)  # generated sheets left for 刷新
    left_out: list[str] = field(default_factory=list)  # what was not carried over (it is in the backup)

    def kept_count(self, sheet: str) -> int:
        return sum(n for name, n, _ in self.kept if name == sheet)

    def to_text(self) -> str:
        if self.created:
            return f"已生成 {self.path}"
        if self.unchanged:
            return f"{self.path} 已是当前版本，重建结果与原文件完全相同，未改动（不需要备份）。"
        lines = [f"已按新版结构重建 {self.path}，原有数据已保留。", f"原工作簿已备份为 {self.backup}"]
        if self.kept:
            lines.append("保留的数据：")
            lines += [f"  {sheet}：{count} {what}" for sheet, count, what in self.kept]
        else:
            lines.append("原工作簿中没有需要保留的数据。")
        if self.regenerated:
            lines.append(f"以下工作表由“刷新”生成，未复制，请点“刷新”重新生成：{'、'.join(self.regenerated)}")
        if self.left_out:
            lines.append("未保留（仍在备份中）：")
            lines += [f"  {text}" for text in self.left_out]
        return "\n".join(lines)


# ---------------------------------------------------------------------------
# Reading the old workbook
# ---------------------------------------------------------------------------


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value.strip() == "")


def _value(cell) -> Any:
    """A cell's value as the rebuilt workbook should hold it: formulas stay formulas, text that
    looks like a formula stays text."""
    value = cell.value
    if isinstance(value, str) and getattr(cell, "data_type", None) != "f" and is_formula_like(value):
        return build.KeptText(value)
    if value is not None and not isinstance(value, (str, int, float, bool)) and not hasattr(value, "isoformat"):
        return str(value)  # an array formula or other object: keep its text
    return value


def _rows(ws, min_row: int = 1) -> list[list[Any]]:
    rows = [[_value(c) for c in row] for row in ws.iter_rows(min_row=min_row)]
    while rows and all(_blank(v) for v in rows[-1]):
        rows.pop()
    for row in rows:
        while row and _blank(row[-1]):
            row.pop()
    return rows


def _header_map(header: Sequence[Any]) -> dict[int, str]:
    return {i: str(v).strip() for i, v in enumerate(header) if not _blank(v)}


def _read_table(ws, table, report: UpgradeReport) -> list[dict[str, Any]]:
    header = next(ws.iter_rows(min_row=layout.INPUT_HEADER_ROW, max_row=layout.INPUT_HEADER_ROW, values_only=True), ())
    by_header = {c.header: c.key for c in table.columns}
    derived = {a.header for a in table.awards}
    columns = _header_map(header)
    rows: list[dict[str, Any]] = []
    lost: dict[str, int] = {}
    for raw in _rows(ws, layout.INPUT_FIRST_ROW):
        row = {by_header[h]: raw[i] for i, h in columns.items() if h in by_header and i < len(raw) and not _blank(raw[i])}
        _count_lost(raw, columns, set(by_header) | derived, lost)
        if row:
            rows.append(row)
    _report_lost(table.sheet, lost, report)
    return rows


def _count_lost(raw: Sequence[Any], columns: dict[int, str], known: set[str], lost: dict[str, int]) -> None:
    """Count the values of ``raw`` in columns the rebuilt sheet does not have."""
    for i, value in enumerate(raw):
        if _blank(value):
            continue
        header = columns.get(i)
        if header is None:
            from openpyxl.utils import get_column_letter

            header = f"{get_column_letter(i + 1)} 列（无表头）"
        if header not in known:
            lost[header] = lost.get(header, 0) + 1


def _report_lost(sheet: str, lost: dict[str, int], report: UpgradeReport) -> None:
    for header, n in lost.items():
        report.left_out.append(f"{sheet}：“{header}”在新版中没有这一列，{n} 个值未复制")


def _read_contacts(ws, report: UpgradeReport) -> list[dict[str, Any]]:
    header = next(ws.iter_rows(min_row=3, max_row=3, values_only=True), ())
    columns = _header_map(header)
    out = []
    lost: dict[str, int] = {}
    for raw in _rows(ws, 4):
        row = {h: raw[i] for i, h in columns.items() if i < len(raw) and not _blank(raw[i])}
        _count_lost(raw, columns, set(settings.CONTACT_HEADERS), lost)
        if row:
            out.append(row)
    _report_lost(settings.CONTACTS_SHEET, lost, report)
    return out


def _read_settings(ws, report: UpgradeReport) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for raw in _rows(ws, 2):
        if not raw or _blank(raw[0]):
            continue
        key = str(raw[0]).strip()
        if key == settings.SETTINGS_HEADERS[0]:
            continue
        if settings._PASSWORD_KEY.search(key):
            report.left_out.append(f"{settings.SETTINGS_SHEET}：“{key}”一行（密码不能写在工作簿里）")
            continue
        out[key] = _setting_value(key, raw[1] if len(raw) > 1 else None)
    return out


def _setting_value(key: str, value: Any) -> Any:
    """The 值 as the build writes it: a date setting read back as midnight is the date, and a blank
    where the default is blank is the default (so an untouched 设置 rebuilds to the same sheet)."""
    default = settings.SETTINGS_DEFAULTS.get(key)
    if isinstance(value, dt.datetime) and value.time() == dt.time() and "日期" in key:
        return value.date()
    if _blank(value) and key in settings.SETTINGS_DEFAULTS and _blank(default):
        return default
    return value


def _read_annex(ws, plan: Plan) -> dict[tuple[str, str], Any]:
    header = next(ws.iter_rows(min_row=layout.ANNEX_HEADER_ROW, max_row=layout.ANNEX_HEADER_ROW, values_only=True), ())
    keys = {c["short"]: c["key"] for c in plan.annex_columns}
    blocks = {i: keys[str(v).strip()] for i, v in enumerate(header) if not _blank(v) and str(v).strip() in keys}
    offset = layout.ANNEX_BLOCK.index("完成数")
    counties = set(plan.counties)
    done: dict[tuple[str, str], Any] = {}
    for raw in _rows(ws, layout.ANNEX_FIRST_ROW):
        if not raw or _blank(raw[0]) or str(raw[0]).strip() not in counties:
            continue
        for start, key in blocks.items():
            i = start + offset
            if i < len(raw) and not _blank(raw[i]):
                done[(str(raw[0]).strip(), key)] = raw[i]
    return done


def _read_config(ws, fixed: Sequence[str]) -> dict[str, Any]:
    out = {}
    for raw in _rows(ws, 1):
        if not raw or _blank(raw[0]):
            break  # the add-in reads column A down to the first empty cell
        key = str(raw[0]).strip().lower()
        if key not in fixed:
            out[key] = raw[1] if len(raw) > 1 else None
    return out


def read_kept(path: Path, plan: Plan, addin: build.AddIn) -> tuple[build.KeptData, UpgradeReport]:
    """The clerk's data in the city workbook ``path``, and the report of what it holds."""
    import openpyxl
    from openpyxl.utils.exceptions import InvalidFileException

    report = UpgradeReport(path=path)
    try:
        book = openpyxl.load_workbook(path, read_only=True, data_only=False, keep_links=False)
    except (zipfile.BadZipFile, InvalidFileException, KeyError, ValueError, OSError) as exc:
        raise UpgradeError(
            f"“{path}”已存在，但无法作为工作簿读取（{exc}），未改动它。请把它移走或改名后再生成。"
        ) from None
    try:
        names = book.sheetnames
        config = addin.config_sheet()
        built = set(build.sheet_names(addin))
        tables = {t.sheet: t for t in TABLES}
        if layout.SHEET_ANNEX not in names and not (set(tables) & set(names)):
            raise UpgradeError(
                f"“{path}”已存在，但不是市级工作簿（没有“{layout.SHEET_ANNEX}”表，也没有任何输入表），未改动它。"
                "请换一个输出位置，或把它移走后再生成。"
            )
        kept = build.KeptData()
        for name in names:
            ws = book[name]
            if not hasattr(ws, "iter_rows"):  # a chartsheet
                report.left_out.append(f"图表工作表“{name}”")
                continue
            if name in tables:
                kept.table_rows[tables[name].key] = _read_table(ws, tables[name], report)
                report.kept.append((name, len(kept.table_rows[tables[name].key]), "行"))
            elif name == settings.CONTACTS_SHEET:
                kept.contacts = _read_contacts(ws, report)
                report.kept.append((name, len(kept.contacts), "行"))
            elif name == settings.SETTINGS_SHEET:
                kept.settings = _read_settings(ws, report)
                report.kept.append((name, len(kept.settings), "项"))
            elif name == layout.SHEET_ANNEX:
                kept.annex_done = _read_annex(ws, plan)
                report.kept.append((name, len(kept.annex_done), "个完成数"))
            elif config is not None and name == config.name:
                kept.config = _read_config(ws, config.fixed)
                report.kept.append((name, len(kept.config), "项设置"))
            elif name in build.GENERATED_SHEETS:
                report.regenerated.append(name)
            elif name in built:
                continue  # 说明, 任务清单, 奖补测算: written from source
            else:
                kept.extra_sheets[name] = _rows(ws)
                report.kept.append((name, max(len(kept.extra_sheets[name]) - (1 if name == layout.SHEET_MAIL_LOG else 0), 0), "行"))
    finally:
        book.close()
    return kept, report


# ---------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------


def _write_failed(path: Path, exc: OSError, what: str) -> UpgradeError:
    if exc.errno in (errno.ENOSPC, errno.EFBIG, getattr(errno, "EDQUOT", -1)):
        reason = "磁盘空间不足"
    else:
        reason = exc.strerror or str(exc)
    return UpgradeError(f"无法写入{what}“{path}”（{reason}），原工作簿未改动。")


def write_city_workbook(
    path: str | Path,
    *,
    plan: Plan | None = None,
    addin: build.AddIn | None = None,
    command: str = DEFAULT_COMMAND,
) -> UpgradeReport:
    """Build the city workbook at ``path``, keeping the data of a workbook already there (see the
    module docstring); under the workbook's lock."""
    path = Path(path)
    if path.suffix.lower() != ".xlsm":
        raise build.BuildError(f"输出文件“{path}”的扩展名应为 .xlsm（含宏的工作簿）。")
    plan = plan or load_plan()
    addin = build.installed_addin() if addin is None else addin
    path.parent.mkdir(parents=True, exist_ok=True)
    with workbook_lock(path, command):
        if not path.exists():
            data = build.build_bytes(plan, addin)
            try:
                safeio.write_atomically(path, data, backup=False)
            except OSError as exc:
                raise _write_failed(path, exc, "工作簿") from None
            return UpgradeReport(path=path, created=True)
        try:
            old = path.read_bytes()
        except OSError as exc:
            raise UpgradeError(f"无法读取已有的工作簿“{path}”（{exc.strerror or exc}），未改动它。") from None
        kept, report = read_kept(path, plan, addin)
        data = build.build_bytes(plan, addin, kept)
        if data == old:
            report.unchanged = True
            return report
        backup = safeio.backup_path(path)
        try:
            safeio.write_atomically(backup, old, backup=False)
        except OSError as exc:
            raise _write_failed(backup, exc, "备份") from None
        try:
            safeio.write_atomically(path, data, backup=False)
        except OSError as exc:
            backup.unlink(missing_ok=True)  # the workbook is as it was: the copy is not needed
            raise _write_failed(path, exc, "工作簿") from None
        report.backup = backup
        return report
