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

Nothing else in the workbook is written.  The CLI edits the package itself: the generated sheets,
their drawing and chart, the new cell styles and the annex sheet's 完成数 cells are replaced as
parts; every other part (input tables, 设置, 通讯录, vbaProject.bin, the ribbon) is copied byte for
byte.  The file is written atomically (temporary file, then ``os.replace``, by
:func:`xl_ecom.ooxml.safeio.write_atomically`), the previous version is kept beside it
(``<name>.备份YYYYmmdd-HHMMSS.xlsm``, as collect does), and a workbook open in Excel or WPS
(``~$`` lock file) is refused.
"""

from __future__ import annotations

import datetime as dt
import io
import re
import sys
import time
import zipfile
from copy import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd

from xl_ecom.workflows import layout
from xl_ecom.ooxml import safeio, xlsm
from xl_ecom.policy.boundaries import APPROXIMATE_WORDS, holds
from xl_ecom.rules.engine import calculate_columns_cents, policy_date, resolve
from xl_ecom.common.errors import InputError, XlEcomError
from xl_ecom.rules.money import MAX_YUAN, describe, parse_number
from xl_ecom.policy import Plan, load_plan
from xl_ecom.common.problems import Problem
from xl_ecom.common.progress import Progress
from xl_ecom.workflows.settings import SETTINGS_SHEET
from xl_ecom.workflows.tables import ACTUALS, TABLES, TOURISM_COUNTS, InputTable
from xl_ecom.workflows.tables import tourism_counts as tourism_counts_of

#: The AWARD_TOURISM rule is paid per county from counts of T_DEMO rows (its ``paid_per`` in plan.yaml).
TOURISM_RULE = "AWARD_TOURISM"
#: Which text target each TOURISM_COUNTS key counts towards (plan.yaml: paid_per.counts.*.target).
TOURISM_TARGETS = {k: c["target"] for k, c in (load_plan().rules[TOURISM_RULE].paid_per or {"counts": {}})["counts"].items()}
#: 全市农村产品网络销售额: the target whose ``actual`` in plan.yaml sums a money column.
ONLINE_SALES_TARGET = next(((t.id, t.actual["table"], t.actual["column"]) for t in load_plan().targets if t.actual), None)

GENERATED_SHEETS = (layout.SHEET_AWARDS, layout.SHEET_SUMMARY, layout.SHEET_PROGRESS)
#: Where new generated sheets go: right after 目标任务分解表, in this order (existing ones stay put).
SHEET_ORDER = (layout.SHEET_PROGRESS, layout.SHEET_SUMMARY, layout.SHEET_AWARDS)


# ---------------------------------------------------------------------------------------------
# problems and errors
# ---------------------------------------------------------------------------------------------


class RefreshError(XlEcomError):
    """The workbook cannot be refreshed; ``problems`` lists every bad cell (nothing was written)."""

    def __init__(self, message: str, problems: Sequence[Problem] = ()):
        super().__init__(message)
        self.problems = list(problems)

    def to_text(self, limit: int = 50) -> str:
        lines = [str(self)]
        for p in self.problems[:limit]:
            lines.append(f"  {p}")
        if len(self.problems) > limit:
            lines.append(f"  ……另有{len(self.problems) - limit}处问题未列出。")
        return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# 1. reading the input tables
# ---------------------------------------------------------------------------------------------


def _col_letter(n: int) -> str:
    from openpyxl.utils import get_column_letter

    return get_column_letter(n)


def _blank(v) -> bool:
    return v is None or (isinstance(v, str) and v.strip() == "") or (isinstance(v, float) and np.isnan(v))


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
    for table in TABLES:
        if progress:
            progress(f"读取“{table.sheet}”……")
        if table.sheet not in wb.sheetnames:
            problems.append(Problem(table.sheet, "", "工作簿中没有这张输入表"))
            continue
        ws = wb[table.sheet]
        ncols = len(table.columns) + len(table.awards) + 8
        rows = list(ws.iter_rows(min_row=layout.INPUT_HEADER_ROW, max_col=ncols, values_only=True))
        frames[table.key] = frames_from_rows(table, rows, problems)
    return frames


# ---------------------------------------------------------------------------------------------
# 2. compute
# ---------------------------------------------------------------------------------------------


def _cell(frame: InputFrame, key: str, i: int) -> str:
    return f"{frame.letters.get(key, '?')}{int(frame.data['_row'].iat[i])}"


def _judge(frame: InputFrame, col, i: int, raw, counties, problems: list[Problem]):
    """A cell the fast path could not accept: the clean value, or None after recording why not.

    The verdict and its Chinese message come from the row validation of :mod:`xl_ecom.workflows.validate`
    (the same checks 校验数据 and 汇总县区报表 apply), so every front end words a problem alike."""
    from xl_ecom.workflows import validate

    if isinstance(raw, str) and raw.lstrip().startswith("="):
        problems.append(
            Problem(
                frame.table.sheet,
                _cell(frame, col.key, i),
                f"{col.header}是公式“{raw}”：命令行刷新不计算公式，请改填数值，或在 Excel 中点“刷新”按钮（由 Excel 计算公式）",
            )
        )
        return None
    clean, issues = validate.check_value(col, raw, counties)
    errors = [m for severity, m in issues if severity == validate.ERROR]
    if errors:
        for m in errors:
            problems.append(Problem(frame.table.sheet, _cell(frame, col.key, i), m))
        return None
    return clean


def _check_numeric(frame: InputFrame, col, counties, problems: list[Problem]) -> np.ndarray:
    """The column as float64 (NaN for blanks).  Plain non-negative numbers pass vectorised; every
    other cell (text, negative, too large, fractional count) is judged by :func:`_judge`."""
    s = frame.data[col.key]
    n = len(s)
    if n == 0:
        return np.zeros(0, dtype="float64")
    obj = s.to_numpy(dtype=object)
    num = np.array(pd.to_numeric(s, errors="coerce"), dtype="float64", copy=True)
    is_bool = np.fromiter((isinstance(v, (bool, np.bool_)) for v in obj), dtype=bool, count=n)
    suspect = np.isnan(num) | is_bool | ~np.isfinite(num)
    fin = np.isfinite(num)
    suspect |= fin & (num < 0)
    if col.kind == "money":
        suspect |= fin & (num > float(MAX_YUAN))
    if col.kind == "count":
        suspect |= fin & (num != np.floor(num))
    if col.kind == "rate":
        suspect |= fin & (num > 1)
    for i in np.flatnonzero(suspect):
        v = obj[i]
        if _blank(v):
            num[i] = np.nan
            continue
        clean = _judge(frame, col, i, v, counties, problems)
        if clean is None:
            num[i] = np.nan
        else:
            dec = parse_number(clean, col.header)
            num[i] = np.nan if dec is None else float(dec)
    return num


def _check_text_kind(frame: InputFrame, col, counties, problems: list[Problem], accepted: set) -> np.ndarray:
    """County and choice columns: values in ``accepted`` pass; others are judged by :func:`_judge`."""
    obj = frame.data[col.key].to_numpy(dtype=object)
    out = np.empty(len(obj), dtype=object)
    for i, v in enumerate(obj):
        if isinstance(v, str) and v in accepted:
            out[i] = v
            continue
        if _blank(v):
            if col.kind == "county":
                problems.append(Problem(frame.table.sheet, _cell(frame, col.key, i), "县区为空：这一行填了数据，但没有填写县区"))
            out[i] = None
            continue
        out[i] = _judge(frame, col, i, v, counties, problems)
    return out


@dataclass
class CityTarget:
    target_id: str
    clause: str
    text: str
    word: str
    value: Any
    unit: str
    actual: float | None  # None: no input table reports it
    met: bool | None
    note: str = ""


@dataclass
class RefreshResult:
    on: dt.date
    counties: tuple[str, ...]
    #: one row per (input row, rule): table, sheet, row, county, name, rule, clause, rule_name, cents
    awards: pd.DataFrame
    #: cents per county (index) and rule (columns, plan order of rules that have amounts)
    by_county: pd.DataFrame
    #: rule -> (number of rows paid, cents)
    by_rule: dict
    #: county -> annex key -> actual count
    actuals: dict
    #: county -> annex key -> target
    targets: dict
    city: list[CityTarget]
    rows_read: dict  # table key -> number of non-blank rows
    labels: dict = field(default_factory=dict)  # annex key -> its short Chinese name

    @property
    def total_cents(self) -> int:
        return int(sum(c for _, c in self.by_rule.values()))


def _award_name(table: InputTable, frame: pd.DataFrame) -> np.ndarray:
    """The row's name for the detail sheet: the first text column after 县区."""
    text_cols = [c.key for c in table.columns if c.kind == "text"]
    if not text_cols:
        return np.full(len(frame), "", dtype=object)
    s = frame[text_cols[0]].astype(object).where(frame[text_cols[0]].notna(), "")
    return s.map(lambda v: v.strip() if isinstance(v, str) else describe(v)).to_numpy(dtype=object)


