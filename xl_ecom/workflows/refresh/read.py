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
from collections import Counter
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


# ---------------------------------------------------------------------------------------------
# the ledger: the workbook is a view
# ---------------------------------------------------------------------------------------------

#: the unit of rows a city clerk typed into the master's input tables
CITY_UNIT = "市本级"
#: the 设置 entry naming the ledger's URL (blank: the SQLite file beside the workbook)
LEDGER_SETTING = "台账数据库"


def ledger_url(path, db: str | None, pkg: Package | None = None) -> str | None:
    """The ledger's URL for the workbook at ``path``: ``db``, else 设置's 台账数据库, else the SQLite file
    beside the workbook when it exists; None when the workbook has no ledger (refresh reads the sheets)."""
    from pathlib import Path

    from xl_ecom.ledger import default_path, resolve_url

    if db is not None and str(db).strip():
        return resolve_url(path, db)
    if pkg is not None and SETTINGS_SHEET in pkg.sheet_names:
        for row in pkg.rows(SETTINGS_SHEET, 1, 3):
            if row and isinstance(row[0], str) and row[0].strip() == LEDGER_SETTING:
                value = row[1] if len(row) > 1 else None
                if value is not None and str(value).strip():
                    return resolve_url(path, str(value))
    if default_path(Path(path).resolve()).is_file():
        return resolve_url(path, None)
    return None


def _canon(value: Any) -> str | None:
    """One cell's value as compared between the sheet and the ledger (blank → None, 3.0 → "3", dates ISO)."""
    if _blank(value):
        return None
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, dt.date):
        return dt.datetime(value.year, value.month, value.day).isoformat()
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, (int, float)):
        return repr(value)
    text = str(value).strip()
    try:  # a date the ledger holds as ISO text
        return dt.datetime.fromisoformat(text).isoformat() if len(text) >= 10 and text[4] == "-" else text
    except ValueError:
        return text


def row_keys(table: InputTable, data: pd.DataFrame) -> list[tuple]:
    """Each row's content key (its input columns, canonical), for matching rows on content."""
    keys = [c.key for c in table.columns]
    if not len(data):
        return []
    columns = [data[k].tolist() if k in data.columns else [None] * len(data) for k in keys]
    return [tuple(_canon(v) for v in values) for values in zip(*columns, strict=True)]


def _json_value(value: Any) -> Any:
    if _blank(value):
        return None
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    return value


def ledger_frames(ledger, problems: list[Problem], round_id: int | None = None,
                  progress: Progress | None = None) -> dict[str, InputFrame]:
    """The input tables as they stand in the ledger: each unit's current rows of the round (a unit
    that has not submitted in it carries its previous round's rows forward, ``cycle.round_rows``),
    in the plan's county order then by source row; dates back as datetimes, whole numbers as int."""
    from xl_ecom.workflows import cycle

    order = {c: i for i, c in enumerate(load_plan().counties)}
    order[CITY_UNIT] = len(order)

    def source(key: str) -> pd.DataFrame:
        table = next(t for t in TABLES if t.key == key)
        frame = cycle.round_rows(ledger, key, round_id)
        for c in table.columns:
            if c.key not in frame.columns:
                frame[c.key] = None
        if not len(frame):
            return frame
        frame = frame.assign(_order=frame["_unit"].map(lambda u: order.get(u, len(order) + 1)))
        frame = frame.sort_values(["_order", "_submission", "_row"], kind="stable").drop(columns="_order")
        frame = frame.astype(object).where(frame.notna(), None)
        for c in table.columns:
            if c.kind == "date":
                frame[c.key] = frame[c.key].map(_date_back)
            elif c.kind in ("money", "count", "years", "rate"):
                frame[c.key] = frame[c.key].map(lambda v: int(v) if isinstance(v, float) and v.is_integer() else v)
        frame["_source_row"] = frame["_row"]
        return frame.drop(columns="_row").reset_index(drop=True)

    return frames_from_source(source, problems, progress)


def _date_back(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return dt.datetime.fromisoformat(value)
        except ValueError:
            return value
    return value


@dataclass(frozen=True)
class Imported:
    """What :func:`import_typed_rows` found on the sheets: rows filed as 市本级, and rows left out because
    they are an older version of a unit's data that the ledger has since replaced (a stale view)."""

    rows: int = 0
    superseded: int = 0


def import_typed_rows(ledger, sheet: dict[str, InputFrame], workbook_name: str, sha256: str, size: int,
                      round_id: int | None = None) -> Imported:
    """Rows a city clerk typed into the master's input tables that the ledger does not hold (matched on
    content against every unit's current rows of the round) become a new submission from 市本级
    (its previous current rows plus the new ones, file = the workbook, row numbers = the sheet rows),
    before refresh overwrites the sheet.

    A row that matches no current row but is one of a replaced submission's rows (the sheet shows a county's
    version 1 while the ledger, collected on another PC, already holds its version 2) was not typed by the
    city: it is not filed again (it stays in the ledger's history) and is counted as ``superseded``."""
    from xl_ecom.workflows import cycle

    current = ledger.current_submission(CITY_UNIT, round_id)
    new_rows: dict[str, tuple[list[dict], list[int]]] = {}
    count = stale = 0
    history: dict[str, Counter] | None = None
    for table in TABLES:
        frame = sheet.get(table.key)
        if frame is None or not len(frame.data):
            continue
        held = Counter(row_keys(table, cycle.round_rows(ledger, table.key, round_id)))
        keys = [c.key for c in table.columns]
        rows, numbers = [], []
        for row_key, (_, rec) in zip(row_keys(table, frame.data), frame.data.iterrows(), strict=True):
            if held[row_key] > 0:
                held[row_key] -= 1
                continue
            if history is None:  # read only when some row is not current
                history = _replaced_rows(ledger)
            old = history.get(table.key)
            if old is not None and old[row_key] > 0:
                old[row_key] -= 1
                stale += 1
                continue
            rows.append({k: _json_value(rec[k]) for k in keys})
            numbers.append(int(rec["_row"]))
        if rows:
            new_rows[table.key] = (rows, numbers)
            count += len(rows)
    if not count:
        return Imported(0, stale)
    with ledger.submission(workbook_name, sha256, size, CITY_UNIT, CITY_UNIT, round_id=round_id) as sub:
        if current is not None:
            old = ledger.submission_rows(current.id)
            for key, part in old.groupby("_table", sort=False):
                keep = [c for c in part.columns if not c.startswith("_")]
                recs = part[keep].astype(object).where(part[keep].notna(), None).to_dict("records")
                sub.add_rows(str(key), [{k: _json_value(v) for k, v in r.items()} for r in recs],
                             part["_row"].astype(int).tolist())
        for key, (rows, numbers) in new_rows.items():
            sub.add_rows(key, rows, numbers)
    return Imported(count, stale)


def _replaced_rows(ledger) -> dict[str, Counter]:
    """Content keys of the rows of every replaced (被替代) submission, per table."""
    from xl_ecom.ledger.schema import SUPERSEDED

    out: dict[str, Counter] = {}
    for sub in ledger.submissions():
        if sub.status != SUPERSEDED:
            continue
        rows = ledger.submission_rows(sub.id)
        if not len(rows):
            continue
        for key, part in rows.groupby("_table", sort=False):
            table = next((t for t in TABLES if t.key == key), None)
            if table is not None:
                out.setdefault(str(key), Counter()).update(row_keys(table, part))
    return out
