"""A county workbook's native formulas on boundary-heavy data, recalculated by LibreOffice.

One generated county workbook gets ROWS rows in every input table: amounts at each threshold and
cap of its rules ± 0.001 / 0.004 / 0.005 / 0.006 / 0.01, zero, blanks, text amounts ("50万",
"1,000", "五十万"), blank 县区 (which count as the workbook's county, as collect reads them),
rows of another county, and promo rows crossing the cumulative cap with blank-county rows in
between.  After one LibreOffice recalculation every award cell is compared with the engine
(calculate_columns_cents / calculate_sequence) or with the flag it must show, and 奖补汇总's
amounts, counts and left-out counts with sums over those expectations.

The same LibreOffice call recalculates a small book of 奖补测算 agreement cells (build.agreement_formula)
for UDF results as xlwings leaves them: numbers, flags, error values and xlwings' error text.

These tests FAIL, never skip, when LibreOffice is missing.
"""

from __future__ import annotations

import datetime as dt
import random
from decimal import Decimal

import numpy as np
import pytest
from openpyxl import Workbook, load_workbook

from xl_ecom.policy import load_plan
from xl_ecom.rules import engine
from xl_ecom.rules.model import Rate, Tiers
from xl_ecom.workflows import build, counties, layout
from xl_ecom.workflows.tables import TABLES, TOURISM_COUNTS, table

from libreoffice import recalculated

ON = dt.date(2020, 12, 31)
ROWS = 2000
SEED = 20201231
DELTAS = (Decimal("0"), Decimal("0.001"), Decimal("0.004"), Decimal("0.005"), Decimal("0.006"), Decimal("0.01"))
TEXT_AMOUNTS = ("50万", "1,000", "五十万", "500000元", "1.2亿")


def _scales(t, key: str) -> list[Decimal]:
    """Yuan amounts where the rules reading column ``key`` change behaviour (thresholds, tiers, caps)."""
    out = {Decimal(0), Decimal("1"), Decimal("12345.675"), Decimal("1000000")}
    for a in t.awards:
        names = [n for n, k in a.inputs.items() if k == key]
        if not names:
            continue
        rule = engine.get_rule(a.rule)
        for body in engine.resolve(a.rule, on=ON).variants.values():
            for c in body.conditions:
                if c.input in names and rule.input(c.input).kind == "money":
                    out.add(Decimal(int(c.threshold)) / 100)
            amount = body.amount
            if isinstance(amount, Tiers) and amount.basis in names:
                out.update(Decimal(int(x.threshold)) / 100 for x in amount.tiers)
            # a basis read from this column, directly or as the default of a blank optional input
            basis = {b for b in amount.basis if b in names or rule.input(b).default_input in names} if isinstance(amount, Rate) else set()
            if basis and body.limit is not None:
                out.add(Decimal(body.limit.cents) / 100 / amount.rate / len(amount.basis))
    return sorted(out)


def _money(rng: random.Random, scales: list[Decimal], small: bool = False):
    roll = rng.random()
    if roll < 0.06:
        return None
    if roll < 0.10:
        return rng.choice(TEXT_AMOUNTS)
    if small:  # promo: many small events, so the county's cumulative cap is crossed mid-table
        base = Decimal(rng.randint(0, 4_000_000)) / 100
    elif roll < 0.80:
        base = rng.choice(scales)
    else:
        base = Decimal(rng.randint(0, int(max(scales) * 130))) / 100
    delta = rng.choice(DELTAS) * rng.choice((-1, 1))
    value = base + delta
    if value < 0:
        value = -value
    return float(value)


def _value(rng: random.Random, t, col, county: str, other: str, scales):
    if col.kind == "county":
        roll = rng.random()
        return None if roll < 0.12 else other if roll < 0.16 else county
    if col.kind == "money":
        return _money(rng, scales[col.key], small=t.key == "T_PROMO")
    if col.kind == "count":
        roll = rng.random()
        if roll < 0.04:
            return None
        if roll < 0.07:
            return "八十"
        return rng.choice((0, 1, 79, 80, 81, 120, rng.randint(0, 300)))
    if col.kind == "years":
        roll = rng.random()
        if roll < 0.04:
            return None
        if roll < 0.07:
            return "两年"
        return rng.choice((0, 1, 1.5, 1.999, 2, 2.001, 2.5, 3, 10))
    if col.kind == "choice":
        if rng.random() < 0.15 and not col.required:
            return None
        return rng.choice(col.choices)
    if col.kind == "date":
        return None if rng.random() < 0.2 else dt.datetime(2020, 1, 1) + dt.timedelta(days=rng.randint(0, 360))
    return f"{col.header[:2]}{rng.randint(1, 10**6)}"