def compute(
    frames: dict[str, InputFrame],
    on=None,
    plan: Plan | None = None,
    progress: Progress | None = None,
) -> RefreshResult:
    """Everything refresh writes, from the input tables.  Raises :class:`RefreshError` listing every
    bad cell when any value cannot be used (then nothing may be written)."""
    plan = plan or load_plan()
    on = policy_date(on)
    counties = plan.counties
    problems: list[Problem] = []
    checked: dict[str, dict[str, np.ndarray]] = {}
    if progress:
        progress("检查数据……")
    for table in TABLES:
        fr = frames.get(table.key)
        if fr is None:
            continue
        cols: dict[str, np.ndarray] = {}
        for col in table.columns:
            if col.numeric:
                cols[col.key] = _check_numeric(fr, col, counties, problems)
            elif col.kind == "county":
                cols[col.key] = _check_text_kind(fr, col, counties, problems, set(counties))
            elif col.kind == "choice":
                cols[col.key] = _check_text_kind(fr, col, counties, problems, set(col.choices))
        checked[table.key] = cols
    if problems:
        raise RefreshError(f"输入表中有{len(problems)}处数据无法计算，未刷新（请改正后再刷新）：", problems)

    rule_order = [r for r in plan.rules]
    parts = []
    for table in TABLES:
        fr = frames.get(table.key)
        if fr is None or not table.awards or len(fr.data) == 0:
            continue
        if progress:
            progress(f"计算“{table.sheet}”的奖补（{len(fr.data)}行）……")
        cols = checked[table.key]
        names = _award_name(table, fr.data)
        for award in table.awards:
            data = {}
            for inp, key in award.inputs.items():
                if isinstance(key, str) and key.startswith("="):
                    data[inp] = key[1:]
                else:
                    data[inp] = cols.get(key, fr.data[key].to_numpy(dtype=object))
            groups = cols[award.cumulative_by] if award.cumulative_by else None
            try:
                cents = calculate_columns_cents(award.rule, data, on=on, plan=plan, groups=groups)
            except InputError as exc:  # a value only the rule itself rejects (e.g. a rate over its ceiling)
                raise RefreshError(
                    "输入表中有数据无法计算，未刷新：", [Problem(table.sheet, "", f"{award.header}：{exc}")]
                ) from None
            rule = plan.rules[award.rule]
            ok = ~np.isnan(cents)
            parts.append(
                pd.DataFrame(
                    {
                        "table": table.key,
                        "sheet": table.sheet,
                        "row": fr.data["_row"].to_numpy()[ok],
                        "county": cols["county"][ok],
                        "name": names[ok],
                        "rule": rule.id,
                        "clause": rule.clause,
                        "rule_name": rule.name,
                        "order": rule_order.index(rule.id),
                        "cents": cents[ok].astype("int64"),
                    }
                )
            )

    # county-level award: 省级特色旅游名镇名村 per county from the counts of T_DEMO rows
    tourism_rows = tourism_counts_of(plan)  # plan.yaml: AWARD_TOURISM paid_per.counts
    tourism_counts = {k: _count_by_county(frames, checked, t, c, v, counties) for k, (t, c, v) in tourism_rows.items()}
    if TOURISM_RULE in plan.rules:
        rule = plan.rules[TOURISM_RULE]
        data = {k: np.array([tourism_counts[k][c] for c in counties], dtype="float64") for k in tourism_rows}
        cents = calculate_columns_cents(TOURISM_RULE, data, on=on, plan=plan)
        labels = [
            "、".join(f"{tourism_rows[k][2]}{int(tourism_counts[k][c])}个" for k in tourism_rows) for c in counties
        ]
        parts.append(
            pd.DataFrame(
                {
                    "table": tourism_rows[next(iter(tourism_rows))][0],
                    "sheet": _sheet_of(tourism_rows[next(iter(tourism_rows))][0]),
                    "row": 0,
                    "county": list(counties),
                    "name": labels,
                    "rule": rule.id,
                    "clause": rule.clause,
                    "rule_name": rule.name,
                    "order": rule_order.index(rule.id),
                    "cents": np.nan_to_num(cents, nan=0.0).astype("int64"),
                }
            )
        )
    columns = ["table", "sheet", "row", "county", "name", "rule", "clause", "rule_name", "order", "cents"]
    awards = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=columns)

    if progress:
        progress("汇总……")
    present = set(awards["rule"].unique())
    paid_rules = [r for r in rule_order if r in present]
    by_county = (
        awards.groupby(["county", "rule"], sort=False)["cents"].sum().unstack(fill_value=0)
        .reindex(index=list(counties), columns=paid_rules, fill_value=0)
        .astype("int64")
    )
    grouped = awards.assign(paid=awards["cents"] > 0).groupby("rule", sort=False).agg(n=("paid", "sum"), cents=("cents", "sum"))
    by_rule = {rid: (int(grouped.at[rid, "n"]), int(grouped.at[rid, "cents"])) for rid in paid_rules}

    actuals, targets = _progress(frames, checked, plan, on)
    city = _city_targets(plan, actuals, tourism_counts, frames, checked)
    rows_read = {k: len(fr.data) for k, fr in frames.items()}
    labels = {col["key"]: col["short"] for col in plan.annex_columns}
    return RefreshResult(on, tuple(counties), awards, by_county, by_rule, actuals, targets, city, rows_read, labels)


