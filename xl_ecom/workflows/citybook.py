"""The city workbook's input tables written: the rows collect merges (and refresh rewrites from the
ledger), the award formulas of every row with the engine's results as their cached values, the Excel
Table and the data validations grown to the rows, and the print area.

Two writers of the same rows:

- :class:`PackageTables`, the command line's: edits the sheet parts of the package itself
  (:class:`xl_ecom.ooxml.worksheet.RowEditor`); every other part (annex, 奖补测算 with their cached
  results, 设置, 通讯录, vbaProject.bin, the ribbon) is kept byte for byte, and it is several times
  faster than loading and saving the workbook through openpyxl;
- :class:`OpenpyxlTables` (:func:`write_table`), for an openpyxl workbook: the ribbon's in-memory copy
  of the open book, which xlwings then writes back into Excel.

Both take rows as :class:`Stored` lists (a row kept from the sheet) or dicts of clean values (a
county's rows from the ledger); the tests check they write the same cells.
"""

from __future__ import annotations

import datetime as dt
import re
from copy import copy
from dataclasses import dataclass

from openpyxl.formula.translate import Translator
from openpyxl.utils import get_column_letter
from openpyxl.worksheet.cell_range import CellRange, MultiCellRange

from xl_ecom.common.problems import Problem
from xl_ecom.common.textsafe import is_formula_like
from xl_ecom.ooxml import safeio
from xl_ecom.ooxml import table as table_part
from xl_ecom.ooxml.package import Package
from xl_ecom.ooxml.styles import Styles
from xl_ecom.ooxml.worksheet import Formula, RowEditor, cell_xml, col_letter
from xl_ecom.workflows import layout, sheets
from xl_ecom.workflows.tables import Award, InputTable
from xl_ecom.workflows.validate import check_header


@dataclass
class Stored:
    """A cell read from the city workbook, written back as it was (same value, type and format: a
    row that moves takes its formats with it)."""

    value: object
    data_type: str
    style: object = None  # openpyxl's StyleArray of the cell, when read from an openpyxl sheet

    def put(self, cell) -> None:
        if self.style is not None:
            cell._style = copy(self.style)
        if self.data_type == "s":
            safeio.write_cell_value(cell, self.value)
        else:
            cell.value = self.value  # numbers, dates, formulas the city clerk typed
            if self.data_type == "e":
                cell.data_type = "e"


def existing_rows(ws, table: InputTable) -> tuple[list[list[Stored]], int]:
    """Data rows (input columns) of the city sheet, and the last sheet row that had data."""
    ncol = len(table.columns)
    rows, last = [], layout.INPUT_FIRST_ROW - 1
    for r, cells in enumerate(ws.iter_rows(min_row=layout.INPUT_FIRST_ROW, max_col=ncol), start=layout.INPUT_FIRST_ROW):
        stored = [Stored(c.value, c.data_type, copy(c._style)) for c in cells] + [Stored(None, "n")] * (ncol - len(cells))
        if all(s.value is None or (isinstance(s.value, str) and not s.value.strip()) for s in stored):
            continue
        rows.append(stored)
        last = r
    return rows, last


def _table_of(ws, table: InputTable):
    if table.key in ws.tables:
        return ws.tables[table.key]
    for t in ws.tables.values():
        if CellRange(t.ref).min_row == layout.INPUT_HEADER_ROW:
            return t
    return None


def county_name(value: object) -> str | None:
    """The 县区 of a stored row as collect compares it: text stripped; a number or a date names no county."""
    return value.strip() if isinstance(value, str) else None


def _award_columns(ws, table: InputTable) -> list[tuple[int, Award]]:
    """(column, award) for each award column present in the city sheet (by header)."""
    out: list[tuple[int, Award]] = []
    base = len(table.columns)
    for j, award in enumerate(table.awards, start=1):
        if str(ws.cell(row=layout.INPUT_HEADER_ROW, column=base + j).value or "").strip() == award.header:
            out.append((base + j, award))
    return out


def _extend_validations(ws, first: int, old_last: int, new_last: int, ncol: int) -> None:
    for dv in ws.data_validations.dataValidation:
        ranges = []
        changed = False
        for rng in dv.sqref.ranges:
            if rng.min_row == first and rng.max_row == old_last and rng.max_col <= ncol:
                rng = CellRange(min_col=rng.min_col, min_row=first, max_col=rng.max_col, max_row=new_last)
                changed = True
            ranges.append(rng)
        if changed:
            dv.sqref = MultiCellRange(ranges)


_DIGITS = re.compile(r"(\d+)")