def generate(county: str, other: str) -> dict[str, list[dict]]:
    rng = random.Random(SEED)
    data = {}
    for t in TABLES:
        scales = {c.key: _scales(t, c.key) for c in t.columns if c.kind == "money"}
        data[t.key] = [{c.key: _value(rng, t, c, county, other, scales) for c in t.columns} for _ in range(ROWS)]
    return data


def _is_text_number(v) -> bool:
    return isinstance(v, str)


def expected(data: dict, county: str) -> dict[tuple[str, str], list]:
    """(table, award) -> per row: cents (int), None (blank) or the flag text the cell must show."""
    out = {}
    for t in TABLES:
        rows = data[t.key]
        for a in t.awards:
            numeric = [k for k in a.inputs.values() if t.column(k).kind in counties.NUMERIC_KINDS]
            flags: list = [None] * len(rows)
            for i, row in enumerate(rows):
                if row["county"] not in (None, county):
                    flags[i] = counties.FLAG_COUNTY
                elif any(_is_text_number(row[k]) for k in numeric):
                    flags[i] = counties.FLAG_NUMBER
            ok = [i for i, f in enumerate(flags) if f is None]
            rule = engine.get_rule(a.rule)
            if a.cumulative_by:
                # blank 县区 = this county: one cumulative cap over every unflagged row, in row order
                names = [s.name for s in rule.inputs]
                seq = [[rows[i].get(a.inputs[n]) if n in a.inputs else None for n in names] for i in ok]
                cents = engine.calculate_sequence(a.rule, seq, on=ON)
            else:
                cols = {name: [rows[i][key] for i in ok] for name, key in a.inputs.items()}
                arr = engine.calculate_columns_cents(a.rule, cols, on=ON)
                cents = [None if np.isnan(x) else int(round(x)) for x in arr]
            values = list(flags)
            for i, c in zip(ok, cents):
                values[i] = c
            out[(t.key, a.key)] = values
    return out


def fill(wb, data: dict, county: str) -> None:
    for t in TABLES:
        ws = wb[t.sheet]
        for i, row in enumerate(data[t.key]):
            r = layout.INPUT_FIRST_ROW + i
            for c, col in enumerate(t.columns, start=1):
                ws.cell(row=r, column=c, value=row[col.key])
            for j, a in enumerate(t.awards):
                cell = ws.cell(row=r, column=len(t.columns) + 1 + j)
                if cell.value is None:  # rows below the pre-formatted ones: the clerk copies the formula down
                    cell.value = counties.award_formula(t, a, r, county, on=ON)


# --- 奖补测算 agreement cells: (UDF cell, native cell, expected check) ---------------------------------
AGREEMENT_CASES = [
    (1234.56, 1234.56, "一致"),
    (1234.56, 1234.564, "一致"),
    (1234.56, 1234.57, "不一致"),
    (0, 0, "一致"),
    (None, None, "一致"),
    ("", "", "一致"),
    ("请填数字", "请填数字", "一致"),
    ("xl_ecom.common.errors.InputError: 上浮比例超过上限1%", "上浮比例超过上限1%", "一致"),
    ("=NA()", 100, "未启用Python"),
    ("=1/0", "", "未启用Python"),
    ("#N/A waiting...", 100, "未启用Python"),
    ("Traceback (most recent call last):\n  File ...\nKeyError: 'x'", 100, "未启用Python"),
    ("ModuleNotFoundError: No module named 'xl_ecom'", "请填数字", "未启用Python"),
    ("Could not activate Python COM server, hr = -2147221164 1000", 5, "未启用Python"),
    ("xlwings: 无法连接", 5, "未启用Python"),
    ("运行错误", "", "未启用Python"),
    ("abc", "请填数字", "不一致"),
    (5, "请填数字", "不一致"),
    ("请填数字", 5, "不一致"),
]


