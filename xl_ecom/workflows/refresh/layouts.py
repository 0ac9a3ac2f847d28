"""刷新, step 3 — layouts: the generated sheets as data (neutral cell grids the package, openpyxl
and xlwings writers render): 奖补明细, 奖补汇总, 完成情况 (with its bar chart) and the 完成数 cells of
目标任务分解表.  Text copied from the county files (名称) stays as typed here; every writer keeps
it text: the package writer as an inline string with Excel's quote prefix when
:func:`xl_ecom.common.textsafe.is_formula_like`, the openpyxl and xlwings writers through
:mod:`xl_ecom.ooxml.safeio`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from xl_ecom.policy import Plan, load_plan
from xl_ecom.workflows import layout
from xl_ecom.workflows.refresh.compute import RefreshResult
from xl_ecom.workflows.tables import TABLES

GENERATED_SHEETS = (layout.SHEET_AWARDS, layout.SHEET_SUMMARY, layout.SHEET_PROGRESS)
#: Where new generated sheets go: right after 目标任务分解表, in this order (existing ones stay put).
SHEET_ORDER = (layout.SHEET_PROGRESS, layout.SHEET_SUMMARY, layout.SHEET_AWARDS)


def _position(i: int, n: int) -> int:
    """Index ``i`` (negative from the end) of a sequence of ``n`` items; IndexError outside it."""
    j = i + n if i < 0 else i
    if not 0 <= j < n:
        raise IndexError(i)
    return j


class Rows(Sequence):
    """Body rows kept as columns (one list per column) plus a few whole rows at the end: each row is
    a list made when it is read, so 360,000 detail rows never sit in memory as 360,000 lists."""

    def __init__(self, columns: list[list], tail: Sequence[list] = ()):
        self.columns = columns
        self.n = len(columns[0]) if columns else 0
        self.tail = list(tail)

    def __len__(self) -> int:
        return self.n + len(self.tail)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        i = _position(i, len(self))
        return [col[i] for col in self.columns] if i < self.n else list(self.tail[i - self.n])

    def __iter__(self):
        for row in zip(*self.columns):
            yield list(row)
        for row in self.tail:
            yield list(row)


class LazyColumn(Sequence):
    """A column of a DataFrame (or an array), at the positions ``positions`` (all, in order, without
    them), read as Python values a chunk at a time, each passed through ``convert``: 360,000 names or
    amounts never sit in memory as Python objects all at once."""

    CHUNK = 8192

    def __init__(self, values, positions=None, convert=None):
        self.values = values
        self.positions = positions
        self.convert = convert

    def __len__(self) -> int:
        return len(self.values) if self.positions is None else len(self.positions)

    def _chunk(self, start: int, stop: int) -> list:
        at = slice(start, stop) if self.positions is None else self.positions[start:stop]
        part = self.values.iloc[at] if hasattr(self.values, "iloc") else self.values[at]
        items = part.tolist() if hasattr(part, "tolist") else list(part)
        return items if self.convert is None else [self.convert(v) for v in items]

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        i = _position(i, len(self))
        return self._chunk(i, i + 1)[0]

    def __iter__(self):
        for start in range(0, len(self), self.CHUNK):
            yield from self._chunk(start, start + self.CHUNK)


@dataclass
class Block:
    """A rectangle of cells starting at ``top`` (1-based row), column A."""

    top: int
    headers: list  # list of header rows (lists)
    rows: Sequence  # body rows (lists of values, or :class:`Rows`)
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
    # the paid awards in order (input table, row, rule), as positions into the awards frame: the
    # frame is neither filtered nor sorted into copies (360,000 rows of text at the province's scale)
    cents = a["cents"].to_numpy()
    paid = np.flatnonzero(cents > 0)
    headers = ["序号", "县区", "来源表", "行号", "名称", "条款", "奖补项目", "奖补金额(元)"]
    n = len(paid)
    columns: list = [[] for _ in headers]
    if n:
        rowcol = a["row"].to_numpy()[paid]
        tbl = np.where(rowcol > 0, a["table"].iloc[paid].map(_TABLE_ORDER).to_numpy(dtype="int64"), len(_TABLE_ORDER))
        paid = paid[np.lexsort((a["order"].to_numpy()[paid], rowcol, tbl))]  # stable, last key first
        columns = [range(1, n + 1), *(LazyColumn(a[k], paid) for k in ("county", "sheet")),
                   LazyColumn(a["row"].to_numpy(), paid, lambda r: int(r) if r > 0 else "县区汇总"),
                   *(LazyColumn(a[k], paid) for k in ("name", "clause", "rule_name")),
                   LazyColumn(np.round(cents / 100.0, 2), paid)]
    total = ["合计", None, None, None, f"{n}笔", None, None, _yuan(int(cents[cents > 0].sum()) if n else 0)]
    rows = Rows(columns, [total])
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
            count, cents = sum(result.by_rule[r][0] for r in ids), sum(result.by_rule[r][1] for r in ids)
            rows3.append([task["id"], task["title"], len(ids), count, _yuan(cents)])
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
        print_rows=None,  # stacked tables: no header repeats over the wrong one
    )


def progress_rate(actual, target) -> float | None:
    """完成率 = 完成数 ÷ 目标任务数 (None when there is no target)."""
    if target in (None, 0):
        return None
    return float(actual) / float(target)


def progress_gap(actual, target) -> float:
    """差额 = 目标任务数 − 完成数, as in the county workbooks' 目标任务 sheet (0 or negative: the target is met)."""
    return float(target or 0) - float(actual)


