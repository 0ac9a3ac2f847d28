"""刷新 (``xl-ecom refresh WORKBOOK``): recompute everything generated from the plan and the input tables.

One implementation, three layers, used by the CLI (on the file) and by the ribbon (through xlwings,
:mod:`xl_ecom.frontends.macros`):

1. **read** the input tables into DataFrames (one per :data:`xl_ecom.workflows.tables.TABLES` sheet: header
   at ``layout.INPUT_HEADER_ROW``, data from ``layout.INPUT_FIRST_ROW``, fully blank rows skipped)
   from rows of cell values (:func:`frames_from_rows`): the CLI gets them from the package
   (:meth:`Package.rows`, which reads what openpyxl reads, several times faster), Excel from
   xlwings ranges, tests also from openpyxl (:func:`read_tables`);
2. **compute** (:func:`compute`): check every value (sheet, cell and a Chinese reason for each bad
   one, worded by :func:`xl_ecom.workflows.validate.check_value`), then the awards per row with the
   vectorised engine (``engine.calculate_columns_cents``; cumulative caps grouped by county), totals
   per county and per clause, progress per county against the annex (counts per
   :data:`xl_ecom.workflows.tables.ACTUALS`; the “超1000万元” count applies the rule's own condition as the
   engine resolves it) and the city totals against the text's targets (boundary words through
   :func:`xl_ecom.policy.boundaries.holds`);
3. **lay out** (:func:`generated_sheets`, :func:`annex_updates`): the three generated sheets
   (完成情况 with a native bar chart, 奖补汇总, 奖补明细) as neutral cell grids plus the 完成数
   cells of 目标任务分解表, rendered into the package (:func:`write_package`), into an openpyxl
   workbook (:func:`write_openpyxl`) or into the open book (:func:`xl_ecom.frontends.macros.write_xlwings`).

With a ledger (the ``.台账.sqlite`` file beside the workbook, ``--db`` or 设置's 台账数据库) the workbook is a
view: the input tables are read from the ledger (:func:`ledger_frames`; carry-forward across rounds), rows a
city clerk typed that the ledger does not hold are first imported as a 市本级 submission
(:func:`import_typed_rows`, matched on content, so a second refresh imports nothing), and when the sheets do
not show the ledger's rows the input tables are rewritten from it (:func:`write_input_tables`; rows beyond a
sheet's capacity stay in the ledger and the report says so).  Refresh holds the workbook's lock (``刷新``).

Without a ledger nothing else in the workbook is written.  The CLI edits the package itself: the generated sheets,
their drawing and chart, the new cell styles and the annex sheet's 完成数 cells are replaced as
parts; every other part (input tables, 设置, 通讯录, vbaProject.bin, the ribbon) is copied byte for
byte.  The file is written atomically (temporary file, then ``os.replace``, by
:func:`xl_ecom.ooxml.safeio.write_atomically`), the previous version is kept beside it
(``<name>.备份YYYYmmdd-HHMMSS.xlsm``, as collect does), and a workbook open in Excel or WPS
(``~$`` lock file) is refused.
"""

from __future__ import annotations

import hashlib
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from xl_ecom.common.errors import XlEcomError
from xl_ecom.common.problems import Problem
from xl_ecom.common.processes import release_freed_memory
from xl_ecom.common.progress import Progress, status_text
from xl_ecom.ledger import open_ledger
from xl_ecom.ledger.lock import workbook_lock
from xl_ecom.ooxml import safeio
from xl_ecom.policy import Plan, load_plan
from xl_ecom.rules.money import describe
from xl_ecom.workflows import layout
from xl_ecom.workflows.refresh.compute import (
    ONLINE_SALES_TARGET,
    TOURISM_RULE,
    TOURISM_TARGETS,
    CityTarget,
    RefreshResult,
    _condition_mask,
    compute,
    ledger_inputs,
)
from xl_ecom.workflows.refresh.errors import RefreshError
from xl_ecom.workflows.refresh.layouts import (
    GENERATED_SHEETS,
    SHEET_ORDER,
    Block,
    ChartSpec,
    SheetSpec,
    annex_updates,
    generated_sheets,
    progress_gap,
    progress_rate,
)
from xl_ecom.workflows.refresh.read import (
    Imported,
    InputFrame,
    Package,
    check_annex,
    frames_from_rows,
    frames_from_source,
    import_typed_rows,
    ledger_frames,
    ledger_url,
    read_package,
    read_tables,
    row_keys,
)
from xl_ecom.workflows.refresh.write import check_kept, set_input_print_areas, write_openpyxl, write_package
from xl_ecom.workflows.tables import TABLES