def agreement_book(path) -> None:
    wb = Workbook()
    ws = wb.active
    for i, (udf, native, _) in enumerate(AGREEMENT_CASES, start=1):
        ws.cell(row=i, column=1, value=udf)
        ws.cell(row=i, column=2, value=native)
        ws.cell(row=i, column=3, value=build.agreement_formula(f"A{i}", f"B{i}"))
    wb.save(path)


@pytest.fixture(scope="module")
def lo(tmp_path_factory):
    plan = load_plan()
    county, other = plan.counties[0], plan.counties[1]
    data = generate(county, other)
    wb = counties.county_workbook(county, plan, on=ON)
    fill(wb, data, county)
    src = tmp_path_factory.mktemp("edge")
    book = src / f"{county}.xlsx"
    wb.save(book)
    agree = src / "agree.xlsx"
    agreement_book(agree)
    out = recalculated([book, agree], tmp_path_factory.mktemp("edge_lo"))
    return {
        "county": county,
        "data": data,
        "expected": expected(data, county),
        "path": out[0],
        "book": load_workbook(out[0], data_only=True),
        "agree": load_workbook(out[1], data_only=True),
    }


def test_the_data_is_boundary_heavy(lo):
    data, exp = lo["data"], lo["expected"]
    for t in TABLES:
        rows = data[t.key]
        assert len(rows) >= 2000
        assert sum(r["county"] is None for r in rows) >= 150
    flags = [v for vals in exp.values() for v in vals if isinstance(v, str)]
    assert flags.count(counties.FLAG_NUMBER) >= 500 and flags.count(counties.FLAG_COUNTY) >= 500
    promo = exp[("T_PROMO", "subsidy_promo")]
    limit = engine.resolve("SUBSIDY_PROMO", on=ON).variants[""].limit
    assert limit is not None
    cap = limit.cents
    assert sum(c for c in promo if isinstance(c, int)) == cap  # the cap was reached
    # ... by rows of which some had a blank 县区, and a row was cut to the room left
    paid_rows = [i for i, c in enumerate(promo) if isinstance(c, int) and c > 0]
    assert any(data["T_PROMO"][i]["county"] is None for i in paid_rows)
    assert len(paid_rows) >= 20
    halves = sum(1 for r in data["T_SALES"] for k in ("uplink_sales",) if isinstance(r[k], float) and round(r[k] * 1000) % 10 == 5)
    assert halves >= 50


def test_every_award_cell_agrees_with_the_engine(lo):
    wb, exp = lo["book"], lo["expected"]
    problems = []
    checked = 0
    for (tkey, akey), values in exp.items():
        t = table(tkey)
        ws = wb[t.sheet]
        col = len(t.columns) + 1 + [a.key for a in t.awards].index(akey)
        for i, want in enumerate(values):
            r = layout.INPUT_FIRST_ROW + i
            got = ws.cell(row=r, column=col).value
            where = f"{t.sheet}!row {r} {akey} {lo['data'][tkey][i]}"
            if want is None:
                ok = got in (None, "")
            elif isinstance(want, str):
                ok = got == want
            else:
                ok = isinstance(got, (int, float)) and not isinstance(got, bool) and round(got * 100) == want
            if not ok:
                problems.append(f"{where}: got {got!r}, engine {want!r}")
            checked += 1
    assert not problems, f"{len(problems)} of {checked} cells differ:\n" + "\n".join(problems[:30])
    assert checked >= 2000 * sum(len(t.awards) for t in TABLES)