def _progress_sheet(result: RefreshResult, plan: Plan) -> SheetSpec:
    cols = list(plan.annex_columns)
    group: list[Any] = ["县区"]
    sub: list[Any] = [None]
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
        row: list[Any] = [c]
        for i, col in enumerate(cols):
            t = result.targets[c][col["key"]]
            a = result.actuals[c].get(col["key"], 0)
            totals_t[i] += t or 0
            totals_a[i] += a
            row += [t, a, progress_rate(a, t), progress_gap(a, t)]
        rows.append(row)
    total: list[Any] = ["合计"]
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
        city_row: list[Any] = [t.clause, t.text, None, None, None, t.word, t.value, t.unit, t.actual, state, t.note]
        rows2.append(city_row + [None] * (ncols - len(city_row)))
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
    rows3 = [[c] + [progress_rate(result.actuals[c].get(col["key"], 0), result.targets[c][col["key"]]) for col in cols]
             for c in result.counties]
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
    # below the chart (10 cm ≈ 19 default rows): 环比 per county and per target, then 部门进展
    extra = []
    top = third.last_row + 3 + CHART_ROWS
    if result.previous is not None:
        by_county, by_target = _history_blocks(result, plan, top, ncols)
        extra += [by_county, by_target]
        top = by_target.last_row + 3
    if result.measures:
        extra.append(_measures_block(result, top, ncols))
    return SheetSpec(
        layout.SHEET_PROGRESS,
        "目标任务完成情况",
        _subtitle(result, "完成率 = 完成数 ÷ 目标任务数；差额 = 目标任务数 − 完成数"
                  "（与县区工作簿相同：正数为尚差的数量，0或负数为已完成）。"),
        ncols,
        widths,
        [first, second, third, *extra],
        chart=chart,
        print_rows=None,  # stacked tables: no header repeats over the wrong one
    )


#: rows left free below the first block's chart before the 环比 and 部门进展 blocks
CHART_ROWS = 22
#: 部门进展 header (columns: 条款 | 工作措施 over 4 | 牵头单位 over 2 | 完成时限 | 进展情况 over 2 | 完成时间 | 状态 | 数据轮次)
MEASURE_HEADERS = ["条款", "工作措施（方案原文）", None, None, None, "牵头单位", None, "完成时限", "进展情况", None, "完成时间", "状态",
                   "数据轮次"]


def _date_cell(value) -> str | None:
    return None if value is None else f"{value.year}年{value.month}月{value.day}日"


def _change(now, before):
    if now is None or before is None:
        return None
    return float(now) - float(before)