class AwardFormulas:
    """The award formula of one award column for any row, the same text as compiling that row with
    :func:`xl_ecom.workflows.sheets.award_formula` (the tests check it).

    Compiling 10,000 rows takes seconds, and so does moving one formula with openpyxl's Translator;
    so the formula is compiled for three rows and split at its digit runs: a run that differs
    between the rows is a row number (row + offset), one that does not is a constant.  The template
    is used only when it reproduces the third compilation exactly; otherwise the Translator is."""

    def __init__(self, table: InputTable, award, column: int, first: int, options: dict | None = None):
        options = options or {}
        self.first = first
        self.letter = get_column_letter(column)
        self.first_formula = sheets.award_formula(table, award, first, first, **options)
        a, b, c = first + 1, first + 2, first + 7
        fa, fb, fc = (sheets.award_formula(table, award, r, first, **options) for r in (a, b, c))
        self.template = self._template(fa, fb, a, b)
        if self.template is not None:  # as a format string: one call per row
            self._format = "".join(p.replace("{", "{{").replace("}", "}}") if isinstance(p, str) else "{}" for p in self.template)
            self._offsets = [p for p in self.template if not isinstance(p, str)]
        if self.template is not None and self._fill(c) != fc:
            self.template = None
        origin = f"{self.letter}{a}"
        self.translator = Translator(fa, origin=origin)

    @staticmethod
    def _template(fa: str, fb: str, a: int, b: int):
        pa, pb = _DIGITS.split(fa), _DIGITS.split(fb)
        if len(pa) != len(pb):
            return None
        parts: list = []
        for i, (x, y) in enumerate(zip(pa, pb)):
            if i % 2 == 0:  # text between digit runs
                if x != y:
                    return None
                parts.append(x)
            elif x == y:
                parts.append(x)
            elif int(y) - int(x) == b - a and not x.startswith("0"):
                parts.append(int(x) - a)  # row + offset
            else:
                return None
        return parts

    def _fill(self, row: int) -> str:
        return self._format.format(*[row + p for p in self._offsets])

    def at(self, row: int) -> str:
        if row == self.first:
            return self.first_formula
        if self.template is not None:
            return self._fill(row)
        return self.translator.translate_formula(f"{self.letter}{row}")


def write_table(ws, table: InputTable, rows: list, old_data_last: int | None = None, options: dict | None = None) -> None:
    """Write ``rows`` (each a list of Stored or a dict of clean values) as the table's data,
    clear what was below, regenerate the award formulas, extend the Excel Table if needed
    (new rows take the styles of the table's last row, as Excel does when a table grows)."""
    first = layout.INPUT_FIRST_ROW
    ncol = len(table.columns)
    if old_data_last is None:
        _, old_data_last = existing_rows(ws, table)
    tab = _table_of(ws, table)
    table_last = CellRange(tab.ref).max_row if tab is not None else first - 1
    new_last = max(table_last, first + len(rows) - 1)
    pairs = _award_columns(ws, table)
    awards = [(column, AwardFormulas(table, award, column, first, options)) for column, award in pairs]
    # what each award cell shows, by the engine: its cached result (sheets.put_formula)
    as_dicts = [row if isinstance(row, dict) else {col.key: row[c].value for c, col in enumerate(table.columns)} for row in rows]
    on = (options or {}).get("on")
    shown = {column: sheets.award_values(table, award, as_dicts, on) for column, award in pairs}
    template = {}
    if table_last >= first:
        for c in [*range(1, ncol + 1), *(column for column, _ in awards)]:
            template[c] = copy(ws.cell(row=table_last, column=c)._style)  # a copy: writing that row must not change it
    for r in range(new_last + 1, old_data_last + 1):  # rows that had data below the table (none, in a built book)
        for c in [*range(1, ncol + 1), *(column for column, _ in awards)]:
            ws.cell(row=r, column=c).value = None
    for i in range(new_last - first + 1):
        r = first + i
        beyond = r > table_last
        row = rows[i] if i < len(rows) else None
        if row is None and r > old_data_last and not beyond:
            # below the data: only the formulas are (re)written
            for column, formula in awards:
                sheets.put_formula(ws.cell(row=r, column=column), formula.at(r), "")
            continue
        for c, col in enumerate(table.columns, start=1):
            cell = ws.cell(row=r, column=c)
            if beyond:  # the format first: the value may add to it (a quote prefix, a date format)
                if c in template:
                    cell._style = copy(template[c])
                else:
                    sheets.body_cell(cell, col.kind)
            if row is None:
                cell.value = None
            elif isinstance(row, dict):
                safeio.write_cell_value(cell, row.get(col.key))
            else:
                row[c - 1].put(cell)
        for column, formula in awards:
            cell = ws.cell(row=r, column=column)
            sheets.put_formula(cell, formula.at(r), shown[column][i] if row is not None else "")
            if beyond:
                if column in template:
                    cell._style = copy(template[column])
                else:
                    sheets.body_cell(cell, "money")
                    cell.fill = sheets.FORMULA_FILL
    if tab is not None and new_last > table_last:
        rng = CellRange(tab.ref)
        tab.ref = f"{get_column_letter(rng.min_col)}{rng.min_row}:{get_column_letter(rng.max_col)}{new_last}"
        if tab.autoFilter is not None and tab.autoFilter.ref:
            tab.autoFilter.ref = tab.ref
        _extend_validations(ws, first, table_last, new_last, ncol)
    # the print area: the header and the rows written (the grid below does not print)
    sheets.set_print_area(ws, max([ncol, *(column for column, _ in awards)]), sheets.input_print_last_row(len(rows)))




