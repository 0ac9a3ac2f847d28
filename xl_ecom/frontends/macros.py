"""The ribbon's entry points: ``RunPython "import xl_ecom.frontends.macros; xl_ecom.frontends.macros.<entry>()"``.

Each entry takes the workbook from ``xw.Book.caller()`` (or the ``book`` argument, for tests and
for calling from Python) and runs the same implementation as its CLI twin.  The layer is thin and
works on the open book through xlwings ranges, never on its file:

- Excel holds the file open (and may hold unsaved edits), so the CLI's way — rewrite the file —
  is not available while the book is open, and closing and reopening the calling book from its
  own macro would end the macro.  So the entries **read** cell values through xlwings (one 2-D
  read per sheet, values as Excel computed them) and hand them to the file-independent core of
  the CLI implementation:
  refresh → :func:`xl_ecom.workflows.refresh.frames_from_rows` and :func:`xl_ecom.workflows.refresh.compute`;
  validate → :func:`xl_ecom.workflows.validate.validate_workbook` on an in-memory openpyxl copy of the
  input tables (:func:`snapshot`); collect → the CLI's two steps, :func:`xl_ecom.workflows.collect.record_folder`
  (files → the ledger of the saved book) and :func:`xl_ecom.workflows.collect.write_current` (the touched
  counties' current rows) on an in-memory copy of the input tables (formulas kept where the engine can read them);
- they **write** what that core produced back through xlwings ranges: refresh's layout
  (:func:`xl_ecom.workflows.refresh.generated_sheets`, :func:`xl_ecom.workflows.refresh.annex_updates`, rendered by
  :func:`write_xlwings`), validate's sheet (its own xlwings writer), collect's merged tables;
  formula-like text always keeps Excel's quote prefix;
- buttons that only produce other files (部门任务表, 县区工作簿) call the file-producing function
  itself, with the output folder and dates from the book's 设置 sheet; 发送邮件 is mail's own
  workbook entry (:func:`xl_ecom.workflows.mail.send_mail_from_book`);
- the reporting cycle's buttons call cycle's entries with the saved file's path: 催报/退回
  (:func:`xl_ecom.workflows.cycle.remind_workbook` / :func:`~xl_ecom.workflows.cycle.return_workbook`) with the
  open book's 设置 and 通讯录 (unsaved edits count) and ``lock=False``, inside the xl-ecom lock taken with
  ``office_locks=False`` (Excel's own ``~$`` file is this very book; another xl-ecom command still refuses);
  新建轮次 (:func:`xl_ecom.workflows.cycle.new_round_from_settings`, refused while 设置's 当前轮次 or
  报送截止日期 differ from the saved file); 报送情况 renders
  :func:`xl_ecom.workflows.cycle.status_sheet_for_workbook`'s layout with the refresh sheet writer;
  进展通报 is :func:`xl_ecom.workflows.report.write_report`.

Progress goes to Excel's status bar; every error becomes a Chinese message box, never a traceback.
The module imports xlwings lazily so the rest of the package does not depend on it.
"""

from __future__ import annotations

import sys
import traceback
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from xl_ecom.common.errors import XlEcomError
from xl_ecom.common.progress import status_text
from xl_ecom.workflows import layout

TITLE = "农村电商"
LAST_UI = None  # the Ui of the latest entry run (its status texts and messages), for diagnosis
MAX_LISTED = 15  # problems listed in a message box (the rest are counted)


# ---------------------------------------------------------------------------------------------
# the shell every entry runs in
# ---------------------------------------------------------------------------------------------


def _caller(book):
    if book is not None:
        return book
    import xlwings as xw

    return xw.Book.caller()