__all__ = [
    "GENERATED_SHEETS", "ONLINE_SALES_TARGET", "SHEET_ORDER", "TOURISM_RULE", "TOURISM_TARGETS", "Block", "ChartSpec",
    "CityTarget", "InputFrame", "Package", "Problem", "Progress", "RefreshError", "RefreshReport", "RefreshResult",
    "SheetSpec", "_condition_mask", "add_cli", "annex_updates", "check_annex", "cmd_refresh", "compute",
    "Imported", "changed_tables", "imported_lines", "reconcile", "rows_digest", "sheet_rows_of",
    "frames_from_rows", "frames_from_source", "generated_sheets", "progress_gap", "progress_rate", "read_package",
    "read_tables", "refresh_workbook", "write_openpyxl", "write_package",
]


def _mask_url(url: str) -> str:
    """The ledger's location as a clerk reads it: the SQLite file's path, else the URL without its password."""
    import sqlalchemy as sa

    try:
        parsed = sa.engine.make_url(url)
    except Exception:
        return "***"
    if parsed.get_backend_name() == "sqlite":
        return str(parsed.database)
    return parsed.render_as_string(hide_password=True)


@dataclass
class RefreshReport:
    path: Path
    backup: Path | None
    result: RefreshResult
    seconds: float
    ledger_url: str | None = None
    imported: Imported = field(default_factory=Imported)  # rows a city clerk typed (市本级), and stale rows left out
    rewritten: bool = False  # the input tables were rewritten from the ledger
    overflow: dict = field(default_factory=dict)  # sheet -> rows in the ledger beyond what the sheet holds

    def to_text(self) -> str:
        r = self.result
        lines = [f"已刷新：{self.path}"]
        if self.backup:
            lines.append(f"原文件已备份为：{self.backup}")
        if self.ledger_url:
            source = "台账" + (f"（{_mask_url(self.ledger_url)}）")
            lines.append(f"数据来源：{source}")
            lines += imported_lines(self.imported)
            if self.rewritten:
                lines.append("输入表已按台账的当前数据重写")
            for sheet, n in self.overflow.items():
                lines.append(f"“{sheet}”共{n:,}行，超出工作表容量（{SHEET_CAPACITY:,}行），"
                             f"表中只显示前{SHEET_CAPACITY:,}行，其余保存在台账中（可用 xl-ecom export 导出），计算包含全部行")
        else:
            lines.append("数据来源：工作簿的输入表（无台账）")
        lines.append(f"政策日期：{r.on.isoformat()}；读取输入行：{sum(r.rows_read.values())}行")
        lines.append(f"奖补合计：{r.total_cents / 100:,.2f} 元（{sum(n for n, _ in r.by_rule.values())}笔）")
        for c in r.counties:
            total = int(r.by_county.loc[c].sum()) if len(r.by_county.columns) else 0
            done = "，".join(f"{r.labels.get(k, k)} {r.actuals[c].get(k, 0)}/{r.targets[c][k]}" for k in r.targets[c])
            lines.append(f"  {c}：奖补 {total / 100:,.2f} 元；完成/目标 {done}")
        for t in r.city:
            if t.met is not None:
                actual = f"{t.actual:,.2f}元" if t.unit == "元" else f"{describe(t.actual)}{t.unit}"
                lines.append(f"  {t.text}：实际 {actual}，{'已达到' if t.met else '未达到'}")
        lines.append(f"用时 {self.seconds:.2f} 秒")
        return "\n".join(lines)


