"""Official-looking sheets with openpyxl: titles, 仿宋/宋体, A4 landscape, print titles, page numbers,
and the input tables (Excel Tables with data validation, award columns as native formulas).

Shared by the city workbook builder, department task sheets and county workbooks.
"""

from __future__ import annotations

import io
import math
import unicodedata
from collections.abc import Sequence
from decimal import Decimal

import numpy as np
from openpyxl.styles import Alignment, Border, Font, NamedStyle, PatternFill, Side
from openpyxl.utils import get_column_letter
from openpyxl.worksheet.datavalidation import DataValidation
from openpyxl.worksheet.table import Table, TableStyleInfo

from xl_ecom.common.errors import InputError
from xl_ecom.ooxml.worksheet import PageSetup
from xl_ecom.rules import formulas
from xl_ecom.rules.engine import calculate_cents, calculate_columns_cents, get_rule
from xl_ecom.workflows import layout
from xl_ecom.workflows.tables import InputTable

TITLE_FONT = Font(name="宋体", size=16, bold=True)
SUBTITLE_FONT = Font(name="仿宋", size=11)
HEADER_FONT = Font(name="宋体", size=11, bold=True)
BODY_FONT = Font(name="仿宋", size=11)
NOTE_FONT = Font(name="仿宋", size=10, italic=True)
THIN = Side(style="thin", color="000000")
BORDER = Border(left=THIN, right=THIN, top=THIN, bottom=THIN)
HEADER_FILL = PatternFill("solid", fgColor="D9E1F2")
FORMULA_FILL = PatternFill("solid", fgColor="F2F2F2")
CENTER = Alignment(horizontal="center", vertical="center", wrap_text=True)
LEFT = Alignment(horizontal="left", vertical="center", wrap_text=True)
TOP_LEFT = Alignment(horizontal="left", vertical="top", wrap_text=True)
MONEY_FORMAT = "#,##0.00"
COUNT_FORMAT = "0"
PERCENT_FORMAT = "0.0%"
INPUT_ROWS = 200  # pre-formatted, pre-validated rows in each input table


FOOTER_TEXT, FOOTER_FONT, FOOTER_SIZE = "第 &P 页 共 &N 页", "仿宋", 10
#: the print settings of every official sheet, as data: applied to openpyxl sheets by
#: :func:`page_setup` and written into refresh's generated sheets by :mod:`xl_ecom.ooxml.worksheet`
OFFICIAL_PAGE = PageSetup(
    paper_size=9,  # A4
    orientation="landscape",
    fit_to_width=1,
    fit_to_height=0,
    horizontal_centered=True,
    margins=(0.5, 0.5, 0.75, 0.75, 0.5, 0.5),
    footer=f'&C&"{FOOTER_FONT}"&{FOOTER_SIZE} {FOOTER_TEXT}',
)


def page_setup(ws, header_rows: str | None = None, landscape: bool = True, fit_width: bool = True) -> None:
    """A4 landscape, fit to one page wide, repeated header rows, 第 N 页 共 M 页 (:data:`OFFICIAL_PAGE`)."""
    page = OFFICIAL_PAGE
    ws.page_setup.paperSize = str(page.paper_size)
    ws.page_setup.orientation = page.orientation if landscape else "portrait"
    if fit_width:
        ws.page_setup.fitToWidth = page.fit_to_width
        ws.page_setup.fitToHeight = page.fit_to_height
        ws.sheet_properties.pageSetUpPr.fitToPage = True
    ws.print_options.horizontalCentered = page.horizontal_centered
    ws.page_margins.left, ws.page_margins.right, ws.page_margins.top, ws.page_margins.bottom = page.margins[:4]
    ws.page_margins.header, ws.page_margins.footer = page.margins[4:]
    if header_rows:
        ws.print_title_rows = header_rows
    ws.oddFooter.center.text = FOOTER_TEXT
    ws.oddFooter.center.font = FOOTER_FONT
    ws.oddFooter.center.size = FOOTER_SIZE