class Ui:
    """Status bar and message boxes of the calling Excel (each call tolerant of engines without them)."""

    def __init__(self, book):
        self.book = book
        self.messages: list[str] = []  # every status text shown, in order
        self.alerts: list[tuple[str, str]] = []
        self._screen_off = False

    def status(self, text: str) -> None:
        self.messages.append(text)
        try:
            self.book.app.status_bar = text
        except (NotImplementedError, AttributeError):
            pass  # the remote interpreter (Office.js / xlwings Server) has no status bar

    def clear_status(self) -> None:
        try:
            self.book.app.status_bar = False  # Excel: hand the status bar back
        except (NotImplementedError, AttributeError):
            pass

    def alert(self, text: str, mode: str = "info") -> None:
        self.alerts.append((mode, text))
        try:
            self.book.app.alert(text, title=TITLE, mode=mode)
        except Exception:  # no message box available: the text is still on stderr
            print(text, file=sys.stderr)

    def screen_updating(self, on: bool) -> None:
        if on and not self._screen_off:
            return
        try:
            self.book.app.screen_updating = on
        except Exception:
            pass
        self._screen_off = not on


def _run(book, action: str, work: Callable[[Any, Ui], Any]):
    """Run ``work(book, ui)``: status bar while it runs, a Chinese message box on any error.

    Returns what ``work`` returns, or None after an error."""
    global LAST_UI
    try:
        book = _caller(book)
    except Exception as exc:  # not called from Excel (xw.Book.caller needs a calling workbook)
        print(f"{action}：找不到调用它的 Excel 工作簿（{type(exc).__name__}）。请在 Excel 中点功能区按钮，"
              f"或在命令行使用 xl-ecom 的对应命令。", file=sys.stderr)
        return None
    ui = LAST_UI = Ui(book)
    ui.status(f"{action}：开始……")
    try:
        return work(book, ui)
    except XlEcomError as exc:
        text = exc.to_text(MAX_LISTED) if hasattr(exc, "to_text") else str(exc)
        ui.alert(f"{action}未完成：\n{text}", mode="critical")
    except PermissionError as exc:
        ui.alert(f"{action}未完成：无法写入文件“{exc.filename}”，它可能正被 Excel 或 WPS 打开，请关闭后重试。", mode="critical")
    except OSError as exc:
        ui.alert(f"{action}未完成：文件操作失败（{exc.strerror or exc}）{exc.filename or ''}", mode="critical")
    except Exception as exc:  # an unexpected failure: a message for the clerk, the details on stderr
        traceback.print_exc(file=sys.stderr)
        ui.alert(
            f"{action}时发生意外错误（{type(exc).__name__}：{exc}）。\n工作簿未被部分改写的内容请核对；"
            "请把此提示截图发给技术支持。",
            mode="critical",
        )
    finally:
        ui.screen_updating(True)
        ui.clear_status()
    return None


# ---------------------------------------------------------------------------------------------
# reading through xlwings
# ---------------------------------------------------------------------------------------------


def sheet_names(book) -> list[str]:
    return [s.name for s in book.sheets]


def sheet_rows(book, name: str, first_row: int = 1, ncols: int | None = None) -> list[list] | None:
    """The cell values of sheet ``name`` from ``first_row`` down to its last used row (one read)."""
    if name not in sheet_names(book):
        return None
    sheet = book.sheets[name]
    used = sheet.used_range
    last_row = used.last_cell.row
    last_col = ncols or used.last_cell.column
    if last_row < first_row:
        return []
    values = sheet.range((first_row, 1), (last_row, last_col)).options(ndim=2).value
    return [list(r) for r in values]


def _settings(book) -> dict:
    from xl_ecom.workflows.settings import SETTINGS_SHEET, PasswordInSettingsWarning, SettingsError, settings_from_rows

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PasswordInSettingsWarning)
        try:
            return settings_from_rows(sheet_rows(book, SETTINGS_SHEET) or [])
        except SettingsError as exc:
            raise XlEcomError(f"“{SETTINGS_SHEET}”表有误：{exc}") from None


def _book_path(book) -> Path:
    return Path(book.fullname)


def _output_dir(book, settings: dict) -> Path:
    from xl_ecom.workflows.settings import output_dir

    return output_dir(settings, _book_path(book))


def snapshot(book, names: Sequence[str]):
    """An in-memory openpyxl workbook holding the values of the named sheets (as Excel shows them).

    Lets functions written for openpyxl workbooks (validation) run on the open book unchanged."""
    from openpyxl import Workbook

    wb = Workbook()
    wb.remove(wb.active)
    present = set(sheet_names(book))
    for name in names:
        if name not in present:
            continue
        ws = wb.create_sheet(name)
        for r, row in enumerate(sheet_rows(book, name) or [], start=1):
            for c, v in enumerate(row, start=1):
                if v is not None and v != "":
                    ws.cell(row=r, column=c, value=v)
    return wb