def _sheet_of(table_key: str) -> str:
    return next(t.sheet for t in TABLES if t.key == table_key)


def _count_by_county(frames, checked, table_key, column, value, counties) -> dict:
    fr = frames.get(table_key)
    out = {c: 0 for c in counties}
    if fr is None or len(fr.data) == 0:
        return out
    mask = checked[table_key][column] == value
    for county, n in pd.Series(checked[table_key]["county"][mask]).value_counts().items():
        if county in out:
            out[county] = int(n)
    return out


def _condition_mask(rule_id: str, column: str, values: np.ndarray, on, plan: Plan) -> np.ndarray:
    """Rows meeting the rule's threshold on ``column`` (money in yuan), as the engine resolves it."""
    rule = plan.rules[rule_id]
    body = next(iter(resolve(rule_id, on=on, plan=plan).variants.values()))
    mask = np.isfinite(values)
    found = False
    for c in body["conditions"]:
        if c["input"] != column:
            continue
        found = True
        kind = rule.input(column).kind
        # rounded to the cent half up exactly as the award rounds (np.round would be half-even)
        from xl_ecom.rules.money import to_cents_array

        v = to_cents_array(np.nan_to_num(values, nan=0.0), rule.input(column).label) if kind == "money" else np.nan_to_num(values, nan=0.0)
        mask &= holds(v, c["word"], float(c["threshold"]))
    if not found:
        raise XlEcomError(f"规则 {rule_id} 没有关于“{column}”的门槛，无法计数")
    return mask


def _progress(frames, checked, plan: Plan, on) -> tuple[dict, dict]:
    counties = plan.counties
    actuals = {c: {} for c in counties}
    targets = {c: {col["key"]: plan.annex_value(c, col["key"]) for col in plan.annex_columns} for c in counties}
    for a in ACTUALS:
        fr = frames.get(a.table)
        counts = {c: 0 for c in counties}
        if fr is not None and len(fr.data):
            cols = checked[a.table]
            mask = np.ones(len(fr.data), dtype=bool)
            if a.kind_column:
                mask &= cols[a.kind_column] == a.kind_value
            if a.rule_condition:
                rule_id, column = a.rule_condition
                rule_input = next(k for k, v in _award_for(rule_id).inputs.items() if v == column)
                mask &= _condition_mask(rule_id, rule_input, cols[column], on, plan)
            for county, n in pd.Series(cols["county"][mask]).value_counts().items():
                if county in counts:
                    counts[county] = int(n)
        for c in counties:
            actuals[c][a.annex_key] = counts[c]
    return actuals, targets


def _award_for(rule_id: str):
    for t in TABLES:
        for a in t.awards:
            if a.rule == rule_id:
                return a
    raise KeyError(rule_id)


def _city_targets(plan: Plan, actuals, tourism_counts, frames, checked) -> list[CityTarget]:
    annex_for_target = {col["target"]: col["key"] for col in plan.annex_columns if col.get("target")}
    paid_per = plan.rules[TOURISM_RULE].paid_per if TOURISM_RULE in plan.rules else None
    tourism_for_target = {c["target"]: k for k, c in (paid_per or {"counts": {}})["counts"].items()}
    out = []
    for t in plan.targets:
        actual = None
        note = ""
        if t.id in annex_for_target:
            key = annex_for_target[t.id]
            actual = float(sum(actuals[c].get(key, 0) for c in plan.counties))
            note = "各县区完成数合计"
        elif t.id in tourism_for_target:
            actual = float(sum(tourism_counts[tourism_for_target[t.id]].values()))
            note = "“示范创建”表中认定的个数合计"
        elif t.actual is not None:
            fr = frames.get(t.actual["table"])
            if fr is not None:
                from xl_ecom.rules.money import to_cents_array

                vals = checked[t.actual["table"]][t.actual["column"]]
                # each amount to the cent half up (as the awards), then summed exactly
                actual = float(np.nansum(to_cents_array(vals, t.name))) / 100.0 if len(vals) else 0.0
                note = t.actual.get("note") or f"{t.actual['table']}.{t.actual['column']}合计"
        else:
            note = "输入表中没有对应数据，请由牵头单位填报"
        met = None
        if actual is not None:
            if t.word in APPROXIMATE_WORDS:
                note += "；“左右”为约数，不作达标判断"
            else:
                met = bool(holds(actual, t.word, float(t.value)))
        out.append(CityTarget(t.id, t.clause, t.text, t.word, t.value, t.unit, actual, met, note))
    return out


