"""刷新, step 4 — write: the layouts rendered into the package (sheet XML, chart parts, styles,
calcChain, app.xml, all through :mod:`xl_ecom.ooxml`; every part refresh does not own is copied
byte for byte) or into an openpyxl workbook (:func:`write_openpyxl`).

openpyxl would load and re-save the whole workbook (40 s for 80,000 input rows) and rewrite every
part; the package path replaces only the parts refresh owns: the three generated sheets (and
their drawing and chart), the 完成数 cells of the annex sheet, the new cell styles in styles.xml
and the bookkeeping entries (workbook.xml, its relationships, [Content_Types].xml).
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Sequence
from copy import copy

from xl_ecom.common.progress import Progress
from xl_ecom.common.textsafe import is_formula_like
from xl_ecom.ooxml import chart, safeio, worksheet, xlsm
from xl_ecom.ooxml.styles import Styles as _Styles
from xl_ecom.policy import Plan, load_plan
from xl_ecom.workflows import layout
from xl_ecom.workflows.refresh.errors import RefreshError
from xl_ecom.workflows.refresh.layouts import SHEET_ORDER, ChartSpec, SheetSpec
from xl_ecom.workflows.refresh.read import Package


def write_openpyxl(wb, specs: Sequence[SheetSpec], updates: dict) -> None:
    """Recreate the generated sheets (same position and VBA code name when they existed) and write
    the annex 完成数 cells.  Nothing else in ``wb`` is touched."""
    after = layout.SHEET_ANNEX
    for spec in sorted(specs, key=lambda sp: SHEET_ORDER.index(sp.name)):
        _recreate_sheet(wb, spec, after)
        after = spec.name
    ws = wb[layout.SHEET_ANNEX]
    for (r, c), v in updates.items():
        ws.cell(row=r, column=c).value = v


def _recreate_sheet(wb, spec: SheetSpec, after: str) -> None:
    from openpyxl.styles import Font
    from openpyxl.utils import get_column_letter
    from openpyxl.worksheet.pagebreak import Break

    from xl_ecom.workflows import sheets

    index = None
    code_name = None
    if spec.name in wb.sheetnames:
        old = wb[spec.name]
        index = wb.sheetnames.index(spec.name)
        code_name = old.sheet_properties.codeName
        wb.remove(old)
    elif after in wb.sheetnames:
        index = wb.sheetnames.index(after) + 1
    ws = wb.create_sheet(spec.name, index)
    if code_name:
        ws.sheet_properties.codeName = code_name
    sheets.title(ws, spec.title, spec.ncols, spec.subtitle)
    for j, w in enumerate(spec.widths, start=1):
        ws.column_dimensions[get_column_letter(j)].width = w
    bold = Font(name=sheets.BODY_FONT.name, size=sheets.BODY_FONT.sz, bold=True)
    for b in spec.blocks:
        for i, hrow in enumerate(b.headers):
            r = b.top + i
            for j, v in enumerate(hrow, start=1):
                cell = ws.cell(row=r, column=j, value=v)
                cell.font = sheets.HEADER_FONT
                cell.alignment = sheets.CENTER
                cell.border = sheets.BORDER
                cell.fill = sheets.HEADER_FILL
            ws.row_dimensions[r].height = sheets.header_height(hrow, spec.widths)
        for (r1, c1, r2, c2) in b.merges:
            ws.merge_cells(start_row=r1, start_column=c1, end_row=r2, end_column=c2)
        # styles: one prototype per column (and per total/body), copied by style id (fast on big sheets)
        protos: dict = {}
        first = b.first_body_row
        ntot = len(b.rows) - b.total_rows
        for i, row in enumerate(b.rows):
            r = first + i
            is_total = i >= ntot
            if b.row_height:
                ws.row_dimensions[r].height = b.row_height
            for j, v in enumerate(row, start=1):
                cell = ws.cell(row=r, column=j)
                key = (b.kind(i, j - 1), is_total)
                proto = protos.get(key)
                if proto is None:
                    sheets.body_cell(cell, key[0])
                    if is_total:
                        cell.font = bold
                    protos[key] = copy(cell._style)  # before the value: its quote prefix is the cell's own
                else:
                    cell._style = copy(proto)
                if v is not None and v != "":
                    safeio.write_cell_value(cell, v)  # text stays text (quote prefix if formula-like), never a formula
    sheets.page_setup(ws, spec.print_rows)
    for r in row_breaks(spec):
        ws.row_breaks.append(Break(id=r))
    if spec.freeze:
        ws.freeze_panes = spec.freeze
    if spec.chart:
        ws.add_chart(_bar_chart(ws, spec.chart), spec.chart.anchor)



def check_kept(before: bytes, after: bytes, name: str) -> None:
    """Every part refresh does not own is byte-identical after the edit (VBA project, ribbon,
    input tables, 设置, 通讯录, …); refuse to write otherwise."""
    with zipfile.ZipFile(io.BytesIO(before)) as a, zipfile.ZipFile(io.BytesIO(after)) as b:
        new_names = set(b.namelist())
        for n in (xlsm.VBA_PROJECT_PART, xlsm.CUSTOM_UI_PART, xlsm.PACKAGE_RELS_PART):
            if n in a.namelist() and (n not in new_names or a.read(n) != b.read(n)):
                raise RefreshError(f"保存“{name}”时“{n}”会改变，已停止写入，原文件未改动")



def _sheet_xml(spec: SheetSpec, styles: _Styles, code_name: str | None, with_drawing: bool):
    """The worksheet XML of a generated sheet (:func:`xl_ecom.ooxml.worksheet.write_sheet`): inline
    strings, so text is never a formula; formula-like text also gets Excel's quote prefix.  A part
    for :class:`Package`: bytes, or for a sheet of many rows a temporary file (spooled to disk past
    a few megabytes, so 奖补明细's 360,000 rows are never held in memory as XML)."""
    import tempfile

    from openpyxl.styles import Alignment, Font

    from xl_ecom.workflows import sheets

    bold = Font(name=sheets.BODY_FONT.name, size=sheets.BODY_FONT.sz, bold=True)
    right = Alignment(horizontal="right", vertical="center")
    kinds = {
        "text": ("General", sheets.LEFT),
        "center": ("General", sheets.CENTER),
        "money": (sheets.MONEY_FORMAT, right),
        "count": (sheets.COUNT_FORMAT, right),
        "percent": (sheets.PERCENT_FORMAT, right),
    }

    args: dict[int, tuple] = {}
    quoted: dict[int, int] = {}

    def xf_of(font, al, fmt="General", border=None, fill=None) -> int:
        s = styles.xf(font, al, fmt, border=border, fill=fill)
        args[s] = (font, al, fmt, border, fill)
        return s

    def quote(s: int) -> int:
        """the same style with the quote prefix, for formula-like text (added when first needed)"""
        q = quoted.get(s)
        if q is None:
            font, al, fmt, border, fill = args[s]
            q = quoted[s] = styles.xf(font, al, fmt, border=border, fill=fill, quote_prefix=True)
        return q

    title_s = xf_of(sheets.TITLE_FONT, sheets.CENTER)
    sub_s = xf_of(sheets.SUBTITLE_FONT, sheets.LEFT)
    head_s = xf_of(sheets.HEADER_FONT, sheets.CENTER, border=sheets.BORDER, fill=sheets.HEADER_FILL)
    body_s = {(k, tot): xf_of(bold if tot else sheets.BODY_FONT, al, fmt, border=sheets.BORDER)
              for k, (fmt, al) in kinds.items() for tot in (False, True)}
    letters = [worksheet.col_letter(j) for j in range(1, max(spec.ncols, 30) + 1)]

    formula_like: dict[str, bool] = {}  # most texts repeat (county, sheet, clause, rule): judged once each

    def styled(values, ss):
        """(values, styles): formula-like text takes the quote-prefixed variant of its style."""
        quoted = None
        for j, v in enumerate(values):
            if v.__class__ is str:
                flag = formula_like.get(v)
                if flag is None:
                    flag = formula_like[v] = is_formula_like(v)
                if flag:
                    quoted = quoted or list(ss)
                    quoted[j] = quote(ss[j])
        return values, quoted or ss

    def rows():
        yield 1, 30, *styled([spec.title], [title_s])
        yield 2, 36, *styled([spec.subtitle], [sub_s])
        for b in spec.blocks:
            width = max(len(h) for h in b.headers)
            for i, hrow in enumerate(b.headers):
                height = sheets.header_height(hrow, spec.widths)
                yield b.top + i, height, *styled(hrow + [None] * (width - len(hrow)), [head_s] * width)
            ntot = len(b.rows) - b.total_rows
            col_s = [[body_s[(b.kind(-1, j), tot)] for j in range(width)] for tot in (False, True)]
            special = {i for i, _ in b.overrides}
            for i, row in enumerate(b.rows):
                ss = col_s[i >= ntot]
                if i in special:
                    ss = [body_s[(b.kind(i, j), i >= ntot)] for j in range(width)]
                yield b.first_body_row + i, b.row_height, *styled(row, ss)

    last_row = max([2] + [b.last_row if b.rows else b.top + len(b.headers) - 1 for b in spec.blocks])
    merges = [f"A1:{letters[spec.ncols - 1]}1", f"A2:{letters[spec.ncols - 1]}2"] if spec.ncols > 1 else []
    for b in spec.blocks:
        merges += [f"{letters[c1 - 1]}{r1}:{letters[c2 - 1]}{r2}" for (r1, c1, r2, c2) in b.merges]
    out = tempfile.SpooledTemporaryFile(max_size=8 << 20) if sum(len(b.rows) for b in spec.blocks) > 20_000 else None
    return worksheet.write_sheet(worksheet.Sheet(
        rows=rows(),
        dimension=f"A1:{letters[spec.ncols - 1]}{last_row}",
        widths=spec.widths,
        merges=merges,
        code_name=code_name,
        freeze=spec.freeze,
        page=sheets.OFFICIAL_PAGE,
        drawing_rid="rId1" if with_drawing else None,
        letters=letters,
        row_breaks=row_breaks(spec),
    ), out)


def row_breaks(spec: SheetSpec) -> list[int]:
    """Stacked tables without repeated header rows each start on a new page (a manual break above
    each table after the first), so no table's rows print under another's header or headless."""
    if spec.print_rows or len(spec.blocks) < 2:
        return []
    return [b.top - 1 for b in spec.blocks[1:] if b.top > 1]


def _column_chart(spec: SheetSpec) -> chart.ColumnChart:
    ch = spec.chart
    assert ch is not None
    row, col = worksheet.split_ref(ch.anchor)
    return chart.ColumnChart(spec.name, ch.title, ch.y_title, ch.categories, ch.series, (row, col), ch.width_cm, ch.height_cm)


def _chart_parts(spec: SheetSpec):
    """(drawing xml from chart part names, [chart xml]) for the sheet's chart (:mod:`xl_ecom.ooxml.chart`)."""
    ch = _column_chart(spec)
    return (lambda chart_names: chart.drawing_xml(ch, "rId1")), [chart.chart_xml(ch)]


def _bar_chart(ws, ch: ChartSpec):
    from openpyxl.chart import BarChart, Reference

    chart = BarChart()
    chart.type = "col"
    chart.grouping = "clustered"
    chart.title = ch.title
    chart.y_axis.title = ch.y_title
    chart.y_axis.numFmt = "0%"
    chart.width = ch.width_cm
    chart.height = ch.height_cm
    cols = [sr[0] for sr in ch.series]
    hrow, r2 = ch.series[0][1], ch.series[0][3]
    chart.add_data(Reference(ws, min_col=min(cols), max_col=max(cols), min_row=hrow, max_row=r2), titles_from_data=True)
    chart.set_categories(Reference(ws, min_col=ch.categories[0], min_row=ch.categories[1], max_row=ch.categories[2]))
    # axes shown in current Excel (openpyxl 3.1 writes them deleted unless told otherwise)
    chart.x_axis.delete = False
    chart.y_axis.delete = False
    chart.anchor = ch.anchor
    return chart


def _existing_code_name(pkg: Package, name: str) -> str | None:
    if name not in pkg.sheet_names:
        return None
    return pkg.code_name(pkg.sheet_part(name))


def _code_name_for(pkg: Package, name: str) -> str:
    """The sheet's code name; a new sheet gets the first ``Sheet<n>`` no other sheet uses."""
    existing = _existing_code_name(pkg, name)
    if existing:
        return existing
    used = {pkg.code_name(part) for _, part, _ in pkg.sheets if part in pkg.parts}
    n = len(pkg.sheets) + 1
    while f"Sheet{n}" in used:
        n += 1
    return f"Sheet{n}"


def annex_cached(pkg: Package, updates: dict, plan: Plan | None = None) -> dict:
    """{(row, col): value} of the annex's formulas (完成率, 差额, 合计, 核对) once ``updates`` (the
    完成数 cells) are written, from the 目标任务数 the sheet holds: the cached results a previewer
    that does not recalculate shows (the build's were computed with 完成数 blank)."""
    from xl_ecom.workflows.build import annex_values

    plan = plan or load_plan()
    first, _, _ = layout.annex_rows(len(plan.counties))
    ncols = layout.annex_col(len(plan.annex_columns) - 1, layout.ANNEX_BLOCK[-1])
    rows = pkg.rows(layout.SHEET_ANNEX, first, ncols, last_row=first + len(plan.counties) - 1)
    targets, done = {}, {}
    for k, county in enumerate(plan.counties):
        row = rows[k] if k < len(rows) else []
        for i, col in enumerate(plan.annex_columns):
            t, d = layout.annex_col(i, "目标任务数"), layout.annex_col(i, "完成数")
            targets[(county, col["key"])] = row[t - 1] if t - 1 < len(row) else None
            done[(county, col["key"])] = updates.get((first + k, d), row[d - 1] if d - 1 < len(row) else None)
    return annex_values(plan, targets, done)


def write_package(pkg: Package, specs: Sequence[SheetSpec], updates: dict, progress: Progress | None = None,
                  plan: Plan | None = None) -> None:
    """Put the generated sheets and the annex 完成数 (with the cached results of the formulas that
    depend on them) into the package (nothing else changes)."""
    styles = _Styles(pkg)
    after = layout.SHEET_ANNEX
    for i, spec in enumerate(sorted(specs, key=lambda sp: SHEET_ORDER.index(sp.name)), start=1):
        if progress:
            progress(f"写入“{spec.name}”", i, len(specs))
        extras = _chart_parts(spec) if spec.chart else None
        xml = _sheet_xml(spec, styles, _code_name_for(pkg, spec.name), bool(extras))
        pkg.replace_sheet(spec.name, xml, after, extras)
        pkg.set_print_titles(spec.name, spec.print_rows)
        after = spec.name
    styles.save()
    pkg.set_numbers(layout.SHEET_ANNEX, updates)
    pkg.set_cached(layout.SHEET_ANNEX, annex_cached(pkg, updates, plan))
    pkg.full_calc_on_load()
    pkg.finish([spec.name for spec in specs] + [layout.SHEET_ANNEX])


def set_input_print_areas(pkg: Package, frames: dict) -> None:
    """Each input table prints its header and filled rows (at least one row), not the empty grid below.

    A fixed ``_xlnm.Print_Area`` in workbook.xml (LibreOffice ignores a formula there); the input
    sheets' own parts stay byte for byte.  ``frames`` are the tables :func:`read_package` read."""
    from xl_ecom.workflows import sheets
    from xl_ecom.workflows.tables import TABLES

    for table in TABLES:
        frame = frames.get(table.key)
        if frame is None or table.sheet not in pkg.sheet_names:
            continue
        data = frame.data
        if "_row" in data.columns and len(data):  # rows as read from the sheet: up to the last filled one
            filled = max(0, int(data["_row"].max()) - layout.INPUT_FIRST_ROW + 1)
        else:  # ledger rows (no sheet rows): the sheet as it will be saved, and at least the ledger's count
            rows = pkg.rows(table.sheet, layout.INPUT_FIRST_ROW, len(table.columns))
            typed = [i for i, row in enumerate(rows, start=1) if any(v is not None and str(v).strip() != "" for v in row)]
            filled = max([len(data), *typed[-1:]])
        last_row = sheets.input_print_last_row(filled)
        ncols = len(table.columns) + len(table.awards)
        pkg.set_print_area(table.sheet, f"A1:{worksheet.col_letter(ncols)}{last_row}")