# ---------------------------------------------------------------------------------------------
# writing through xlwings
# ---------------------------------------------------------------------------------------------

_FORMATS = {"money": "#,##0.00", "count": "0", "percent": "0.0%"}
_FONT = "仿宋"
_TITLE_FONT = "宋体"
_HEADER_COLOR = (217, 225, 242)  # sheets.HEADER_FILL


def _xl_value(v):
    """A value for ``range.value``: text that Excel would take for a formula keeps the quote prefix."""
    from xl_ecom.ooxml.safeio import safe_text

    if v is None:
        return ""
    return safe_text(v) if isinstance(v, str) else v


def _sheet_for(book, name: str, after: str | None):
    """The generated sheet ``name``, emptied (kept when it exists, so its VBA code name stays)."""
    if name in sheet_names(book):
        sheet = book.sheets[name]
        for chart in list(sheet.charts):
            chart.delete()
        sheet.clear()
        return sheet
    names = sheet_names(book)
    anchor = book.sheets[after] if after in names else book.sheets[len(names) - 1]
    return book.sheets.add(name, after=anchor)


def write_xlwings(book, specs, updates: dict, ui: Ui | None = None) -> None:
    """Render refresh's layout into the open book: the generated sheets and the annex 完成数 cells."""
    after = layout.SHEET_ANNEX
    for spec in _placement_order(specs):
        if ui:
            ui.status(f"刷新：写入“{spec.name}”……")
        sheet = _sheet_for(book, spec.name, after)
        after = spec.name
        _render(sheet, spec)
    annex = book.sheets[layout.SHEET_ANNEX]
    for (r, c), v in sorted(updates.items()):
        annex.range((r, c)).value = v


def _placement_order(specs):
    """Generated sheets go right after 目标任务分解表, in the order refresh lists them for the workbook."""
    from xl_ecom.workflows.refresh import SHEET_ORDER

    return sorted(specs, key=lambda s: SHEET_ORDER.index(s.name))


def _render(sheet, spec) -> None:
    ncols = spec.ncols
    sheet.range((1, 1)).value = spec.title
    sheet.range((2, 1)).value = spec.subtitle
    title = sheet.range((1, 1), (1, ncols))
    title.merge()
    title.font.bold = True
    title.font.size = 16
    title.font.name = _TITLE_FONT
    sheet.range((2, 1), (2, ncols)).merge()
    sheet.range((2, 1)).font.name = _FONT
    for j, w in enumerate(spec.widths, start=1):
        sheet.range((1, j)).column_width = w
    for b in spec.blocks:
        grid = [[_xl_value(v) for v in row] for row in (list(b.headers) + list(b.rows))]
        width = max(len(r) for r in grid)
        grid = [r + [""] * (width - len(r)) for r in grid]
        sheet.range((b.top, 1)).value = grid
        head = sheet.range((b.top, 1), (b.top + len(b.headers) - 1, width))
        head.font.bold = True
        head.font.name = _TITLE_FONT
        head.color = _HEADER_COLOR
        for (r1, c1, r2, c2) in b.merges:
            sheet.range((r1, c1), (r2, c2)).merge()
        if b.rows:
            body = sheet.range((b.first_body_row, 1), (b.last_row, width))
            body.font.name = _FONT
            for j, kind in enumerate(b.kinds, start=1):
                fmt = _FORMATS.get(kind)
                if fmt:
                    sheet.range((b.first_body_row, j), (b.last_row, j)).number_format = fmt
            for (i, j), kind in sorted(b.overrides.items()):
                sheet.range((b.first_body_row + i, j + 1)).number_format = _FORMATS.get(kind, "General")
            if b.row_height:
                sheet.range((b.first_body_row, 1), (b.last_row, 1)).row_height = b.row_height
            if b.total_rows:
                sheet.range((b.last_row - b.total_rows + 1, 1), (b.last_row, width)).font.bold = True
    if spec.chart:
        _chart(sheet, spec.chart)