def input_print_last_row(filled: int) -> int:
    """The last printed row of an input table with ``filled`` rows: header and filled rows, at least one row.

    LibreOffice does not evaluate a formula in ``_xlnm.Print_Area`` (an OFFSET/COUNTA name prints the
    whole 200-row grid), so the area is a fixed range set when the file is written and updated by 刷新."""
    return layout.INPUT_FIRST_ROW + max(filled, 1) - 1


def set_print_area(ws, ncols: int, last_row: int) -> None:
    """Print rows 1..``last_row`` of columns A..``ncols`` (an openpyxl sheet): no empty grid on paper."""
    ws.print_area = f"A1:{get_column_letter(max(ncols, 1))}{max(last_row, 1)}"


def fit_input_print_area(ws, table: InputTable, with_awards: bool = True) -> int:
    """Set an input table's print area (an openpyxl sheet written by :func:`write_input_table`) to its
    header and the rows a clerk filled, as they are now; returns the last printed row."""
    ncols = len(table.columns) + (len(table.awards) if with_awards else 0)
    filled = 0
    for i, row in enumerate(ws.iter_rows(min_row=layout.INPUT_FIRST_ROW, max_col=len(table.columns), values_only=True), start=1):
        if any(v is not None and not (isinstance(v, str) and v.strip() == "") for v in row):
            filled = i
    last = input_print_last_row(filled)
    set_print_area(ws, ncols, last)
    return last


def title(ws, text: str, ncols: int, subtitle: str | None = None, row: int = 1) -> int:
    """Merged title (and subtitle) rows; returns the next free row."""
    ws.cell(row=row, column=1, value=text).font = TITLE_FONT
    ws.cell(row=row, column=1).alignment = CENTER
    if ncols > 1:
        ws.merge_cells(start_row=row, start_column=1, end_row=row, end_column=ncols)
    ws.row_dimensions[row].height = 30
    row += 1
    if subtitle is not None:
        ws.cell(row=row, column=1, value=subtitle).font = SUBTITLE_FONT
        ws.cell(row=row, column=1).alignment = LEFT
        if ncols > 1:
            ws.merge_cells(start_row=row, start_column=1, end_row=row, end_column=ncols)
        row += 1
    return row


HEADER_ROW_HEIGHT = 32.0  # points: two lines of 11 pt 宋体
_LINE_HEIGHT = 14.5  # points a wrapped 11 pt line takes, as LibreOffice and Excel lay it out


def text_width(text: str) -> float:
    """Width of ``text`` in column-width units at 11 pt: CJK and full-width characters about 2.2, others 1.1."""
    return sum(2.2 if unicodedata.east_asian_width(ch) in "WF" else 1.1 for ch in text)


def header_height(texts, widths, minimum: float = HEADER_ROW_HEIGHT) -> float:
    """The height (points) of a header row whose wrapped ``texts`` sit in columns of ``widths``, so
    no header is clipped: the most lines any cell needs, at least ``minimum``."""
    lines = 1
    for text, width in zip(texts, widths):
        if text is None or text == "":
            continue
        usable = max(float(width or 8.43) - 1.0, 1.0)  # the cell's padding
        lines = max(lines, sum(max(1, math.ceil(text_width(part) / usable)) for part in str(text).split("\n")))
    return max(minimum, lines * _LINE_HEIGHT + 4.0)


def header(ws, row: int, headers, widths=None) -> None:
    for col, text in enumerate(headers, start=1):
        cell = ws.cell(row=row, column=col, value=text)
        cell.font = HEADER_FONT
        cell.alignment = CENTER
        cell.border = BORDER
        cell.fill = HEADER_FILL
        if widths:
            ws.column_dimensions[get_column_letter(col)].width = widths[col - 1]
    if widths is None:
        widths = [ws.column_dimensions[get_column_letter(c)].width for c in range(1, len(headers) + 1)]
    ws.row_dimensions[row].height = header_height(headers, widths)


RIGHT = Alignment(horizontal="right", vertical="center")