# ---------------------------------------------------------------------------------------------
# 3. layout: neutral grids that the openpyxl and xlwings writers render
# ---------------------------------------------------------------------------------------------


@dataclass
class Block:
    """A rectangle of cells starting at ``top`` (1-based row), column A."""

    top: int
    headers: list  # list of header rows (lists)
    rows: list  # body rows (lists of values)
    kinds: list  # per column: text | center | money | count | percent
    merges: list = field(default_factory=list)  # (row, col, row, col), absolute (header or body rows)
    total_rows: int = 0  # the last N body rows are totals (bold)
    overrides: dict = field(default_factory=dict)  # (body row index, column index 0-based) -> kind
    row_height: float | None = None  # body rows (for wrapped text)

    def kind(self, i: int, j: int) -> str:
        return self.overrides.get((i, j)) or (self.kinds[j] if j < len(self.kinds) else "text")

    @property
    def first_body_row(self) -> int:
        return self.top + len(self.headers)

    @property
    def last_row(self) -> int:
        return self.first_body_row + len(self.rows) - 1


@dataclass
class ChartSpec:
    title: str
    y_title: str
    categories: tuple  # (col, first_row, last_row)
    series: list  # (col, header_row, first_row, last_row)
    anchor: str  # top-left cell
    width_cm: float = 24
    height_cm: float = 10


@dataclass
class SheetSpec:
    name: str
    title: str
    subtitle: str
    ncols: int
    widths: list
    blocks: list
    chart: ChartSpec | None = None
    print_rows: str | None = None
    freeze: str | None = None

    def cells(self) -> dict:
        """{(row, col): value} of every written cell (titles, headers, bodies): for tests and writers."""
        out = {(1, 1): self.title, (2, 1): self.subtitle}
        for b in self.blocks:
            for i, row in enumerate(b.headers):
                for j, v in enumerate(row, start=1):
                    if v is not None:
                        out[(b.top + i, j)] = v
            for i, row in enumerate(b.rows):
                for j, v in enumerate(row, start=1):
                    out[(b.first_body_row + i, j)] = v
        return out


def _yuan(cents) -> float:
    return round(int(cents) / 100.0, 2)


def generated_sheets(result: RefreshResult, plan: Plan | None = None) -> list[SheetSpec]:
    plan = plan or load_plan()
    return [_awards_sheet(result), _summary_sheet(result, plan), _progress_sheet(result, plan)]


def _subtitle(result: RefreshResult, extra: str = "") -> str:
    return f"政策日期：{result.on.isoformat()}　按各输入表和方案规则由“刷新”生成，请勿在本表填写（下次刷新会重写）。{extra}"


def _awards_sheet(result: RefreshResult) -> SheetSpec:
    a = result.awards
    paid = a[a["cents"] > 0]
    if len(paid):
        tbl = paid["table"].map(_TABLE_ORDER).where(paid["row"] > 0, len(_TABLE_ORDER))
        paid = paid.assign(_t=tbl).sort_values(["_t", "row", "order"], kind="stable")
    headers = ["序号", "县区", "来源表", "行号", "名称", "条款", "奖补项目", "奖补金额(元)"]
    n = len(paid)
    rows = []
    if n:
        seq = np.arange(1, n + 1)
        rowcol = np.where(paid["row"].to_numpy() > 0, paid["row"].to_numpy(), None)
        yuan = paid["cents"].to_numpy() / 100.0
        rows = [list(r) for r in zip(seq.tolist(), paid["county"].tolist(), paid["sheet"].tolist(),
                                      [("县区汇总" if r is None else int(r)) for r in rowcol],
                                      paid["name"].tolist(), paid["clause"].tolist(), paid["rule_name"].tolist(),
                                      np.round(yuan, 2).tolist())]
    rows.append(["合计", None, None, None, f"{n}笔", None, None, _yuan(int(paid["cents"].sum()) if n else 0)])
    block = Block(3, [headers], rows, ["center", "center", "center", "center", "text", "center", "text", "money"], total_rows=1)
    return SheetSpec(
        layout.SHEET_AWARDS,
        "奖补明细",
        _subtitle(result, "单位：元；只列金额大于0的奖补，行号指来源表中的行。"),
        len(headers),
        [7, 10, 12, 8, 30, 10, 26, 16],
        [block],
        print_rows="3:3",
        freeze="A4",
    )


_TABLE_ORDER = {t.key: i for i, t in enumerate(TABLES)}