def _chart(sheet, ch) -> None:
    col0, r1, r2 = ch.categories
    cols = [s[0] for s in ch.series]
    hrow = ch.series[0][1]
    # the chart block is contiguous: categories then the series columns, header row above
    source = sheet.range((hrow, col0), (r2, max(cols)))
    try:
        anchor = sheet.range(ch.anchor)
        left, top = anchor.left, anchor.top
    except Exception:  # engines without geometry (remote interpreter): Excel places it
        left, top = 0, 0
    chart = sheet.charts.add(left=left, top=top, width=ch.width_cm * 28.35, height=ch.height_cm * 28.35)
    chart.chart_type = "column_clustered"
    chart.set_source_data(source)
    try:
        chart.name = ch.title
    except Exception:
        pass


# ---------------------------------------------------------------------------------------------
# the entries
# ---------------------------------------------------------------------------------------------


def refresh(book=None):
    """刷新: recompute the generated sheets and the annex 完成数 of the open workbook."""

    def work(book, ui: Ui):
        from xl_ecom.policy import load_plan
        from xl_ecom.workflows import refresh as core
        from xl_ecom.workflows.refresh.read import LEDGER_SETTING
        from xl_ecom.workflows.tables import TABLES

        plan = load_plan()
        settings = _settings(book)
        on = settings.get("政策日期")
        problems: list = []
        frames = {}
        names = set(sheet_names(book))
        if layout.SHEET_ANNEX not in names:
            raise core.RefreshError(f"工作簿中没有“{layout.SHEET_ANNEX}”表，不是本方案的市级工作簿")
        for i, table in enumerate(TABLES, start=1):
            ui.status(f"刷新：读取“{table.sheet}”（{i}/{len(TABLES)}）……")
            if table.sheet not in names:
                problems.append(core.Problem(table.sheet, "", "工作簿中没有这张输入表"))
                continue
            ncols = len(table.columns) + len(table.awards) + 8
            rows = sheet_rows(book, table.sheet, layout.INPUT_HEADER_ROW, ncols) or []
            frames[table.key] = core.frames_from_rows(table, rows, problems)
        annex = book.sheets[layout.SHEET_ANNEX]
        problems += core.check_annex(lambda r, c: annex.range((r, c)).value, plan)
        if problems:
            raise core.RefreshError(f"工作簿结构有{len(problems)}处问题，未刷新：", problems)
        progress = lambda m, i=None, n=None: ui.status(status_text(f"刷新：{m}", i, n))  # noqa: E731
        path = _book_path(book)
        url = core.ledger_url(path, settings.get(LEDGER_SETTING)) if path.is_absolute() else None
        notes: list[str] = []
        if url is None:
            result = _refresh_compute(book, ui, core, frames, on, plan, path, None, progress)
        else:  # the ledger is the record, as for the CLI: typed rows imported, the input tables show its rows
            with _cycle_lock(path, "刷新"):
                with _collect_ledger(path, settings) as ledger:
                    sha256, size = core.rows_digest(frames)
                    held, imported, changed = core.reconcile(ledger, frames, path.name, sha256, size, progress)
                notes += [line + "。" for line in core.imported_lines(imported)]
                if changed:
                    _show_ledger_rows(book, ui, changed, held, on)
                    notes.append("输入表已按台账的当前数据重写（" + "、".join(t.sheet for t in changed) + "），尚未保存。")
                result = _refresh_compute(book, ui, core, held, on, plan, path, url, progress)
        n = sum(count for count, _ in result.by_rule.values())
        ui.alert(
            f"刷新完成：读取{sum(result.rows_read.values())}行，奖补{n}笔，合计{result.total_cents / 100:,.2f}元"
            f"（政策日期{result.on.isoformat()}；数据来源：{'台账' if url else '本工作簿的输入表（无台账）'}）。"
            + "".join("\n" + line for line in notes),
        )
        return result

    return _run(book, "刷新", work)


