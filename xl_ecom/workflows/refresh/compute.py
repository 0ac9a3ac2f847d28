"""刷新, step 2 — compute: pandas in, frames out, no XML.

Every value is checked (sheet, cell and a Chinese reason for each bad one, worded by
:func:`xl_ecom.workflows.validate.check_value`), then the awards per row with the vectorised engine
(``engine.calculate_columns_cents``; cumulative caps grouped as plan.yaml declares), totals per
county and per clause, progress per county against the annex (counts per
:data:`xl_ecom.workflows.tables.ACTUALS`; the “超1000万元” count applies the rule's own condition as the
engine resolves it) and the city totals against the text's targets (boundary words through
:func:`xl_ecom.policy.boundaries.holds`).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from xl_ecom.common import textsafe
from xl_ecom.common.errors import InputError
from xl_ecom.common.problems import Problem
from xl_ecom.common.progress import Progress
from xl_ecom.policy import Plan, load_plan
from xl_ecom.policy.boundaries import APPROXIMATE_WORDS, holds
from xl_ecom.rules.counts import condition_mask
from xl_ecom.rules.engine import calculate_columns_cents, policy_date
from xl_ecom.rules.money import MAX_YUAN, describe, parse_number
from xl_ecom.workflows.refresh.errors import RefreshError
from xl_ecom.workflows.refresh.read import InputFrame, _blank
from xl_ecom.workflows.tables import ACTUALS, TABLES, InputTable
from xl_ecom.workflows.tables import tourism_counts as tourism_counts_of

#: The AWARD_TOURISM rule is paid per county from counts of T_DEMO rows (its ``paid_per`` in plan.yaml).
TOURISM_RULE = "AWARD_TOURISM"
#: Which text target each TOURISM_COUNTS key counts towards (plan.yaml: paid_per.counts.*.target).
TOURISM_TARGETS = {k: c["target"] for k, c in (load_plan().rules[TOURISM_RULE].paid_per or {"counts": {}})["counts"].items()}
#: 全市农村产品网络销售额: the target whose ``actual`` in plan.yaml sums a money column.
ONLINE_SALES_TARGET = next(((t.id, t.actual["table"], t.actual["column"]) for t in load_plan().targets if t.actual), None)


def _cell(frame: InputFrame, key: str, i: int) -> str:
    return f"{frame.letters.get(key, '?')}{int(frame.data['_row'].iat[i])}"


def _is_formula_text(raw) -> bool:
    """Text a spreadsheet would take for a formula (:func:`xl_ecom.common.textsafe.is_formula_like`:
    ``=`` ``＝`` ``+`` ``@`` …, after blanks too), except a signed number such as "-5" or "+5",
    which is a number to check, not a formula."""
    if not textsafe.is_formula_like(raw):
        return False
    try:
        float(raw.strip())
    except ValueError:
        return True
    return False


def _judge(frame: InputFrame, col, i: int, raw, counties, problems: list[Problem]):
    """A cell the fast path could not accept: the clean value, or None after recording why not.

    The verdict and its Chinese message come from the row validation of :mod:`xl_ecom.workflows.validate`
    (the same checks 校验数据 and 汇总县区报表 apply), so every front end words a problem alike."""
    from xl_ecom.workflows import validate

    if _is_formula_text(raw):
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
        clean = _judge(frame, col, int(i), v, counties, problems)
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
    #: each lead department's measures with their state (departments.MeasureState), from the ledger
    measures: list = field(default_factory=list)
    #: 环比: the previous round {"label", "round", "actuals": county -> annex key -> n, "city": target -> actual}
    previous: dict | None = None

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
    departments=None,
) -> RefreshResult:
    """Everything refresh writes, from the input tables.  Raises :class:`RefreshError` listing every
    bad cell when any value cannot be used (then nothing may be written).

    ``departments`` (:class:`xl_ecom.workflows.departments.DepartmentFigures`, from the ledger): the
    完成数 the departments reported fill the city targets no input table counts, and their lead
    measures' states go into the result."""
    plan = plan or load_plan()
    on = policy_date(on)
    counties = plan.counties
    problems: list[Problem] = []
    checked: dict[str, dict[str, np.ndarray]] = {}
    if progress:
        progress("检查数据")
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
    # the columns one value fills per part (table, sheet, rule and its texts) as categories shared by
    # every part: 400,000 award rows then hold a small code each, not the same text again and again
    rules = list(plan.rules.values())
    kinds = {
        "table": [t.key for t in TABLES], "sheet": [t.sheet for t in TABLES], "rule": [r.id for r in rules],
        "clause": list(dict.fromkeys(r.clause for r in rules)), "rule_name": list(dict.fromkeys(r.name for r in rules)),
    }
    dtypes = {k: pd.CategoricalDtype(v) for k, v in kinds.items()}

    def constant(key: str, value, n: int):
        return pd.Categorical.from_codes(np.full(n, kinds[key].index(value), dtype="int16"), dtype=dtypes[key])

    parts = []
    paying = [t for t in TABLES if t.awards and frames.get(t.key) is not None and len(frames[t.key].data)]
    for done, table in enumerate(paying, start=1):
        fr = frames[table.key]
        if progress:
            progress(f"计算“{table.sheet}”的奖补（{len(fr.data)}行）", done, len(paying))
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
                        "table": constant("table", table.key, n_ok := int(ok.sum())),
                        "sheet": constant("sheet", table.sheet, n_ok),
                        "row": fr.data["_row"].to_numpy()[ok],
                        "county": cols["county"][ok],
                        "name": names[ok],
                        "rule": constant("rule", rule.id, n_ok),
                        "clause": constant("clause", rule.clause, n_ok),
                        "rule_name": constant("rule_name", rule.name, n_ok),
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
        counts = {k: np.array([tourism_counts[k][c] for c in counties], dtype="float64") for k in tourism_rows}
        cents = calculate_columns_cents(TOURISM_RULE, counts, on=on, plan=plan)
        labels = [
            "、".join(f"{tourism_rows[k][2]}{int(tourism_counts[k][c])}个" for k in tourism_rows) for c in counties
        ]
        parts.append(
            pd.DataFrame(
                {
                    "table": constant("table", tourism_rows[next(iter(tourism_rows))][0], len(counties)),
                    "sheet": constant("sheet", _sheet_of(tourism_rows[next(iter(tourism_rows))][0]), len(counties)),
                    "row": 0,
                    "county": list(counties),
                    "name": labels,
                    "rule": constant("rule", rule.id, len(counties)),
                    "clause": constant("clause", rule.clause, len(counties)),
                    "rule_name": constant("rule_name", rule.name, len(counties)),
                    "order": rule_order.index(rule.id),
                    "cents": np.nan_to_num(cents, nan=0.0).astype("int64"),
                }
            )
        )
    columns = ["table", "sheet", "row", "county", "name", "rule", "clause", "rule_name", "order", "cents"]
    awards = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=columns)

    if progress:
        progress("汇总")
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
    city = _city_targets(plan, actuals, tourism_counts, frames, checked, departments)
    rows_read = {k: len(fr.data) for k, fr in frames.items()}
    short_names = {col["key"]: col["short"] for col in plan.annex_columns}
    measures = list(departments.measures) if departments is not None else []
    return RefreshResult(on, tuple(counties), awards, by_county, by_rule, actuals, targets, city, rows_read, short_names,
                         measures)


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
    """Rows meeting the rule's threshold on ``column`` (money in yuan, NaN blank), judged as the award
    judges it (:func:`xl_ecom.rules.counts.condition_mask`: the same cent rounding, blanks not counted)."""
    return condition_mask(rule_id, {column: values}, on=on, plan=plan)