def _summary_sheet(result: RefreshResult, plan: Plan) -> SheetSpec:
    rules = list(result.by_county.columns)
    head = ["县区"] + [f"{plan.rules[r].name}（{plan.rules[r].clause}）" for r in rules] + ["合计"]
    rows = []
    for c in result.counties:
        vals = [int(result.by_county.at[c, r]) for r in rules]
        rows.append([c] + [_yuan(v) for v in vals] + [_yuan(sum(vals))])
    col_totals = [int(result.by_county[r].sum()) for r in rules]
    rows.append(["合计"] + [_yuan(v) for v in col_totals] + [_yuan(sum(col_totals))])
    first = Block(3, [head], rows, ["center"] + ["money"] * (len(rules) + 1), total_rows=1)

    top2 = first.last_row + 3
    head2 = ["条款", "奖补项目", "兑现方式", "牵头单位", "配合单位", "笔数", "金额(元)"]
    rows2 = []
    for r in rules:
        rule = plan.rules[r]
        units = plan.rule_units(rule)
        count, cents = result.by_rule[r]
        rows2.append([rule.clause, rule.name, rule.payment, units[0], "、".join(units[1:]) or None, count, _yuan(cents)])
    rows2.append(["合计", None, None, None, None, sum(result.by_rule[r][0] for r in rules), _yuan(result.total_cents)])
    second = Block(top2, [head2], rows2, ["center", "text", "text", "text", "text", "count", "money"], total_rows=1, row_height=30)

    # per clause (条款 of the plan, in its order): the rules of one clause added up
    top3 = second.last_row + 3
    head3 = ["条款", "任务", "奖补项目数", "笔数", "金额(元)"]
    rows3 = []
    for task in plan.tasks:
        ids = [r for r in rules if plan.rules[r].clause == task["id"]]
        if ids:
            rows3.append([task["id"], task["title"], len(ids), sum(result.by_rule[r][0] for r in ids), _yuan(sum(result.by_rule[r][1] for r in ids))])
    rows3.append(["合计", None, len(rules), sum(result.by_rule[r][0] for r in rules), _yuan(result.total_cents)])
    third = Block(top3, [head3], rows3, ["center", "text", "count", "count", "money"], total_rows=1)
    ncols = max(len(head), len(head2))
    widths = [12] + [16] * (ncols - 1)
    return SheetSpec(
        layout.SHEET_SUMMARY,
        "奖补汇总（按县区、按条款）",
        _subtitle(result, "单位：元。"),
        ncols,
        widths,
        [first, second, third],
        print_rows="3:3",
    )


def progress_rate(actual, target) -> float | None:
    """完成率 = 完成数 ÷ 目标任务数 (None when there is no target)."""
    if target in (None, 0):
        return None
    return float(actual) / float(target)


def progress_gap(actual, target) -> float:
    """差额 = 完成数 − 目标任务数 (negative: still short of the target)."""
    return float(actual) - float(target or 0)


def _progress_sheet(result: RefreshResult, plan: Plan) -> SheetSpec:
    cols = list(plan.annex_columns)
    group = ["县区"]
    sub = [None]
    merges = []
    kinds = ["center"]
    for i, col in enumerate(cols):
        start = 2 + 4 * i
        group += [col["short"], None, None, None]
        sub += ["目标任务数", "完成数", "完成率", "差额"]
        merges.append((3, start, 3, start + 3))
        kinds += ["count", "count", "percent", "count"]
    merges.append((3, 1, 4, 1))
    rows = []
    totals_t = [0] * len(cols)
    totals_a = [0] * len(cols)
    for c in result.counties:
        row = [c]
        for i, col in enumerate(cols):
            t = result.targets[c][col["key"]]
            a = result.actuals[c].get(col["key"], 0)
            totals_t[i] += t or 0
            totals_a[i] += a
            row += [t, a, progress_rate(a, t), progress_gap(a, t)]
        rows.append(row)
    total = ["合计"]
    for i in range(len(cols)):
        total += [totals_t[i], totals_a[i], progress_rate(totals_a[i], totals_t[i]), progress_gap(totals_a[i], totals_t[i])]
    rows.append(total)
    first = Block(3, [group, sub], rows, kinds, merges=merges, total_rows=1)

    ncols = max(1 + 4 * len(cols), 11)
    # city targets: 条款 | 目标（方案原文） over 4 columns | 界限用语 | 目标值 | 单位 | 实际完成 | 是否达到 | 说明 over the rest
    top2 = first.last_row + 3
    span_text, span_note = (2, 5), (11, ncols)
    head2 = ["条款", "目标（方案原文）", None, None, None, "界限用语", "目标值", "单位", "实际完成", "是否达到", "说明"]
    head2 += [None] * (ncols - len(head2))
    rows2, overrides, merges2 = [], {}, []
    for i, t in enumerate(result.city):
        state = "—" if t.met is None else ("已达到" if t.met else "未达到")
        row = [t.clause, t.text, None, None, None, t.word, t.value, t.unit, t.actual, state, t.note]
        rows2.append(row + [None] * (ncols - len(row)))
        value_kind = {"元": "money", "比例": "percent"}.get(t.unit, "count")
        overrides[(i, 6)] = overrides[(i, 8)] = value_kind
    for r in range(top2, top2 + 1 + len(rows2)):
        merges2.append((r, span_text[0], r, span_text[1]))
        merges2.append((r, span_note[0], r, span_note[1]))
    kinds2 = ["center", "text", "text", "text", "text", "center", "count", "center", "count", "center", "text"]
    kinds2 += ["text"] * (ncols - len(kinds2))
    second = Block(top2, [head2], rows2, kinds2, merges=merges2, overrides=overrides, row_height=30)
    top3 = second.last_row + 3
    head3 = ["县区"] + [f"{col['short']}完成率" for col in cols]
    rows3 = [[c] + [progress_rate(result.actuals[c].get(col["key"], 0), result.targets[c][col["key"]]) for col in cols] for c in result.counties]
    third = Block(top3, [head3], rows3, ["center"] + ["percent"] * len(cols))
    chart = ChartSpec(
        "各县区目标任务完成率",
        "完成率",
        (1, third.first_body_row, third.last_row),
        [(2 + i, top3, third.first_body_row, third.last_row) for i in range(len(cols))],
        f"A{third.last_row + 3}",
    )
    widths = [12] + [11] * (ncols - 1)
    widths[6] = widths[8] = 16  # 目标值 / 实际完成 of the city block can be amounts in yuan (6亿元)
    return SheetSpec(
        layout.SHEET_PROGRESS,
        "目标任务完成情况",
        _subtitle(result, "完成率 = 完成数 ÷ 目标任务数；差额 = 完成数 − 目标任务数（负数为尚差的数量）。"),
        ncols,
        widths,
        [first, second, third],
        chart=chart,
        print_rows="3:4",
    )