def _refresh_compute(book, ui: Ui, core, frames, on, plan, path: Path, url, progress):
    """Compute from ``frames`` (department replies and the previous round's 环比 from the ledger, as the
    CLI's refresh) and write the generated sheets and the annex 完成数 into the open book."""
    departments, previous = core.ledger_inputs(path, on, plan, url=url)
    result = core.compute(frames, on=on, plan=plan, progress=progress, departments=departments)
    result.previous = previous
    ui.screen_updating(False)
    write_xlwings(book, core.generated_sheets(result, plan), core.annex_updates(result, plan), ui)
    ui.screen_updating(True)
    return result


def _show_ledger_rows(book, ui: Ui, tables, held, on) -> None:
    """Write the ledger's current rows into the open book's input tables (award formulas regenerated,
    text never taken for a formula), as the CLI's refresh rewrites them in the file."""
    from xl_ecom.workflows import citybook
    from xl_ecom.workflows.refresh import sheet_rows_of

    wb, last_rows = _input_snapshot(book, tables)
    ui.screen_updating(False)
    for table in tables:
        if table.sheet not in wb.sheetnames or table.key not in held:
            continue
        ui.status(f"刷新：按台账写入“{table.sheet}”……")
        citybook.write_table(wb[table.sheet], table, sheet_rows_of(held[table.key]), None, {"on": on})
        _write_back_table(book, wb[table.sheet], table, last_rows.get(table.sheet, 0))
    ui.screen_updating(True)


def make_departments(book=None):
    """生成部门任务表: one .xlsx per unit in <输出文件夹>/部门任务表 (same function as ``xl-ecom departments``)."""

    def work(book, ui: Ui):
        from xl_ecom.workflows.departments import SUBDIR, make_department_sheets

        settings = _settings(book)
        out = _output_dir(book, settings)
        with _collect_ledger(_saved_path(book), settings) as ledger:  # issue tokens, as 生成县区工作簿
            paths = make_department_sheets(
                out,
                on=settings.get("政策日期"),
                due=settings.get("报送截止日期"),
                progress=lambda name, i=None, n=None: ui.status(status_text(f"生成部门任务表：{name}", i, n)),
                ledger=ledger,
            )
        ui.alert(f"已生成部门任务表{len(paths)}个，在：\n{out / SUBDIR}")
        return paths

    return _run(book, "生成部门任务表", work)


def make_counties(book=None):
    """生成县区工作簿: one .xlsx per county in <输出文件夹>/县区工作簿 (same function as
    ``xl-ecom counties --workbook 本工作簿``): each file is recorded in the book's ledger (设置's
    台账数据库, else the ``.台账.sqlite`` beside the saved book) as issued and carries its issue token,
    which 汇总县区报表 checks."""

    def work(book, ui: Ui):
        from xl_ecom.workflows.counties import SUBDIR, make_county_workbooks

        settings = _settings(book)
        out = _output_dir(book, settings)
        with _collect_ledger(_saved_path(book), settings) as ledger:
            paths = make_county_workbooks(
                out,
                on=settings.get("政策日期"),
                due=settings.get("报送截止日期"),
                progress=lambda name, i=None, n=None: ui.status(status_text(f"生成县区工作簿：{name}", i, n)),
                ledger=ledger,
            )
        ui.alert(f"已生成县区工作簿{len(paths)}个，在：\n{out / SUBDIR}")
        return paths

    return _run(book, "生成县区工作簿", work)


def validate(book=None):
    """校验数据: check the input tables (values as Excel shows them) and write the 校验结果 sheet."""

    def work(book, ui: Ui):
        from xl_ecom.workflows import validate as core
        from xl_ecom.workflows.tables import TABLES

        ui.status("校验数据：读取输入表……")
        wb = snapshot(book, [t.sheet for t in TABLES])
        ui.status("校验数据：检查……")
        problems = core.validate_workbook(wb)
        core.write_validation_sheet(book, problems)
        errors = sum(p.is_error for p in problems)
        ui.alert(core.summary(problems) + (f"\n详见“{layout.SHEET_VALIDATION}”表。" if problems else ""),
                 mode="critical" if errors else "info")
        return problems

    return _run(book, "校验数据", work)


