"""The two writers of the city workbook's input tables write the same cells.

collect and refresh (on the file) write the rows into the package (``citybook.PackageTables``); the
ribbon writes them into an openpyxl copy of the open book (``citybook.write_table``).  Given the same
rows — kept rows of the sheet and clean rows from the ledger; text that looks like a formula, dates,
numbers, blanks; fewer rows than before and more than the Excel Table holds — both give the same
values, types, number formats, quote prefixes, formulas and cached results, the same Table range,
data validations and print area.
"""

from __future__ import annotations

import datetime as dt
import io

import openpyxl
import pytest

from xl_ecom.ooxml.package import Package
from xl_ecom.workflows import build, citybook, collect, layout
from xl_ecom.workflows.tables import TABLES, table

from libreoffice import cached_disagreements, formula_results, recalculated

FIRST = layout.INPUT_FIRST_ROW


@pytest.fixture(scope="module")
def city() -> bytes:
    return build.build_bytes()


def _ledger_rows(t, n: int, county: str) -> list[dict]:
    """n clean rows of table t (as the ledger gives them back), with the awkward values a county sends."""
    rows = []
    for i in range(n):
        row: dict = {}
        for c in t.columns:
            if c.kind == "county":
                row[c.key] = county
            elif c.kind == "text":
                row[c.key] = ["=HYPERLINK(\"x\")", "＝1+1", " 前后空格 ", "甲\n乙", f"{county}{i}", "@SUM(A1)"][i % 6]
            elif c.kind == "money":
                money = [10_000_000, 10_000_000.01, 499_999.995, None, 0, 123_456.78][i % 6]
                row[c.key] = None if money is None else money * (1 + i % 3)
            elif c.kind == "count":
                row[c.key] = [50, 49, None, 100][i % 4]
            elif c.kind == "years":
                row[c.key] = [1, 1.5, 2, None][i % 4]
            elif c.kind == "choice":
                row[c.key] = c.choices[i % len(c.choices)]
            elif c.kind == "date":
                row[c.key] = [dt.datetime(2020, 6, 1), dt.datetime(2020, 12, 31, 13, 30), None][i % 3]
        rows.append(row)
    return rows


def _write_both(city: bytes, t, step):
    """``step(book, ws_or_none)`` run on a PackageTables and on an openpyxl workbook of ``city``; both saved."""
    book = citybook.PackageTables(Package(city))
    options = collect.formula_options(book)
    step(book, options)
    book.finish()
    by_package = book.pkg.to_bytes()

    wb = openpyxl.load_workbook(io.BytesIO(city), keep_vba=True)
    step(citybook.OpenpyxlTables(wb), options)
    by_openpyxl, _ = collect.save_city_workbook(wb, layout.WORKBOOK_NAME, city)
    return by_package, by_openpyxl


def _cells(data: bytes, sheet: str) -> dict:
    wb = openpyxl.load_workbook(io.BytesIO(data))
    ws = wb[sheet]
    out = {}
    for row in ws.iter_rows():
        for c in row:
            if c.value is None and c.row < FIRST:
                continue
            out[c.coordinate] = (c.value, c.data_type, c.number_format if c.value is not None else "", bool(c.quotePrefix))
    tables = dict(ws.tables.items())  # name -> ref
    validations = sorted(str(dv.sqref) for dv in ws.data_validations.dataValidation)
    return {"cells": out, "tables": tables, "validations": validations, "print": ws.print_area}


def _cached(data: bytes, t) -> list:
    """The cached results of the award columns, as a previewer shows them."""
    n = len(t.columns)
    return [row[n:] for row in Package(data).rows(t.sheet, FIRST, n + len(t.awards), data_only=True)]


def _as_openpyxl_writes(v):
    """openpyxl writes a float with 16 significant digits ("%.16g"), which does not always give back
    the same double; the package writer writes the shortest text that does (1499999.9849999999 stays
    itself rather than becoming 1499999.985, which ROUND(…,2) takes up to .99)."""
    return float(f"{v:.16g}") if isinstance(v, float) else v


def _assert_same(a: bytes, b: bytes, t) -> None:
    ca, cb = _cells(a, t.sheet), _cells(b, t.sheet)
    filled = {k: (_as_openpyxl_writes(v[0]), *v[1:]) for k, v in ca["cells"].items() if v[0] is not None}
    assert filled == {k: v for k, v in cb["cells"].items() if v[0] is not None}
    assert ca["tables"] == cb["tables"] and ca["validations"] == cb["validations"] and ca["print"] == cb["print"]
    assert _cached(a, t) == _cached(b, t)


@pytest.mark.parametrize("key", [t.key for t in TABLES])
def test_both_writers_write_the_same_rows_beyond_the_table(city, key):
    t = table(key)
    rows = _ledger_rows(t, sheets_rows := 230, "寿县")  # the built Table holds 200 rows

    def step(book, options):
        book.write(t, rows, None, options)

    a, b = _write_both(city, t, step)
    _assert_same(a, b, t)
    assert len([v for v in _cells(a, t.sheet)["cells"] if v.startswith("A") and v != "A1"]) >= sheets_rows


def test_kept_rows_move_with_their_values_when_a_county_has_fewer_rows(city):
    """Second write: 寿县's 5 rows become 2, 凤台县's rows (kept from the sheet) move up."""
    t = table("T_SALES")
    first = [*_ledger_rows(t, 5, "寿县"), *_ledger_rows(t, 4, "凤台县")]
    book = citybook.PackageTables(Package(city))
    options = collect.formula_options(book)
    book.write(t, first, None, options)
    book.finish()
    once = book.pkg.to_bytes()

    def step(book, options):
        existing, last = book.existing(t)
        kept = [r for r in existing if r[0].value == "凤台县"]
        assert len(kept) == 4
        book.write(t, [*_ledger_rows(t, 2, "寿县"), *kept], last, options)

    a, b = _write_both(once, t, step)
    _assert_same(a, b, t)
    values = Package(a).rows(t.sheet, FIRST, len(t.columns))
    assert [r[0] for r in values[:6]] == ["寿县"] * 2 + ["凤台县"] * 4
    assert all(r[0] is None for r in values[6:9])  # the rows the move left are empty, not stale


def test_the_package_writers_cached_results_are_what_libreoffice_computes(city, tmp_path):
    book = citybook.PackageTables(Package(city))
    options = collect.formula_options(book)
    for t in TABLES:
        book.write(t, _ledger_rows(t, 230 if t.key == "T_SALES" else 12, "寿县"), None, options)
    book.finish()
    path = tmp_path / layout.WORKBOOK_NAME
    path.write_bytes(book.pkg.to_bytes())
    (done,) = recalculated([path], tmp_path / "recalculated")
    theirs = openpyxl.load_workbook(done, data_only=True)
    inputs = {t.sheet for t in TABLES}
    checked = [k for k in formula_results(path) if k[0] in inputs]
    assert len(checked) >= 230 * 3
    assert cached_disagreements(path, theirs, skip=lambda sheet, ref: sheet not in inputs) == []
