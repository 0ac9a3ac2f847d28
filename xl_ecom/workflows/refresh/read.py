"""刷新, step 1 — read: the input tables as :class:`InputFrame` (one per
:data:`xl_ecom.workflows.tables.TABLES` sheet: header at ``layout.INPUT_HEADER_ROW``, data from
``layout.INPUT_FIRST_ROW``, fully blank rows skipped).

Every source ends in the same place: rows of cell values through :func:`frames_from_rows` (the
package's sheet XML, :func:`read_package`; an openpyxl workbook, :func:`read_tables`; xlwings ranges
in :mod:`xl_ecom.frontends.macros`), or one DataFrame per table keyed by column key through
:func:`frames_from_source` — the seam for the ledger (``current_rows(table_key)`` with provenance
columns ``_unit`` / ``_submission`` / ``_row``).  compute never sees where the rows came from.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from xl_ecom.common.problems import Problem
from xl_ecom.common.progress import Progress
from xl_ecom.ooxml import package as _package
from xl_ecom.policy import Plan, load_plan
from xl_ecom.workflows import layout
from xl_ecom.workflows.refresh.errors import RefreshError
from xl_ecom.workflows.settings import SETTINGS_SHEET
from xl_ecom.workflows.tables import TABLES, InputTable


class Package(_package.Package):
    """:class:`xl_ecom.ooxml.package.Package` whose errors are :class:`RefreshError`."""

    error = RefreshError


def _col_letter(n: int) -> str:
    from openpyxl.utils import get_column_letter

    return get_column_letter(n)


def _blank(v) -> bool:
    return v is None or (isinstance(v, str) and v.strip() == "") or (isinstance(v, float) and v != v)  # noqa: PLR0124 (NaN)


@dataclass
class InputFrame:
    """One input table as read: ``data`` has one column per column key, ``_row`` is the sheet row."""

    table: InputTable
    data: pd.DataFrame
    letters: dict  # column key -> sheet column letter


def frames_from_rows(table: InputTable, rows: Sequence[Sequence[Any]], problems: list[Problem]) -> InputFrame:
    """An input table from its sheet's cell values, starting at the header row.

    ``rows[0]`` is the header row (``layout.INPUT_HEADER_ROW``); the data rows follow from
    ``layout.INPUT_FIRST_ROW``.  Columns are found by their header text, so the award formula
    columns (and any extra columns a clerk added) are ignored.  Missing headers are problems.
    """
    header = [str(h).strip() if h is not None else "" for h in (rows[0] if rows else [])]
    positions: dict = {}
    letters: dict = {}
    for col in table.columns:
        if col.header in header:
            positions[col.key] = header.index(col.header)
            letters[col.key] = _col_letter(positions[col.key] + 1)
        else:
            problems.append(
                Problem(
                    table.sheet,
                    f"第{layout.INPUT_HEADER_ROW}行",
                    f"找不到列“{col.header}”（表头应为：{'、'.join(table.headers)}），表格结构被改动",
                )
            )
    keys = [c.key for c in table.columns]
    if len(positions) != len(keys):
        return InputFrame(table, pd.DataFrame(columns=keys + ["_row"]), letters)
    idx = [positions[k] for k in keys]
    out = []
    row_numbers = []
    first = layout.INPUT_FIRST_ROW
    gap = first - layout.INPUT_HEADER_ROW
    for i, row in enumerate(rows[gap:] if len(rows) > gap else ()):
        n = len(row)
        vals = tuple(row[j] if j < n else None for j in idx)
        if all(_blank(v) for v in vals):
            continue
        out.append(vals)
        row_numbers.append(first + i)
    frame = pd.DataFrame.from_records(out, columns=keys) if out else pd.DataFrame(columns=keys)
    frame["_row"] = np.asarray(row_numbers, dtype="int64")
    return InputFrame(table, frame, letters)


def read_tables(wb, problems: list[Problem], progress: Progress | None = None) -> dict[str, InputFrame]:
    """All input tables of an openpyxl workbook (normal or read-only mode)."""
    frames = {}
    for i, table in enumerate(TABLES, start=1):
        if progress:
            progress(f"读取“{table.sheet}”", i, len(TABLES))
        if table.sheet not in wb.sheetnames:
            problems.append(Problem(table.sheet, "", "工作簿中没有这张输入表"))
            continue
        ws = wb[table.sheet]
        ncols = len(table.columns) + len(table.awards) + 8
        rows = list(ws.iter_rows(min_row=layout.INPUT_HEADER_ROW, max_col=ncols, values_only=True))
        frames[table.key] = frames_from_rows(table, rows, problems)
    return frames



def frames_from_source(source: Callable[[str], pd.DataFrame | None], problems: list[Problem],
                       progress: Progress | None = None) -> dict[str, InputFrame]:
    """All input tables from ``source(table_key)``: a DataFrame with one column per column key (any
    other columns, such as the ledger's provenance ``_unit`` / ``_submission``, are kept), or None
    when the source has no such table.  ``_row`` (the row in the county's sheet) is kept when given,
    else the rows are numbered from ``layout.INPUT_FIRST_ROW``."""
    frames = {}
    for i, table in enumerate(TABLES, start=1):
        if progress:
            progress(f"读取“{table.sheet}”", i, len(TABLES))
        df = source(table.key)
        if df is None:
            problems.append(Problem(table.sheet, "", "数据来源中没有这张输入表"))
            continue
        keys = [c.key for c in table.columns]
        missing = [c.header for c in table.columns if c.key not in df.columns]
        if missing:
            problems.append(Problem(table.sheet, "", f"数据来源缺少列“{'、'.join(missing)}”"))
            continue
        data = df.reset_index(drop=True).copy()
        if "_row" not in data.columns:
            data["_row"] = np.arange(layout.INPUT_FIRST_ROW, layout.INPUT_FIRST_ROW + len(data), dtype="int64")
        blank = np.ones(len(data), dtype=bool)
        for k in keys:
            blank &= data[k].map(_blank).to_numpy(dtype=bool)
        data = data[~blank].reset_index(drop=True)
        frames[table.key] = InputFrame(table, data, {k: _col_letter(j) for j, k in enumerate(keys, start=1)})
    return frames


def read_package(pkg: Package, plan: Plan | None = None, on=None, progress: Progress | None = None) -> tuple[dict[str, InputFrame], Any]:
    """The input tables and the policy date (``on``, else the 设置 sheet's 政策日期) from the package's sheet XML.  Raises
    :class:`RefreshError` listing every structural problem (missing sheet or header, moved annex)."""
    plan = plan or load_plan()
    if layout.SHEET_ANNEX not in pkg.sheet_names:
        raise RefreshError(f"工作簿中没有“{layout.SHEET_ANNEX}”表，不是本方案的市级工作簿")
    if on is None:
        on = policy_date_from_rows(pkg.rows(SETTINGS_SHEET, 1, 3) if SETTINGS_SHEET in pkg.sheet_names else [])
    problems: list[Problem] = []
    frames = {}
    for i, table in enumerate(TABLES, start=1):
        if progress:
            progress(f"读取“{table.sheet}”", i, len(TABLES))
        if table.sheet not in pkg.sheet_names:
            problems.append(Problem(table.sheet, "", "工作簿中没有这张输入表"))
            continue
        ncols = len(table.columns) + len(table.awards) + 8
        header = pkg.rows(table.sheet, layout.INPUT_HEADER_ROW, ncols, last_row=layout.INPUT_HEADER_ROW)
        wanted = {j + 1 for j, h in enumerate(header[0] if header else []) if isinstance(h, str) and h.strip() in table.headers}
        skip = set(range(1, ncols + 1)) - wanted - {1}
        rows = pkg.rows(table.sheet, layout.INPUT_HEADER_ROW, ncols, skip=skip)
        frames[table.key] = frames_from_rows(table, rows, problems)
    annex = pkg.rows(layout.SHEET_ANNEX, 1, 1)
    problems += check_annex(lambda r, c: annex[r - 1][c - 1] if r - 1 < len(annex) else None, plan)
    if problems:
        raise RefreshError(f"工作簿结构有{len(problems)}处问题，未刷新：", problems)
    return frames, on


def policy_date_from_rows(rows) -> dt.date | None:
    """政策日期 of the 设置 sheet (its rows of 项目, 值), or its default."""
    from xl_ecom.workflows.settings import SettingsError, settings_from_rows

    try:
        return settings_from_rows([r[:2] for r in rows]).get("政策日期")
    except SettingsError as exc:
        raise RefreshError(f"“{SETTINGS_SHEET}”表有误：{exc}") from None


def check_annex(read_cell: Callable[[int, int], Any], plan: Plan | None = None) -> list[Problem]:
    """The annex's county labels must be where refresh writes (column A, one row per county)."""
    plan = plan or load_plan()
    first, _, _ = layout.annex_rows(len(plan.counties))
    problems = []
    for i, county in enumerate(plan.counties):
        found = read_cell(first + i, 1)
        text = found.strip() if isinstance(found, str) else ("" if found is None else str(found))
        if text != county:
            problems.append(
                Problem(layout.SHEET_ANNEX, f"A{first + i}", f"应为“{county}”，实际为“{text}”：表格结构被改动，无法写入完成数")
            )
    return problems