def refresh_workbook(path, plan: Plan | None = None, on=None, progress: Progress | None = None, backup: bool = True,
                     db: str | None = None, office_locks: bool = True) -> RefreshReport:
    """Refresh the workbook file at ``path`` in place (atomic write, backup, lock check).

    With a ledger (``db``, else 设置's 台账数据库, else the ``.台账.sqlite`` file beside the workbook) the
    input tables are read from the ledger: rows a city clerk typed into them that the ledger does not
    hold are imported first as a 市本级 submission, then the input tables show the ledger's current rows.
    Without one the input tables are read from the sheets.  Holds the workbook's lock (``刷新``)."""
    path = Path(path)
    if not path.is_file():
        raise RefreshError(f"找不到工作簿“{path}”")
    locks = safeio.lock_files(path)
    if locks and office_locks:
        raise RefreshError(
            f"工作簿“{path.name}”正在 Excel 或 WPS 中打开（发现锁定文件“{locks[0].name}”），命令行不能同时改写它。"
            "请先保存并关闭该工作簿，或直接在 Excel 里点“刷新”按钮。"
        )
    release_freed_memory()  # a province's rows: freed text columns must not stay reserved
    with workbook_lock(path, "刷新", office_locks=office_locks):
        return _refresh(path, plan or load_plan(), on, progress, backup, db)


def _refresh(path: Path, plan: Plan, on, progress: Progress | None, backup: bool, db: str | None) -> RefreshReport:
    started = time.perf_counter()
    if progress:
        progress("打开工作簿")
    original = path.read_bytes()
    pkg = Package(original, path.name)
    frames, on = read_package(pkg, plan, on, progress)
    url = ledger_url(path, db, pkg)
    imported, rewritten, base = Imported(), False, original
    if url is not None:
        with open_ledger(path, url) as ledger:
            held, imported, changed = reconcile(ledger, frames, path.name, hashlib.sha256(original).hexdigest(),
                                                len(original), progress)
        if changed:
            if progress:
                progress("按台账写入输入表")
            base = write_input_tables(original, held, path.name)
            pkg = Package(base, path.name)
            rewritten = True
        frames = held
    departments, previous = ledger_inputs(path, on, plan, url=url)  # department 完成数 and the previous round (环比)
    result = compute(frames, on=on, plan=plan, progress=progress, departments=departments)
    result.previous = previous
    write_package(pkg, generated_sheets(result, plan), annex_updates(result, plan), progress, plan)
    set_input_print_areas(pkg, frames)
    if progress:
        progress("保存")
    data = pkg.to_bytes()
    check_kept(base, data, path.name)  # and base kept the original's (write_input_tables checks it)
    try:
        bak = safeio.write_atomically(path, data, backup=backup)
    except safeio.FileBusyError as exc:
        raise RefreshError(str(exc)) from None
    overflow = {f.table.sheet: len(f.data) for f in frames.values() if len(f.data) > SHEET_CAPACITY}
    return RefreshReport(path, bak, result, time.perf_counter() - started, url, imported, rewritten, overflow)


def imported_lines(imported: Imported) -> list[str]:
    """What the import of typed rows did, for the clerk (CLI report and the 刷新 button's message)."""
    lines = []
    if imported.rows:
        lines.append(f"输入表中有{imported.rows}行台账中没有，已作为“市本级”的报送登记到台账")
    if imported.superseded:
        lines.append(f"输入表中有{imported.superseded}行是台账中已被新版本替代的旧数据（如县区重报前的行），"
                     "未登记为市本级，按台账的当前数据显示")
    return lines


def reconcile(ledger, frames: dict[str, InputFrame], name: str, sha256: str, size: int,
              progress: Progress | None = None) -> tuple[dict[str, InputFrame], Imported, list]:
    """The sheets against the ledger, the step both the CLI and the 刷新 button take before computing:
    rows typed into the input tables that the ledger does not hold become a 市本级 submission
    (``name``/``sha256``/``size`` describe where they were read); then the ledger's current rows.

    Returns those rows, what was imported (:class:`Imported`), and the input tables whose sheets must be
    rewritten to show them (:func:`changed_tables`)."""
    if progress:
        progress("核对台账")
    imported = import_typed_rows(ledger, frames, name, sha256, size)
    problems: list[Problem] = []
    held = ledger_frames(ledger, problems, progress=progress)
    if problems:
        raise RefreshError(f"台账数据有{len(problems)}处问题，未刷新：", problems)
    return held, imported, changed_tables(frames, held)


def rows_digest(frames: dict[str, InputFrame]) -> tuple[str, int]:
    """SHA-256 and size of the input rows' canonical content: the 市本级 submission's file hash when
    the rows were read from an open workbook (the 刷新 button) rather than from a file."""
    import json

    content = {t.key: row_keys(t, frames[t.key].data) for t in TABLES if t.key in frames}
    data = json.dumps(content, ensure_ascii=False, sort_keys=True).encode("utf-8")
    return hashlib.sha256(data).hexdigest(), len(data)