# Body cells use named styles: one style object per workbook instead of one per cell (10× faster
# to write), and clerks see them in Excel's style gallery by their Chinese names.
_BODY_STYLES = {
    "text": ("正文", LEFT, None, None),
    "money": ("金额", RIGHT, MONEY_FORMAT, None),
    "formula": ("公式金额", RIGHT, MONEY_FORMAT, FORMULA_FILL),
    "count": ("数量", RIGHT, COUNT_FORMAT, None),
    "percent": ("百分比", RIGHT, PERCENT_FORMAT, None),
    "date": ("日期", CENTER, "yyyy-mm-dd", None),
    "center": ("居中", CENTER, None, None),
}
_KIND_ALIASES = {"county": "center", "choice": "center", "years": "count", "rate": "percent"}


def _named_style(wb, kind: str) -> str:
    kind = _KIND_ALIASES.get(kind, kind)
    name, align, fmt, fill = _BODY_STYLES.get(kind, _BODY_STYLES["text"])
    registered = getattr(wb, "_xl_ecom_styles", None)
    if registered is None:
        registered = wb._xl_ecom_styles = set(wb.named_styles)
    if name not in registered:
        style = NamedStyle(name=name, font=BODY_FONT, border=BORDER, alignment=align)
        if fmt:
            style.number_format = fmt
        if fill is not None:
            style.fill = fill
        wb.add_named_style(style)
        registered.add(name)
    return name


def body_cell(cell, kind: str = "text") -> None:
    """Bordered 仿宋 body cell formatted for its kind (text, money, count, percent, date, …)."""
    cell.style = _named_style(cell.parent.parent, kind)


def award_formula(table: InputTable, award, row: int, first_row: int, on=None) -> str:
    """Native formula for one award column of one row of an input table.

    A cumulative cap (plan.yaml ``cap.cumulative``, grouped by ``group_by``) runs over the rows above
    of the same group.  Rows whose group cell (县区) is blank form one group of their own, so a blank
    县区 cannot escape the cap: a bare reference to an empty cell as the SUMIFS criterion would be
    read as 0 and match nothing, giving each such row a fresh cap; ``""`` matches the blank cells.
    (The city's 校验数据 and 刷新 report the blank 县区 as an error, naming the cell.)"""
    refs = {}
    for name, key in award.inputs.items():
        col = [c.key for c in table.columns].index(key) + 1
        refs[name] = f"{get_column_letter(col)}{row}"
    prior = None
    if award.cumulative_by:
        own = get_column_letter(len(table.columns) + 1 + [a.key for a in table.awards].index(award.key))
        grp = get_column_letter([c.key for c in table.columns].index(award.cumulative_by) + 1)
        if row == first_row:
            prior = "0"
        else:
            same_group = f'IF({grp}{row}="","",{grp}{row})'
            prior = f"SUMIFS({own}${first_row}:{own}{row - 1},{grp}${first_row}:{grp}{row - 1},{same_group})"
    return formulas.compile_rule(award.rule, refs, on=on, prior_paid=prior)


#: rule input kinds a native award formula wants as numbers (text there shows a flag such as 请填数字)
_NUMBER_KINDS = ("money", "count", "rate", "years")


def is_number(value) -> bool:
    """A finite number as a cell holds it (not a bool, not text)."""
    return isinstance(value, (int, float, Decimal)) and not isinstance(value, bool) and math.isfinite(value)