class KeptRow(list):
    """A data row kept from the city sheet (a list of :class:`Stored`), with the sheet row it was read from."""

    source_row: int = 0


class OpenpyxlTables:
    """The input tables of an openpyxl workbook, as :func:`xl_ecom.workflows.collect.merge_into_workbook` writes them."""

    def __init__(self, wb):
        self.wb = wb

    @property
    def sheetnames(self) -> list[str]:
        return self.wb.sheetnames

    def header_problems(self, table: InputTable) -> list[Problem]:
        return check_header(self.wb[table.sheet], table, file="市级工作簿")

    def existing(self, table: InputTable) -> tuple[list, int]:
        return existing_rows(self.wb[table.sheet], table)

    def write(self, table: InputTable, rows: list, old_data_last: int | None, options: dict | None) -> None:
        write_table(self.wb[table.sheet], table, rows, old_data_last, options)


class _Header:
    """The header row of an input sheet read from the package, as :func:`check_header` reads a worksheet."""

    def __init__(self, title: str, values: list):
        self.title = title
        self.values = values

    def cell(self, row: int, column: int):
        value = self.values[column - 1] if row == layout.INPUT_HEADER_ROW and column <= len(self.values) else None
        return Stored(value, "")


class PackageTables:
    """The input tables of the city workbook's package, written in place (see the module's docstring).
    :meth:`finish` writes the new cell formats and the calcChain; then ``pkg.to_bytes()`` is the file."""

    def __init__(self, pkg: Package):
        self.pkg = pkg
        self.styles = Styles(pkg)
        self.changed: list[str] = []

    @property
    def sheetnames(self) -> list[str]:
        return self.pkg.sheet_names

    def _header(self, table: InputTable) -> list:
        rows = self.pkg.rows(table.sheet, layout.INPUT_HEADER_ROW, len(table.columns) + len(table.awards),
                             last_row=layout.INPUT_HEADER_ROW)
        return rows[0] if rows else []

    def header_problems(self, table: InputTable) -> list[Problem]:
        return check_header(_Header(table.sheet, self._header(table)), table, file="市级工作簿")

    def existing(self, table: InputTable) -> tuple[list, int]:
        """Data rows (input columns, read as openpyxl reads them) and the last sheet row that had data."""
        ncol = len(table.columns)
        rows, last = [], layout.INPUT_FIRST_ROW - 1
        for r, values in enumerate(self.pkg.rows(table.sheet, layout.INPUT_FIRST_ROW, ncol), start=layout.INPUT_FIRST_ROW):
            values = list(values) + [None] * (ncol - len(values))
            if all(v is None or (isinstance(v, str) and not v.strip()) for v in values):
                continue
            row = KeptRow(Stored(v, "") for v in values)
            row.source_row = r
            rows.append(row)
            last = r
        return rows, last

    def _table(self, table: InputTable) -> tuple[str | None, str | None]:
        """(part, ref) of the sheet's Excel Table: the one named for the table, else the one whose header is the input header."""
        found = None
        for part in self.pkg.table_parts(table.sheet):
            name, ref = table_part.name_and_ref(self.pkg.parts[part])
            if name == table.key:
                return part, ref
            if found is None and ref and CellRange(ref).min_row == layout.INPUT_HEADER_ROW:
                found = (part, ref)
        return found or (None, None)

    def _value(self, value, style: str | None, ref: str) -> str:
        """A clean value as a cell (text neutralised as :func:`safeio.write_cell_value` does, a date in a date format)."""
        cls = value.__class__
        if cls is float or cls is int or value is None:
            return cell_xml(ref, value, style)
        if cls is str:
            text = safeio.clean_text(value)
            if is_formula_like(text):
                style = self.styles.variant(style, quote_prefix=True)
            return cell_xml(ref, text, style)
        if isinstance(value, (dt.datetime, dt.date)):
            from openpyxl.styles.numbers import is_date_format
            from openpyxl.utils.datetime import to_excel

            if not is_date_format(self.styles.number_format(style)):  # as openpyxl formats a date it is given
                style = self.styles.variant(style, fmt="yyyy-mm-dd h:mm:ss" if isinstance(value, dt.datetime) else "yyyy-mm-dd")
            return cell_xml(ref, to_excel(value), style)
        return cell_xml(ref, value, style)

    def write(self, table: InputTable, rows: list, old_data_last: int | None, options: dict | None) -> None:
        """Write ``rows`` as the table's data (the same cells as :func:`write_table`): clear what was
        below, regenerate the award formulas with their cached results, grow the Excel Table, its
        validations and the print area.  A kept row moves with its cells (values, formats, formulas)."""
        pkg, first, ncol = self.pkg, layout.INPUT_FIRST_ROW, len(table.columns)
        if old_data_last is None:
            _, old_data_last = self.existing(table)
        part = pkg.sheet_part(table.sheet)
        editor = RowEditor(pkg.parts[part], table.sheet)
        tpart, tref = self._table(table)
        table_last = CellRange(tref).max_row if tref else first - 1
        new_last = max(table_last, first + len(rows) - 1)
        header = self._header(table)
        base = len(table.columns)
        pairs = [(base + j, award) for j, award in enumerate(table.awards, start=1)
                 if base + j <= len(header) and str(header[base + j - 1] or "").strip() == award.header]
        awards = [(column, AwardFormulas(table, award, column, first, options)) for column, award in pairs]
        as_dicts = [row if isinstance(row, dict) else {col.key: row[c].value for c, col in enumerate(table.columns)} for row in rows]
        on = (options or {}).get("on")
        shown = {column: sheets.award_values(table, award, as_dicts, on) for column, award in pairs}
        columns = [*range(1, ncol + 1), *(column for column, _ in awards)]
        template = {}
        if table_last >= first:
            template = editor.styles(table_last)
        # kept rows move: their cells are taken first, as a later row may be written over their place
        moved = {i: editor.take(row.source_row, range(1, ncol + 1)) for i, row in enumerate(rows) if isinstance(row, KeptRow)}
        for r in range(new_last + 1, old_data_last + 1):  # rows that had data below the table (none, in a built book)
            editor.clear(r, columns)
        letters = {c: col_letter(c) for c in columns}
        for i in range(new_last - first + 1):
            r = first + i
            rs = str(r)
            beyond = r > table_last
            row = rows[i] if i < len(rows) else None
            if beyond:
                style = template
            else:
                style = editor.styles(r)
            out = {}
            if not (row is None and r > old_data_last and not beyond):  # below the data only the formulas are (re)written
                for c, col in enumerate(table.columns, start=1):
                    ref = letters[c] + rs
                    if row is None:
                        out[c] = cell_xml(ref, None, style.get(c))
                    elif isinstance(row, dict):
                        out[c] = self._value(row.get(col.key), style.get(c), ref)
                    else:
                        kept = moved[i].get(c)
                        out[c] = kept if kept is not None else cell_xml(ref, None, style.get(c))
            for column, formula in awards:
                out[column] = cell_xml(letters[column] + rs, Formula(formula.at(r), shown[column][i] if row is not None else ""),
                                           style.get(column))
            editor.put(r, out)
        if tpart is not None and new_last > table_last:
            rng = CellRange(tref)
            pkg.parts[tpart] = table_part.with_ref(
                pkg.parts[tpart], f"{get_column_letter(rng.min_col)}{rng.min_row}:{get_column_letter(rng.max_col)}{new_last}")
            editor.extend_validations(first, table_last, new_last, ncol)
        pkg.parts[part] = editor.to_bytes()
        last_col = max([ncol, *(column for column, _ in awards)])
        pkg.set_print_area(table.sheet, f"A1:{col_letter(last_col)}{sheets.input_print_last_row(len(rows))}")
        self.changed.append(table.sheet)

    def finish(self) -> None:
        """The new cell formats, the calcChain of the sheets written, recalculation on opening."""
        self.styles.save()
        self.pkg.full_calc_on_load()
        self.pkg.finish(self.changed)