def _progress(frames, checked, plan: Plan, on) -> tuple[dict, dict]:
    counties = plan.counties
    actuals: dict[str, dict] = {c: {} for c in counties}
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


def _city_targets(plan: Plan, actuals, tourism_counts, frames, checked, departments=None) -> list[CityTarget]:
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
        reported = departments.targets.get(t.id) if departments is not None else None
        if reported is not None:
            value, unit, label = reported
            figure = f"{describe(value * 100)}%" if t.unit == "比例" else f"{describe(value)}{t.unit}"
            said = f"{unit}报送{figure}" + (f"（{label}）" if label else "")
            if actual is None:  # the department's own figure is the actual
                actual, note = float(value), f"{said}的完成数"
            else:  # counted from the county tables; the department's figure is shown beside it
                note += f"；{said}"
        met = None
        if actual is not None:
            if t.word in APPROXIMATE_WORDS:
                note += "；“左右”为约数，不作达标判断"
            else:
                met = bool(holds(actual, t.word, float(t.value)))
        out.append(CityTarget(t.id, t.clause, t.text, t.word, t.value, t.unit, actual, met, note))
    return out



def _round_frames(ledger, round_id: int) -> dict[str, InputFrame]:
    """The input tables of a round as the ledger holds them (carry-forward included)."""
    from xl_ecom.workflows.cycle import round_rows
    from xl_ecom.workflows.refresh.read import frames_from_source

    def source(key: str) -> pd.DataFrame:
        frame = round_rows(ledger, key, round_id)
        table = next(t for t in TABLES if t.key == key)
        for col in table.columns:
            if col.key not in frame.columns:
                frame[col.key] = None
        return frame

    problems: list[Problem] = []
    frames = frames_from_source(source, problems)
    if problems:
        raise RefreshError("台账中上一轮的数据无法读取：", problems)
    return frames


def ledger_inputs(workbook, on=None, plan: Plan | None = None, today: dt.date | None = None, url: str | None = None):
    """(department figures of the current round, the previous round for 环比) from the ledger at ``url``,
    else beside the city workbook; (None, None) when there is none yet (nothing is created).  The
    previous round is computed from its ledger rows (carry-forward included) and its department replies."""
    from xl_ecom.ledger import default_path, open_ledger
    from xl_ecom.workflows.departments import department_figures

    plan = plan or load_plan()
    if url is None and not default_path(workbook).is_file():
        return None, None
    with open_ledger(workbook, url) as ledger:
        figures = department_figures(ledger, plan, today=today)
        rounds = ledger.rounds()
        current = ledger.current_round()
        earlier = [r for r in rounds if current is not None and r.id < current.id]
        previous = None
        if earlier and current is not None:
            prev = earlier[-1]
            try:
                result = compute(_round_frames(ledger, prev.id), on=on, plan=plan,
                                 departments=department_figures(ledger, plan, round_id=prev.id, today=today))
            except RefreshError:
                result = None
            if result is not None:
                previous = {"label": prev.label, "round": current.label, "actuals": result.actuals,
                            "city": {t.target_id: t.actual for t in result.city}}
    return figures, previous