def award_values(table: InputTable, award, rows, on=None) -> list:
    """What the award formula of each row of ``rows`` (dicts keyed by column key) shows, by the
    engine: the amount in yuan, or "" where the rule pays nothing because an input is blank.
    ``None`` (no cached value; Excel computes it on opening) where the formula shows a flag instead:
    text in a number cell, or a value the rule refuses.  A cumulative cap runs over the rows above
    of the same group, blank-group rows forming one group, as :func:`award_formula` does.

    The engine's vector path computes the whole column at once; when it refuses a value (the rule
    raises for the column), the rows are computed one by one and only the refused ones get None."""
    rule = get_rule(award.rule)
    n = len(rows)
    flagged = [False] * n
    columns: dict[str, list] = {name: [None] * n for name in award.inputs}
    for i, data in enumerate(rows):
        for name, key in award.inputs.items():
            value = key[1:] if isinstance(key, str) and key.startswith("=") else data.get(key)
            if value == "":
                value = None
            if value is not None and rule.input(name).kind in _NUMBER_KINDS and not is_number(value):
                flagged[i] = True
            columns[name][i] = value
    for i in (i for i in range(n) if flagged[i]):  # shows a flag: pays nothing, counts nothing
        for name in columns:
            columns[name][i] = None
    groups = None
    if award.cumulative_by:
        groups = ["" if data.get(award.cumulative_by) is None else str(data.get(award.cumulative_by)) for data in rows]
    try:
        cents = calculate_columns_cents(award.rule, {k: np.array(v, dtype=object) for k, v in columns.items()}, on=on,
                                        groups=None if groups is None else np.array(groups, dtype=object))
    except InputError:
        return _award_values_by_row(award, columns, flagged, groups, on)
    return [None if flagged[i] else ("" if math.isnan(c) else float(Decimal(int(c)) / 100)) for i, c in enumerate(cents)]


def _award_values_by_row(award, columns, flagged, groups, on) -> list:
    paid: dict = {}
    out: list = []
    for i, is_flagged in enumerate(flagged):
        if is_flagged:
            out.append(None)
            continue
        group = groups[i] if groups is not None else None
        try:
            cents = calculate_cents(award.rule, on=on, paid_before=paid.get(group, 0),
                                    **{name: col[i] for name, col in columns.items()})
        except InputError:
            out.append(None)
            continue
        if cents is None:
            out.append("")
            continue
        if groups is not None:
            paid[group] = paid.get(group, 0) + cents
        out.append(float(Decimal(cents) / 100))
    return out


def write_input_table(
    ws,
    table: InputTable,
    counties,
    rows=(),
    *,
    with_awards: bool = True,
    n_rows: int = INPUT_ROWS,
    subtitle: str | None = None,
    table_name: str | None = None,
    on=None,
) -> None:
    """An input table: title, header, an Excel Table with validation, award formula columns.

    ``rows`` are dicts keyed by column key (already-known data).  The table spans at least
    ``n_rows`` rows so clerks can type into pre-validated cells.  ``on`` is the policy date the
    award formulas are compiled for.
    """
    awards = table.awards if with_awards else ()
    headers = table.headers + [a.header for a in awards]
    widths = [c.width for c in table.columns] + [16] * len(awards)
    title(ws, table.title, len(headers), subtitle or "单位：元")
    header(ws, layout.INPUT_HEADER_ROW, headers, widths)
    first = layout.INPUT_FIRST_ROW
    rows = list(rows)
    last = first + max(n_rows, len(rows)) - 1
    values = [award_values(table, award, rows, on) for award in awards]
    for i in range(last - first + 1):
        r = first + i
        data = rows[i] if i < len(rows) else {}
        for c, col in enumerate(table.columns, start=1):
            cell = ws.cell(row=r, column=c, value=data.get(col.key))
            body_cell(cell, col.kind)
        for j, award in enumerate(awards):
            cell = ws.cell(row=r, column=len(table.columns) + 1 + j)
            put_formula(cell, award_formula(table, award, r, first, on), values[j][i] if i < len(rows) else "")
            body_cell(cell, "formula")
    ref = f"A{layout.INPUT_HEADER_ROW}:{get_column_letter(len(headers))}{last}"
    tab = Table(displayName=table_name or table.key, ref=ref)
    tab.tableStyleInfo = TableStyleInfo(name="TableStyleLight9", showRowStripes=True)
    ws.add_table(tab)
    add_validation(ws, table, counties, first, last)
    ws.freeze_panes = ws.cell(row=first, column=1)
    page_setup(ws, f"{layout.INPUT_HEADER_ROW}:{layout.INPUT_HEADER_ROW}")
    filled = max((i + 1 for i, data in enumerate(rows) if any(v not in (None, "") for v in data.values())), default=0)
    set_print_area(ws, len(headers), input_print_last_row(filled))