def send_mail(book=None):
    """发送邮件: mail's own workbook entry (it reads 设置/通讯录 through xlwings and shows its own messages)."""

    def work(book, ui: Ui):
        from xl_ecom.workflows.mail import send_mail_from_book

        return send_mail_from_book(book)

    return _run(book, "发送邮件", work)


#: Where the ribbon's 汇总县区报表 looks for the returned county workbooks: <输出文件夹>/县区报表
#: (not 县区工作簿, which holds the blank generated ones).
COLLECT_SUBDIR = "县区报表"


def collect(book=None, folder=None):
    """汇总县区报表: check the returned county workbooks in ``folder`` (default
    <输出文件夹>/县区报表), record each as a ledger submission and write the touched counties'
    current rows into the open book's input tables — the CLI's ``xl-ecom collect --into`` steps.

    Step 1, files → ledger, is the CLI's own (:func:`xl_ecom.workflows.collect.record_folder`: token
    check, versions, a 有错 file keeps the previous version), with the ledger of the saved book
    (设置's 台账数据库, else the ``.台账.sqlite`` beside it).  Step 2, ledger → rows
    (:func:`xl_ecom.workflows.collect.write_current`), runs on an in-memory copy of the input tables
    (values, and formulas where the engine can read them); the changed tables are written back
    through xlwings, formula-like text with Excel's quote prefix.  The report is the CLI's text."""
    return _run(book, "汇总县区报表", lambda b, ui: _collect_work(b, ui, folder))


def _input_snapshot(book, tables):
    """openpyxl copy of the input tables: cells (formulas where readable), Excel Table extents."""
    from openpyxl import Workbook
    from openpyxl.worksheet.table import Table

    wb = Workbook()
    wb.remove(wb.active)
    present = set(sheet_names(book))
    last_rows = {}
    for table in tables:
        if table.sheet not in present:
            continue
        sheet = book.sheets[table.sheet]
        ws = wb.create_sheet(table.sheet)
        ncols = len(table.columns) + len(table.awards)
        last = sheet.used_range.last_cell.row
        last_rows[table.sheet] = last
        if last < 1:
            continue
        rng = sheet.range((1, 1), (last, ncols))
        values = rng.options(ndim=2).value
        try:
            formulas = rng.formula  # Excel: per cell, "=..." for formulas
        except NotImplementedError:  # remote interpreter: formulas are not sent with the book
            formulas = None
        if formulas is not None and (not isinstance(formulas, (list, tuple)) or not isinstance(formulas[0], (list, tuple))):
            formulas = [formulas] if isinstance(formulas, (list, tuple)) else [[formulas]]
        for r, row in enumerate(values, start=1):
            for c, v in enumerate(row, start=1):
                f = formulas[r - 1][c - 1] if formulas is not None else None
                if isinstance(f, str) and f.startswith("="):
                    ws.cell(row=r, column=c, value=f)
                elif v is not None and v != "":
                    cell = ws.cell(row=r, column=c, value=v)
                    if isinstance(v, str):
                        cell.data_type = "s"
        try:
            found = next((t for t in sheet.tables if t.name == table.key), None)
        except Exception:
            found = None
        if found is not None:
            ws.add_table(Table(displayName=table.key, ref=found.range.address.replace("$", "")))
    return wb, last_rows


def _write_back_table(book, ws, table, old_last: int) -> None:
    from xl_ecom.ooxml import safeio

    sheet = book.sheets[table.sheet]
    first = layout.INPUT_FIRST_ROW
    ncols = len(table.columns) + len(table.awards)
    last = max(ws.max_row, old_last)
    if last < first:
        return
    grid = []
    for r in range(first, last + 1):
        row = []
        for c in range(1, ncols + 1):
            cell = ws.cell(row=r, column=c)
            v = cell.value
            if v is None:
                row.append("")
            elif isinstance(v, str) and cell.data_type != "f":
                row.append(safeio.safe_text(v))  # text stays text in Excel, never a formula
            else:
                row.append(v)
        grid.append(row)
    sheet.range((first, 1)).value = grid
    tab = ws.tables.get(table.key)
    if tab is not None:
        try:
            sheet.tables[table.key].resize(sheet.range(tab.ref))
        except Exception:
            pass