def _history_blocks(result: RefreshResult, plan: Plan, top: int, ncols: int) -> tuple[Block, Block]:
    """环比: this round against the previous one, per county (each annex column) and per city target."""
    prev = result.previous or {}
    now_label, before_label = prev.get("round") or "本轮", prev.get("label") or "上一轮"
    cols = list(plan.annex_columns)
    group: list[Any] = [f"县区（环比：{now_label}比{before_label}）"]
    sub: list[Any] = [None]
    merges = [(top, 1, top + 1, 1)]
    kinds = ["center"]
    for i, col in enumerate(cols):
        start = 2 + 3 * i
        group += [col["short"], None, None]
        sub += [f"本轮（{now_label}）", f"上轮（{before_label}）", "增减"]
        merges.append((top, start, top, start + 2))
        kinds += ["count", "count", "count"]
    rows = []
    totals = [[0.0, 0.0] for _ in cols]
    for c in result.counties:
        row: list[Any] = [c]
        for i, col in enumerate(cols):
            a = result.actuals[c].get(col["key"], 0)
            b = prev["actuals"].get(c, {}).get(col["key"], 0)
            totals[i][0] += a
            totals[i][1] += b
            row += [a, b, _change(a, b)]
        rows.append(row)
    total: list[Any] = ["合计"]
    for a, b in totals:
        total += [a, b, _change(a, b)]
    rows.append(total)
    first = Block(top, [group, sub], rows, kinds, merges=merges, total_rows=1)

    top2 = first.last_row + 3
    head = ["条款", "目标（方案原文）", None, None, None, "单位", f"本轮（{now_label}）", f"上轮（{before_label}）", "增减"]
    head += [None] * (ncols - len(head))
    rows2: list[list[Any]] = []
    overrides: dict[tuple[int, int], str] = {}
    merges2: list[tuple[int, int, int, int]] = []
    for t in result.city:
        before = prev["city"].get(t.target_id)
        if t.actual is None and before is None:
            continue
        i = len(rows2)
        row2: list[Any] = [t.clause, t.text, None, None, None, t.unit, t.actual, before, _change(t.actual, before)]
        rows2.append(row2 + [None] * (ncols - len(row2)))
        kind = {"元": "money", "比例": "percent"}.get(t.unit, "count")
        for j in (6, 7, 8):
            overrides[(i, j)] = kind
    for r in range(top2, top2 + 1 + len(rows2)):
        merges2.append((r, 2, r, 5))
    kinds2 = ["center", "text", "text", "text", "text", "center", "count", "count", "count"]
    kinds2 += ["text"] * (ncols - len(kinds2))
    second = Block(top2, [head], rows2, kinds2, merges=merges2, overrides=overrides, row_height=30)
    return first, second


def _measures_block(result: RefreshResult, top: int, ncols: int) -> Block:
    """部门进展: each lead department's measures as 未开始 / 推进中 / 已完成 / 逾期, then what each county
    wrote on its workbook's 工作任务 (its 单位 column shows the county; "（涉及）" for a measure led by a
    department that names the county)."""
    head = list(MEASURE_HEADERS) + [None] * (ncols - len(MEASURE_HEADERS))
    rows, merges = [], []
    for m in result.measures:
        row: list[Any] = [m.measure, m.text, None, None, None, m.lead, None, _date_cell(m.deadline) or "未明确",
                          m.progress, None, _date_cell(m.done), m.state, m.source or "未报送"]
        rows.append(row + [None] * (ncols - len(row)))
    for r in range(top, top + 1 + len(rows)):
        merges += [(r, 2, r, 5), (r, 6, r, 7), (r, 9, r, 10)]
    kinds = ["center", "text", "text", "text", "text", "text", "text", "center", "text", "text", "center", "center", "center"]
    kinds += ["text"] * (ncols - len(kinds))
    return Block(top, [head], rows, kinds, merges=merges, row_height=45)


def annex_updates(result: RefreshResult, plan: Plan | None = None) -> dict:
    """{(row, col): actual} for the 完成数 cells of 目标任务分解表, county rows only."""
    plan = plan or load_plan()
    first, _, _ = layout.annex_rows(len(plan.counties))
    out = {}
    for i, county in enumerate(plan.counties):
        for b, col in enumerate(plan.annex_columns):
            out[(first + i, layout.annex_col(b, "完成数"))] = result.actuals[county].get(col["key"], 0)
    return out