def annex_updates(result: RefreshResult, plan: Plan | None = None) -> dict:
    """{(row, col): actual} for the 完成数 cells of 目标任务分解表, county rows only."""
    plan = plan or load_plan()
    first, _, _ = layout.annex_rows(len(plan.counties))
    out = {}
    for i, county in enumerate(plan.counties):
        for b, col in enumerate(plan.annex_columns):
            out[(first + i, layout.annex_col(b, "完成数"))] = result.actuals[county].get(col["key"], 0)
    return out


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
# openpyxl writer
# ---------------------------------------------------------------------------------------------


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
            ws.row_dimensions[r].height = 32
        for (r1, c1, r2, c2) in b.merges:
            ws.merge_cells(start_row=r1, start_column=c1, end_row=r2, end_column=c2)
        # styles: one prototype per column (and per total/body), copied by style id (fast on big sheets)
        protos = {}
        first = b.first_body_row
        ntot = len(b.rows) - b.total_rows
        for i, row in enumerate(b.rows):
            r = first + i
            is_total = i >= ntot
            if b.row_height:
                ws.row_dimensions[r].height = b.row_height
            for j, v in enumerate(row, start=1):
                cell = ws.cell(row=r, column=j)
                if v is not None and v != "":
                    safeio.write_cell_value(cell, v)  # text stays text, never a formula
                key = (b.kind(i, j - 1), is_total)
                proto = protos.get(key)
                if proto is None:
                    sheets.body_cell(cell, key[0])
                    if is_total:
                        cell.font = bold
                    protos[key] = cell
                else:
                    cell._style = copy(proto._style)
    sheets.page_setup(ws, spec.print_rows)
    if spec.freeze:
        ws.freeze_panes = spec.freeze
    if spec.chart:
        ws.add_chart(_bar_chart(ws, spec.chart), spec.chart.anchor)


# ---------------------------------------------------------------------------------------------
# file handling (CLI)
# ---------------------------------------------------------------------------------------------


@dataclass
class RefreshReport:
    path: Path
    backup: Path | None
    result: RefreshResult
    seconds: float

    def to_text(self) -> str:
        r = self.result
        lines = [f"已刷新：{self.path}"]
        if self.backup:
            lines.append(f"原文件已备份为：{self.backup}")
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


def _policy_date_from_rows(rows) -> dt.date | None:
    """政策日期 of the 设置 sheet (its rows of 项目, 值), or its default."""
    from xl_ecom.workflows.settings import SettingsError, settings_from_rows

    try:
        return settings_from_rows([r[:2] for r in rows]).get("政策日期")
    except SettingsError as exc:
        raise RefreshError(f"“{SETTINGS_SHEET}”表有误：{exc}") from None


def _check_kept(before: bytes, after: bytes, name: str) -> None:
    """Every part refresh does not own is byte-identical after the edit (VBA project, ribbon,
    input tables, 设置, 通讯录, …); refuse to write otherwise."""
    with zipfile.ZipFile(io.BytesIO(before)) as a, zipfile.ZipFile(io.BytesIO(after)) as b:
        new_names = set(b.namelist())
        for n in (xlsm.VBA_PROJECT_PART, xlsm.CUSTOM_UI_PART, xlsm.PACKAGE_RELS_PART):
            if n in a.namelist() and (n not in new_names or a.read(n) != b.read(n)):
                raise RefreshError(f"保存“{name}”时“{n}”会改变，已停止写入，原文件未改动")


def refresh_workbook(path, plan: Plan | None = None, on=None, progress: Progress | None = None, backup: bool = True) -> RefreshReport:
    """Refresh the workbook file at ``path`` in place (atomic write, backup, lock check)."""
    started = time.perf_counter()
    plan = plan or load_plan()
    path = Path(path)
    if not path.is_file():
        raise RefreshError(f"找不到工作簿“{path}”")
    locks = safeio.lock_files(path)
    if locks:
        raise RefreshError(
            f"工作簿“{path.name}”正在 Excel 或 WPS 中打开（发现锁定文件“{locks[0].name}”），命令行不能同时改写它。"
            "请先保存并关闭该工作簿，或直接在 Excel 里点“刷新”按钮。"
        )
    if progress:
        progress("打开工作簿……")
    original = path.read_bytes()
    pkg = Package(original, path.name)
    if layout.SHEET_ANNEX not in pkg.sheet_names:
        raise RefreshError(f"工作簿中没有“{layout.SHEET_ANNEX}”表，不是本方案的市级工作簿")
    if on is None:
        on = _policy_date_from_rows(pkg.rows(SETTINGS_SHEET, 1, 3) if SETTINGS_SHEET in pkg.sheet_names else [])
    problems: list[Problem] = []
    frames = {}
    for table in TABLES:
        if progress:
            progress(f"读取“{table.sheet}”……")
        if table.sheet not in pkg.sheet_names:
            problems.append(Problem(table.sheet, "", "工作簿中没有这张输入表"))
            continue
        ncols = len(table.columns) + len(table.awards) + 8
        header = pkg.rows(table.sheet, layout.INPUT_HEADER_ROW, ncols, last_row=layout.INPUT_HEADER_ROW)
        wanted = {j + 1 for j, h in enumerate(header[0] if header else []) if isinstance(h, str) and h.strip() in table.headers}
        skip = set(range(1, ncols + 1)) - wanted - {1}
        rows = pkg.rows(table.sheet, layout.INPUT_HEADER_ROW, ncols, skip=skip)
        frames[table.key] = frames_from_rows(table, rows, problems)
    first, _, _ = layout.annex_rows(len(plan.counties))
    annex = pkg.rows(layout.SHEET_ANNEX, 1, 1)
    problems += check_annex(lambda r, c: annex[r - 1][c - 1] if r - 1 < len(annex) else None, plan)
    if problems:
        raise RefreshError(f"工作簿结构有{len(problems)}处问题，未刷新：", problems)
    result = compute(frames, on=on, plan=plan, progress=progress)
    if progress:
        progress("写入生成的表……")
    write_package(pkg, generated_sheets(result, plan), annex_updates(result, plan))
    if progress:
        progress("保存……")
    data = pkg.to_bytes()
    _check_kept(original, data, path.name)
    try:
        bak = safeio.write_atomically(path, data, backup=backup)
    except safeio.FileBusyError as exc:
        raise RefreshError(str(exc)) from None
    return RefreshReport(path, bak, result, time.perf_counter() - started)