def _collect_work(book, ui: Ui, folder):
    from xl_ecom.policy import load_plan
    from xl_ecom.workflows import collect as core
    from xl_ecom.workflows.tables import TABLES

    plan = load_plan()
    settings = _settings(book)
    folder = Path(folder) if folder else _output_dir(book, settings) / COLLECT_SUBDIR
    if not folder.is_dir():
        folder.mkdir(parents=True, exist_ok=True)
        ui.alert(f"请把各县区交回的工作簿（.xlsx）放入文件夹：\n{folder}\n然后再点“汇总县区报表”。")
        return None
    path = _saved_path(book)  # the ledger lives beside the saved book (or where 设置 says)
    ui.status(f"汇总县区报表：检查 {folder} 中的文件并登记到台账……")
    with _cycle_lock(path, "汇总县区报表"), _collect_ledger(path, settings) as ledger:
        report = core.record_folder(folder, path, plan, ledger)
        if report.fatal:
            raise XlEcomError(report.fatal)
        if report.touched:
            ui.status("汇总县区报表：读取本工作簿的输入表……")
            wb, last_rows = _input_snapshot(book, TABLES)
            # the in-memory copy has no 设置 sheet: award formulas follow the open book's policy date
            core.write_current(wb, report, plan, ledger, options={"on": settings.get("政策日期")})
            ui.screen_updating(False)
            for table in TABLES:
                if any(table.sheet in line for line in report.changes):
                    ui.status(f"汇总县区报表：写入“{table.sheet}”……")
                    _write_back_table(book, wb[table.sheet], table, last_rows.get(table.sheet, 0))
            ui.screen_updating(True)
            report.written = True
    problems = report.all_problems()
    errors = sum(p.is_error for p in problems)
    text = report.to_text()
    lines = text.splitlines()
    if len(lines) > 40:
        text = "\n".join(lines[:38] + [f"……（共{len(lines)}行，其余略）", lines[-1]])
    if report.written:
        text += "\n数据已写入本工作簿但尚未保存；请核对后保存，并点“刷新”重新计算。"
    ui.alert(text, mode="critical" if errors else "info")
    return report


# ---------------------------------------------------------------------------------------------
# the reporting cycle (xl_ecom.workflows.cycle) and the bulletin (xl_ecom.workflows.report)
# ---------------------------------------------------------------------------------------------


def _collect_ledger(path: Path, settings: dict):
    """The ledger 汇总县区报表 and 生成县区工作簿 use: 设置's 台账数据库, else the ``.台账.sqlite`` beside
    the saved book (where ``xl-ecom collect --into`` and ``xl-ecom counties --workbook`` find it)."""
    from xl_ecom.ledger import open_ledger
    from xl_ecom.workflows.refresh.read import LEDGER_SETTING

    url = settings.get(LEDGER_SETTING)
    url = str(url).strip() if url is not None and str(url).strip() else None
    try:
        return open_ledger(path, url)
    except XlEcomError as exc:
        raise XlEcomError(f"无法打开台账：{exc}") from None


def _saved_path(book) -> Path:
    """The open book's file: the cycle's ledger and output folder live beside it, so it must be saved."""
    path = _book_path(book)
    if not path.is_absolute() or not path.is_file():
        raise XlEcomError(f"请先保存工作簿（找不到文件“{path}”）：台账和输出文件夹都放在工作簿所在的文件夹里。")
    return path


def _contacts(book) -> list:
    from xl_ecom.workflows.settings import CONTACTS_SHEET, contacts_from_rows

    rows = sheet_rows(book, CONTACTS_SHEET)
    if rows is None:
        raise XlEcomError(f"工作簿中没有“{CONTACTS_SHEET}”表，请先填写通讯录。")
    return contacts_from_rows(rows, source=f"“{CONTACTS_SHEET}”表")


def _cycle_lock(path: Path, command: str):
    """Refuse while another xl-ecom command holds the workbook; Excel's own lock file (this very
    book, open in the Excel that runs the button) does not refuse the button."""
    from xl_ecom.ledger.lock import workbook_lock

    return workbook_lock(path, command, office_locks=False)