def test_summary_totals_stay_numbers_and_count_left_out_rows(lo):
    wb, exp, data, county = lo["book"], lo["expected"], lo["data"], lo["county"]
    ws = wb[counties.SHEET_SUMMARY]
    total = 0
    left_total = 0
    tourism = {}
    for i, (kind, key) in enumerate(counties.summary_rows()):
        r = counties.SUMMARY_FIRST_ROW + i
        amount = ws.cell(row=r, column=counties.SUMMARY_AMOUNT_COL).value
        count = ws.cell(row=r, column=counties.SUMMARY_COUNT_COL).value
        left = ws.cell(row=r, column=counties.SUMMARY_LEFT_OUT_COL).value
        if kind == "award":
            tkey, akey = key.split("/")
            values = exp[(tkey, akey)]
            cents = [c for c in values if isinstance(c, int)]
            flagged = sum(1 for c in values if isinstance(c, str))
            assert isinstance(amount, (int, float)), (key, amount)
            assert round(amount * 100) == sum(cents), key
            assert count == sum(1 for c in cents if c > 0), key
            assert left == flagged and flagged > 0, (key, left, flagged)
            total += sum(cents)
            left_total += flagged
        elif kind == "count":
            tkey, kind_col, kind_value = TOURISM_COUNTS[key]
            n = sum(1 for row in data[tkey] if row["county"] in (None, county) and row[kind_col] == kind_value)
            assert count == n, key
            tourism[key] = n
        elif kind == "rule":
            cents = engine.calculate_cents("AWARD_TOURISM", tourism["towns"], tourism["villages"], on=ON)
            assert round(amount * 100) == cents
            total += cents
        else:
            assert isinstance(amount, (int, float)), amount
            assert round(amount * 100) == total
            assert left == left_total


def test_agreement_cell_says_python_is_off_on_xlwings_error_text(lo):
    ws = lo["agree"].active
    got = [(udf, native, ws.cell(row=i, column=3).value) for i, (udf, native, _) in enumerate(AGREEMENT_CASES, start=1)]
    want = [(udf, native, w) for udf, native, w in AGREEMENT_CASES]
    assert got == want


def test_collect_reads_the_returned_file_as_the_county_file_shows_it(lo):
    """collect (the city) on the recalculated file: rows of another county, which the county file
    flags FLAG_COUNTY, are not merged; a blank 县区 is merged as the file's county, as the county
    file counts it; every merged row without a text amount gets the amount the county cell shows.
    Text amounts agree too: the county cell flags FLAG_NUMBER and leaves the row out of the county
    total, and collect leaves the row out with an error naming the cell and value (issue #8)."""
    from xl_ecom.workflows import collect

    county, data, exp = lo["county"], lo["data"], lo["expected"]
    result = collect.check_file(lo["path"], load_plan())
    assert result.county == county and result.mergeable
    compared = parsed_text = 0
    for t in TABLES:
        by_row = {r.row: r for r in result.checks[t.key].rows}
        for i, row in enumerate(data[t.key]):
            rr = by_row.get(layout.INPUT_FIRST_ROW + i)
            merged = rr is not None and rr.ok
            if row["county"] not in (None, county):
                assert not merged, (t.sheet, i, row)
                continue
            if any(exp[(t.key, a.key)][i] == counties.FLAG_NUMBER for a in t.awards):
                assert rr is not None and not rr.ok, (t.sheet, i, row)
                assert any("不是数字" in p.message and counties.FLAG_NUMBER in p.message for p in rr.problems), rr.problems
                parsed_text += 1
                continue
            if not merged:
                continue
            assert rr.values["county"] == county
            for a in t.awards:
                want = exp[(t.key, a.key)][i]
                if a.cumulative_by:
                    continue
                kwargs = {name: rr.values.get(key) for name, key in a.inputs.items()}
                got = engine.calculate_cents(a.rule, on=ON, **kwargs)
                assert got == want, (t.sheet, i, row, got, want)
                compared += 1
    assert compared >= 10_000
    assert parsed_text >= 100


def test_the_sheets_tell_the_clerk_how_blanks_and_text_are_treated(lo):
    county, wb = lo["county"], lo["book"]
    readme = " ".join(str(c.value) for row in wb[counties.SHEET_README].iter_rows() for c in row if c.value)
    assert f"留空的按{county}计入" in readme and counties.FLAG_NUMBER in readme and "50万" in readme
    ws = wb[counties.SHEET_SUMMARY]
    assert ws.cell(row=counties.SUMMARY_HEADER_ROW, column=counties.SUMMARY_LEFT_OUT_COL).value == "未计入(行)"
    notes = " ".join(str(c.value) for row in ws.iter_rows() for c in row if isinstance(c.value, str) and c.value.startswith("注"))
    for words in (counties.FLAG_NUMBER, counties.FLAG_COUNTY, f"“县区”留空的行按{county}计入", "累计封顶", "市级汇总时"):
        assert words in notes, words