# ---------------------------------------------------------------------------------------------
# the CLI path: edit the workbook package itself
#
# openpyxl would load and re-save the whole workbook (40 s for 80,000 input rows) and rewrite
# every part; refresh instead reads the input sheets' XML and replaces only the parts it owns:
# the three generated sheets (and their drawing and chart), the 完成数 cells of the annex sheet,
# the new cell styles in styles.xml and the bookkeeping entries (workbook.xml, its relationships,
# [Content_Types].xml).  Every other part — input tables, 设置, 通讯录, vbaProject.bin, the
# ribbon — is copied byte for byte.
# ---------------------------------------------------------------------------------------------

from xl_ecom.ooxml import namespaces as _ns  # noqa: E402
from xl_ecom.ooxml import package as _package  # noqa: E402
from xl_ecom.ooxml.package import num_text as _num_text  # noqa: E402,F401

_NS, _R, _STYLES_REL = _ns.MAIN, _ns.R, _ns.REL_STYLES
_REF_RE = re.compile(r"([A-Z]+)(\d+)$")
_ILLEGAL_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f]")


def _esc(text: str) -> str:
    return _ILLEGAL_XML.sub("", text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _esc_attr(text: str) -> str:
    return _esc(text).replace('"', "&quot;")


class Package(_package.Package):
    """:class:`xl_ecom.ooxml.package.Package` whose errors are :class:`RefreshError`."""

    error = RefreshError


# --- cell styles: the official ones of xl_ecom.workflows.sheets, appended to the package's styles.xml ----


from xl_ecom.ooxml.styles import Styles as _Styles  # noqa: E402  (moved to the OOXML layer)


def _sheet_xml(spec: SheetSpec, styles: _Styles, code_name: str | None, with_drawing: bool) -> bytes:
    """The worksheet XML of a generated sheet (inline strings: text is never a formula)."""
    from openpyxl.styles import Alignment, Font
    from openpyxl.utils import get_column_letter

    from xl_ecom.workflows import sheets

    title_s = styles.xf(sheets.TITLE_FONT, sheets.CENTER)
    sub_s = styles.xf(sheets.SUBTITLE_FONT, sheets.LEFT)
    head_s = styles.xf(sheets.HEADER_FONT, sheets.CENTER, border=sheets.BORDER, fill=sheets.HEADER_FILL)
    bold = Font(name=sheets.BODY_FONT.name, size=sheets.BODY_FONT.sz, bold=True)
    right = Alignment(horizontal="right", vertical="center")
    kinds = {
        "text": ("General", sheets.LEFT),
        "center": ("General", sheets.CENTER),
        "money": (sheets.MONEY_FORMAT, right),
        "count": (sheets.COUNT_FORMAT, right),
        "percent": (sheets.PERCENT_FORMAT, right),
    }
    body_s = {(k, tot): styles.xf(bold if tot else sheets.BODY_FONT, al, fmt, border=sheets.BORDER) for k, (fmt, al) in kinds.items() for tot in (False, True)}
    letters = [get_column_letter(j) for j in range(1, max(spec.ncols, 30) + 1)]

    escaped: dict[str, str] = {}

    def text(v: str) -> str:
        e = escaped.get(v)
        if e is None:
            e = escaped[v] = _esc(v)
        return e

    def cell(r: int, c: int, v, s: int) -> str:
        ref = f"{letters[c - 1]}{r}"
        if v is None or (isinstance(v, float) and v != v):
            return f'<c r="{ref}" s="{s}"/>'
        if isinstance(v, str):
            return f'<c r="{ref}" s="{s}" t="inlineStr"><is><t xml:space="preserve">{text(v)}</t></is></c>'
        return f'<c r="{ref}" s="{s}"><v>{_num_text(v)}</v></c>'

    def body_row(r: int, row, ss) -> str:
        out = []
        for j, v in enumerate(row):
            if v is None or v == "" or v.__class__ is float and v != v:
                out.append(f'<c r="{letters[j]}{r}" s="{ss[j]}"/>')
            elif v.__class__ is str:
                out.append(f'<c r="{letters[j]}{r}" s="{ss[j]}" t="inlineStr"><is><t xml:space="preserve">{text(v)}</t></is></c>')
            elif v.__class__ is int:
                out.append(f'<c r="{letters[j]}{r}" s="{ss[j]}"><v>{v}</v></c>')
            else:
                out.append(f'<c r="{letters[j]}{r}" s="{ss[j]}"><v>{_num_text(v)}</v></c>')
        return "".join(out)

    rows: dict[int, str] = {}
    heights: dict[int, float] = {1: 30, 2: 36}
    rows[1] = cell(1, 1, spec.title, title_s)
    rows[2] = cell(2, 1, spec.subtitle, sub_s)
    merges = [f"A1:{letters[spec.ncols - 1]}1", f"A2:{letters[spec.ncols - 1]}2"] if spec.ncols > 1 else []
    for b in spec.blocks:
        width = max(len(h) for h in b.headers)
        for i, hrow in enumerate(b.headers):
            r = b.top + i
            rows[r] = "".join(cell(r, j, v, head_s) for j, v in enumerate(hrow + [None] * (width - len(hrow)), start=1))
            heights[r] = 32
        for (r1, c1, r2, c2) in b.merges:
            merges.append(f"{letters[c1 - 1]}{r1}:{letters[c2 - 1]}{r2}")
        ntot = len(b.rows) - b.total_rows
        col_s = [[body_s[(b.kind(-1, j), tot)] for j in range(width)] for tot in (False, True)]
        special = {i for i, _ in b.overrides}
        first = b.first_body_row
        for i, row in enumerate(b.rows):
            ss = col_s[i >= ntot]
            if i in special:
                ss = [body_s[(b.kind(i, j), i >= ntot)] for j in range(width)]
            rows[first + i] = body_row(first + i, row, ss)
            if b.row_height:
                heights[first + i] = b.row_height
    parts = ['<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n',
             f'<worksheet xmlns="{_NS}" xmlns:r="{_R}">']
    code = f' codeName="{_esc_attr(code_name)}"' if code_name else ""
    parts.append(f'<sheetPr{code}><pageSetUpPr fitToPage="1"/></sheetPr>')
    last_row = max(rows)
    parts.append(f'<dimension ref="A1:{letters[spec.ncols - 1]}{last_row}"/>')
    if spec.freeze:
        m = _REF_RE.match(spec.freeze)
        split = int(m.group(2)) - 1
        parts.append(
            f'<sheetViews><sheetView workbookViewId="0"><pane ySplit="{split}" topLeftCell="{spec.freeze}" activePane="bottomLeft" state="frozen"/>'
            f'<selection pane="bottomLeft" activeCell="{spec.freeze}" sqref="{spec.freeze}"/></sheetView></sheetViews>'
        )
    else:
        parts.append('<sheetViews><sheetView workbookViewId="0"/></sheetViews>')
    parts.append('<sheetFormatPr defaultRowHeight="15"/>')
    parts.append("<cols>" + "".join(f'<col min="{j}" max="{j}" width="{w}" customWidth="1"/>' for j, w in enumerate(spec.widths, start=1)) + "</cols>")
    parts.append("<sheetData>")
    for r in sorted(rows):
        ht = f' ht="{heights[r]}" customHeight="1"' if r in heights else ""
        parts.append(f'<row r="{r}"{ht}>{rows[r]}</row>')
    parts.append("</sheetData>")
    if merges:
        parts.append(f'<mergeCells count="{len(merges)}">' + "".join(f'<mergeCell ref="{m}"/>' for m in merges) + "</mergeCells>")
    parts.extend(_page_setup_xml(spec.print_rows))
    if with_drawing:
        parts.append('<drawing r:id="rId1"/>')
    parts.append("</worksheet>")
    return "".join(parts).encode("utf-8")


def _page_setup_xml(print_rows: str | None) -> list[str]:
    """printOptions, pageMargins, pageSetup, headerFooter exactly as :func:`xl_ecom.workflows.sheets.page_setup`
    sets them (applied to a scratch openpyxl sheet and serialised by openpyxl)."""
    from openpyxl import Workbook
    from openpyxl.xml.functions import tostring

    from xl_ecom.workflows import sheets

    ws = Workbook().active
    sheets.page_setup(ws, print_rows)
    return [tostring(o.to_tree()).decode("utf-8") for o in (ws.print_options, ws.page_margins, ws.page_setup, ws.HeaderFooter)]


def _chart_parts(spec: SheetSpec):
    """(drawing xml from chart part names, [chart xml]) for the sheet's chart, serialised by openpyxl."""
    from openpyxl import Workbook
    from openpyxl.drawing.spreadsheet_drawing import SpreadsheetDrawing
    from openpyxl.xml.functions import tostring

    ch = spec.chart
    ws = Workbook().active
    ws.title = spec.name
    chart = _bar_chart(ws, ch)
    chart_xml = tostring(chart._write())

    def drawing_xml(chart_names):
        drawing = SpreadsheetDrawing()
        chart._id = 1
        drawing.charts.append(chart)
        tree = drawing._write()
        return tostring(tree)

    return drawing_xml, [chart_xml]


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
    from xl_ecom.ooxml import worksheet

    if name not in pkg.sheet_names:
        return None
    return worksheet.code_name(pkg.parts[pkg.sheet_part(name)])


def _code_name_for(pkg: Package, name: str) -> str:
    """The sheet's code name; a new sheet gets the first ``Sheet<n>`` no other sheet uses."""
    from xl_ecom.ooxml import worksheet

    existing = _existing_code_name(pkg, name)
    if existing:
        return existing
    used = {worksheet.code_name(pkg.parts[part]) for _, part, _ in pkg.sheets if part in pkg.parts}
    n = len(pkg.sheets) + 1
    while f"Sheet{n}" in used:
        n += 1
    return f"Sheet{n}"


def write_package(pkg: Package, specs: Sequence[SheetSpec], updates: dict) -> None:
    """Put the generated sheets and the annex 完成数 into the package (nothing else changes)."""
    styles = _Styles(pkg)
    after = layout.SHEET_ANNEX
    for spec in sorted(specs, key=lambda sp: SHEET_ORDER.index(sp.name)):
        extras = _chart_parts(spec) if spec.chart else None
        xml = _sheet_xml(spec, styles, _code_name_for(pkg, spec.name), bool(extras))
        pkg.replace_sheet(spec.name, xml, after, extras)
        pkg.set_print_titles(spec.name, spec.print_rows)
        after = spec.name
    styles.save()
    pkg.set_numbers(layout.SHEET_ANNEX, updates)
    pkg.full_calc_on_load()
    pkg.finish([spec.name for spec in specs] + [layout.SHEET_ANNEX])


# ---------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------


def cmd_refresh(args, out=None, err=None) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    try:
        report = refresh_workbook(args.workbook, on=args.date, backup=not args.no_backup,
                                  progress=(lambda m: print(m, file=err)) if args.verbose else None)
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
        description="刷新市级工作簿中的生成内容（奖补明细、奖补汇总、完成情况、目标任务分解表的完成数），"
        "不改动输入表、设置、通讯录等用户填写的内容。写入前把原文件备份为 <文件名>.备份<日期时间>.xlsm。",
    )
    p.add_argument("workbook", metavar="WORKBOOK", help="市级工作簿，如 目标任务分解表.xlsm")
    p.add_argument("--date", help="政策日期（默认取“设置”表中的政策日期），如 2020-12-31")
    p.add_argument("--no-backup", action="store_true", help="不保留备份文件")
    p.add_argument("-v", "--verbose", action="store_true", help="显示进度")
    p.set_defaults(func=cmd_refresh)
    return p