def _cycle_mail(book, ui: Ui, kind: str):
    from xl_ecom.workflows import cycle

    path = _saved_path(book)
    settings = _settings(book)  # the open book's 设置 and 通讯录: unsaved edits count
    contacts = _contacts(book)
    send = cycle.remind_workbook if kind == cycle.REMIND_KIND else cycle.return_workbook

    def progress(message, done=None, total=None):
        ui.status(status_text(f"{kind}：{message}", done, total))

    with _cycle_lock(path, kind):
        result = send(path, lock=False, settings=settings, contacts=contacts, progress=progress)
    # units without an address are listed in the text; the red icon is for mail that did not go out
    failed = result.result is not None and not result.result.ok
    ui.alert(result.to_text(), mode="critical" if failed else "info")
    return result


def remind(book=None):
    """催报: mail the units without a valid submission in the current round (``xl-ecom remind``)."""
    from xl_ecom.workflows.cycle import REMIND_KIND

    return _run(book, REMIND_KIND, lambda b, ui: _cycle_mail(b, ui, REMIND_KIND))


def return_submissions(book=None):
    """退回: mail each faulty submission's problem list back to its unit (``xl-ecom return``)."""
    from xl_ecom.workflows.cycle import RETURN_KIND

    return _run(book, RETURN_KIND, lambda b, ui: _cycle_mail(b, ui, RETURN_KIND))


def status(book=None):
    """报送情况: write the 报送情况 sheet into the open book (``xl-ecom status --write``'s sheet)."""

    def work(book, ui: Ui):
        from xl_ecom.workflows import cycle

        path = _saved_path(book)
        ui.status("报送情况：读取台账……")
        spec = cycle.status_sheet_for_workbook(path)
        names = sheet_names(book)
        after = next((n for n in (layout.SHEET_MAIL_LOG, layout.SHEET_CONTACTS) if n in names), None)
        ui.screen_updating(False)
        _render(_sheet_for(book, spec.name, after), spec)
        ui.screen_updating(True)
        ui.alert(f"已写入“{spec.name}”表（尚未保存）：\n{spec.subtitle}")
        return spec

    return _run(book, "报送情况", work)


def new_round(book=None):
    """新建轮次: the round named by 设置's 当前轮次, due by its 报送截止日期 (``xl-ecom round new``)."""

    def work(book, ui: Ui):
        from xl_ecom.workflows import cycle
        from xl_ecom.workflows.settings import SETTINGS_SHEET, read_settings

        path = _saved_path(book)
        typed = _settings(book)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            saved = read_settings(path)
        for key in (cycle.ROUND_SETTING, cycle.DEADLINE_SETTING):
            if _plain(typed.get(key)) != _plain(saved.get(key)):
                raise XlEcomError(f"“{SETTINGS_SHEET}”表的“{key}”改过但尚未保存（现为“{_plain(typed.get(key))}”，"
                                  f"文件中为“{_plain(saved.get(key))}”）：请先保存工作簿，再点“新建轮次”。")
        with _cycle_lock(path, "新建轮次"):
            created, carried = cycle.new_round_from_settings(path)
        due = f"截止日期 {created.deadline.isoformat()}" if created.deadline else "未设截止日期"
        lines = [f"当前报送轮次：“{created.label}”，{due}。"]
        if carried:
            lines.append(f"{len(carried)} 个单位本轮尚未报送，沿用之前的数据：{'、'.join(carried)}。")
        ui.alert("\n".join(lines))
        return created, carried

    return _run(book, "新建轮次", work)


def _plain(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if hasattr(value, "date") and callable(value.date):  # a datetime read through xlwings: its date
        value = value.date()
    return str(value).strip()


def report(book=None):
    """进展通报: the bulletin (.docx and .pdf) in <输出文件夹>/进展通报 (``xl-ecom report``)."""

    def work(book, ui: Ui):
        from xl_ecom.workflows.report import write_report

        path = _saved_path(book)
        ui.status("进展通报：计算并生成 Word 和 PDF……")
        result = write_report(path)
        ui.alert(result.to_text(), mode="info" if result.ok else "critical")
        return result

    return _run(book, "进展通报", work)