def list_validation(choices, error: str) -> DataValidation:
    """A drop-down of ``choices`` that refuses anything else with a Chinese message."""
    dv = DataValidation(type="list", formula1='"' + ",".join(choices) + '"', allow_blank=True)
    dv.error = error
    dv.errorTitle = "输入有误"
    dv.showErrorMessage = True
    dv.errorStyle = "stop"
    return dv


def add_validation(ws, table: InputTable, counties, first: int, last: int) -> None:
    for c, col in enumerate(table.columns, start=1):
        letter = get_column_letter(c)
        rng = f"{letter}{first}:{letter}{last}"
        dv = None
        if col.kind == "county":
            dv = list_validation(counties, "请从下拉列表选择县区")
        elif col.kind == "choice":
            dv = list_validation(col.choices, f"{col.header}只能填写：{'、'.join(col.choices)}")
        elif col.kind == "money" or col.kind == "years":
            dv = DataValidation(type="decimal", operator="greaterThanOrEqual", formula1="0", allow_blank=True)
            dv.error = f"{col.header}应为不小于0的数值（以元为单位）" if col.kind == "money" else f"{col.header}应为不小于0的数值"
        elif col.kind == "count":
            dv = DataValidation(type="whole", operator="greaterThanOrEqual", formula1="0", allow_blank=True)
            dv.error = f"{col.header}应为不小于0的整数"
        elif col.kind == "date":
            dv = DataValidation(type="date", operator="greaterThan", formula1="36526", allow_blank=True)
            dv.error = f"{col.header}应为日期，如 2020-06-30"
        if dv is None:
            continue
        dv.errorTitle = "输入有误"
        dv.showErrorMessage = True
        dv.errorStyle = "stop"
        ws.add_data_validation(dv)
        dv.add(rng)


#: per worksheet: {cell ref: (formula, value)} recorded by :func:`put_formula`
_CACHED = "_xl_ecom_cached"


def put_formula(cell, formula: str, value) -> None:
    """Write ``formula`` into ``cell`` with the value the engine gives it on the data written, which
    the saved file carries as the formula's cached result (:func:`cached_values`); ``None``: none
    (Excel computes it on opening)."""
    cell.value = formula
    cell.parent.__dict__.setdefault(_CACHED, {})[cell.coordinate] = (formula, value)


def cached_values(wb) -> dict[str, dict[str, object]]:
    """{sheet title: {ref: value}} of the formulas :func:`put_formula` wrote that the cells still hold."""
    out: dict[str, dict[str, object]] = {}
    for ws in wb.worksheets:
        found = {
            ref: value
            for ref, (formula, value) in ws.__dict__.get(_CACHED, {}).items()
            if value is not None and ws[ref].value == formula
        }
        if found:
            out[ws.title] = found
    return out


def with_cached_values(wb, original: bytes | None = None, carry: Sequence[str] = ()) -> bytes:
    """``wb`` saved as .xlsx bytes, each formula :func:`put_formula` wrote carrying its value as
    the cached result (openpyxl writes formulas without one).  The sheets named in ``carry``, which
    the caller did not change since ``wb`` was loaded from ``original``, keep the cached results
    ``original`` held for the same formulas."""
    from xl_ecom.ooxml import worksheet
    from xl_ecom.ooxml.package import Package

    raw = io.BytesIO()
    wb.save(raw)
    values = cached_values(wb)
    old = Package(original) if original is not None and carry else None
    carried = [name for name in carry if old is not None and name in old.sheet_names and name in wb.sheetnames]
    if not values and not carried:
        return raw.getvalue()
    pkg = Package(raw.getvalue())
    for title, refs in values.items():
        part = pkg.sheet_part(title)
        pkg.parts[part] = worksheet.set_cached(pkg.parts[part], refs)
    for name in carried:
        assert old is not None
        part = pkg.sheet_part(name)
        pkg.parts[part] = worksheet.carry_cached(old.parts[old.sheet_part(name)], pkg.parts[part])
    return pkg.to_bytes()