def changed_tables(sheet: dict[str, InputFrame], held: dict[str, InputFrame]) -> list:
    """The input tables whose sheet rows are not the ledger's rows (on content, in order)."""
    changed = []
    for table in TABLES:
        a, b = sheet.get(table.key), held.get(table.key)
        if (a is None) != (b is None) or (
                a is not None and b is not None and row_keys(table, a.data) != row_keys(table, b.data)):
            changed.append(table)
    return changed


def sheet_rows_of(frame: InputFrame) -> list[dict]:
    """A frame's input values as the rows its sheet shows (at most a sheet's capacity; the rest stay in the ledger)."""
    keys = [c.key for c in frame.table.columns]
    data = frame.data[keys].iloc[:SHEET_CAPACITY]
    return data.astype(object).where(data.notna(), None).to_dict("records")


#: data rows an input table can show: the sheet's 1,048,576 rows below its header rows
SHEET_CAPACITY = 1_048_576 - layout.INPUT_FIRST_ROW + 1


def write_input_tables(original: bytes, frames: dict[str, InputFrame], name: str) -> bytes:
    """The workbook with its input tables showing ``frames`` (the ledger's rows), award formulas
    regenerated, written into its package as collect writes them (:class:`PackageTables`); every
    other part (VBA project, ribbon, the other sheets) kept byte for byte."""
    from xl_ecom.workflows import collect
    from xl_ecom.workflows.citybook import PackageTables

    try:
        book = PackageTables(Package(original, name))
        options = collect.formula_options(book)
        for table in TABLES:
            frame = frames.get(table.key)
            if frame is None or table.sheet not in book.sheetnames:
                continue
            book.write(table, sheet_rows_of(frame), None, options)
        book.finish()
        data = book.pkg.to_bytes()
        collect.check_macros_kept(original, data, name)
    except XlEcomError as exc:
        raise RefreshError(str(exc)) from None
    return data


# ---------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------


def cmd_refresh(args, out=None, err=None) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    try:
        report = refresh_workbook(args.workbook, on=args.date, backup=not args.no_backup, db=getattr(args, "db", None),
                                  progress=(lambda m, i=None, n=None: print(status_text(m, i, n), file=err)) if args.verbose else None)
    except RefreshError as exc:  # exit codes as in cli: 2 = error, nothing written
        text = exc.to_text()
        print(text if text.startswith("错误：") else f"错误：{text}", file=err)
        return 2
    except XlEcomError as exc:
        print(f"错误：{exc}", file=err)
        return 2
    except PermissionError as exc:
        print(f"错误：无法写入“{exc.filename}”（文件可能正被其他程序占用或没有写权限）", file=err)
        return 2
    print(report.to_text(), file=out)
    return 0


def add_cli(subparsers):
    p = subparsers.add_parser(
        "refresh",
        help="刷新：按输入表重新计算奖补明细、奖补汇总、完成情况和目标任务分解表的完成数",
        description="刷新市级工作簿中的生成内容（奖补明细、奖补汇总、完成情况、目标任务分解表的完成数）。"
        "有台账时按台账的当前数据计算：输入表中市里录入而台账中没有的行先作为“市本级”的报送登记到台账，"
        "输入表再按台账显示；没有台账时按输入表计算，不改动输入表。设置、通讯录等不改动。"
        "写入前把原文件备份为 <文件名>.备份<日期时间>.xlsm。",
    )
    p.add_argument("workbook", metavar="WORKBOOK", help="市级工作簿，如 目标任务分解表.xlsm")
    p.add_argument("--date", help="政策日期（默认取“设置”表中的政策日期），如 2020-12-31")
    p.add_argument("--db", metavar="URL",
                   help="台账数据库（如 postgresql://用户:密码@主机/库名）；默认为设置表“台账数据库”，"
                        "再默认为工作簿旁的“<工作簿名>.台账.sqlite”（存在时）。有台账时输入表按台账的当前数据刷新")
    p.add_argument("--no-backup", action="store_true", help="不保留备份文件")
    p.add_argument("-v", "--verbose", action="store_true", help="显示进度")
    p.set_defaults(func=cmd_refresh)
    return p
