"""The whole round trip on generated files, as the bureau runs it:

build the city workbook → generate the county workbooks → each county fills its file (openpyxl,
fixture data with the rules' boundary cases) → collect the returned files into the city workbook
→ refresh.  The awards and totals refresh writes must equal the engine's figures computed
independently from the fixture with the scalar engine, row by row (the vector path refresh uses
and the scalar path check each other).  LibreOffice then opens every file and recalculates the
native formulas the recipients without Python rely on; they must agree with the engine too.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import openpyxl
import pytest
from test_refresh import FIXTURE, POLICY_DATE, expected_awards, expected_by_county, uplink_count, yuan

from xl_ecom.policy import load_plan
from xl_ecom.rules import engine
from xl_ecom.rules.money import parse_number
from xl_ecom.workflows import build, collect, counties, layout, refresh
from xl_ecom.workflows.tables import TABLES, table

PLAN = load_plan()


def _as_cell(number: Decimal):
    return int(number) if number == number.to_integral_value() else float(number)


def fixture_for(county: str) -> dict:
    """The fixture rows of one county, table by table (blank rows dropped).

    A text amount such as “5000万” is typed as its number here: a returned county file's text amount
    is left out by collect, as the county file's own 请填数字 shows (tests/test_hardening.py and
    tests/test_native_edge.py cover that path); this round trip checks the numbers end to end."""
    def typed(key: str, row: dict) -> dict:
        return {k: (_as_cell(parse_number(v, k)) if isinstance(v, str) and table_kind(table(key), k) == "money" else v)
                for k, v in row.items()}

    return {key: [typed(key, r) for r in rows if r and r["county"] == county] for key, rows in FIXTURE.items()}


def fill_county_workbook(blank: Path, rows_by_table: dict, out: Path) -> Path:
    """What a county clerk does: type the rows into the input tables of the county workbook."""
    wb = openpyxl.load_workbook(blank)
    for key, rows in rows_by_table.items():
        t = table(key)
        ws = wb[t.sheet]
        headers = [ws.cell(row=layout.INPUT_HEADER_ROW, column=c).value for c in range(1, len(t.columns) + 1)]
        assert headers == t.headers, (t.sheet, headers)
        for i, row in enumerate(rows):
            for c, col in enumerate(t.columns, start=1):
                ws.cell(row=layout.INPUT_FIRST_ROW + i, column=c).value = row.get(col.key)
    wb.save(out)
    return out


def collected_fixture() -> dict:
    """The fixture in the order collect puts it: county by county (annex order), file order within."""
    out = {}
    for key in FIXTURE:
        out[key] = [r for c in PLAN.counties for r in fixture_for(c)[key]]
    return out


@pytest.fixture(scope="module")
def round_trip(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("roundtrip")
    city = build.build_workbook(tmp / layout.WORKBOOK_NAME)
    blanks = counties.make_county_workbooks(tmp / "输出")
    assert len(blanks) == len(PLAN.counties)
    returned = tmp / "县区报表"
    returned.mkdir()
    filled = []
    for path in blanks:
        county = next(c for c in PLAN.counties if path.stem == c)
        filled.append(fill_county_workbook(path, fixture_for(county), returned / path.name))
    report = collect.collect(returned, into=city)
    assert report.written, report.to_text()
    errors = [p for p in report.all_problems() if p.is_error]
    assert errors == [], report.to_text()
    refreshed = refresh.refresh_workbook(city)
    return city, filled, report, refreshed


def test_collect_merged_every_fixture_row(round_trip):
    city, _, report, _ = round_trip
    wb = openpyxl.load_workbook(city)
    order = collected_fixture()
    for key, rows in order.items():
        t = table(key)
        ws = wb[t.sheet]
        got = []
        for r in range(layout.INPUT_FIRST_ROW, ws.max_row + 1):
            values = [ws.cell(row=r, column=c).value for c in range(1, len(t.columns) + 1)]
            if any(v is not None for v in values):
                got.append(values[0])
        assert got == [row["county"] for row in rows], t.sheet


def _by_content(rows_by_table) -> dict:
    """{(sheet, county, name, rule): cents} from the scalar engine over rows in collected order."""
    awards = expected_awards(rows_by_table)
    out = {}
    for (sheet, row, rule), cents in awards.items():
        if isinstance(row, str):  # county-level (旅游名镇名村)
            key = (sheet, row, None, rule)
        else:
            t = next(t for t in TABLES if t.sheet == sheet)
            data = rows_by_table[t.key][row - layout.INPUT_FIRST_ROW]
            name_key = next(c.key for c in t.columns if c.kind == "text")
            key = (sheet, data["county"], data[name_key], rule)
        assert key not in out
        out[key] = cents
    return out


def test_awards_equal_the_scalar_engine_on_the_fixture(round_trip):
    city, _, _, report = round_trip
    expected = {k: v for k, v in _by_content(collected_fixture()).items() if v > 0}
    got = {}
    for rec in report.result.awards.itertuples():
        if rec.cents <= 0:
            continue
        key = (rec.sheet, rec.county, None if rec.row == 0 else rec.name, rec.rule)
        got[key] = int(rec.cents)
    assert got == expected
    # and the same figures are what the clerk sees in 奖补明细
    wb = openpyxl.load_workbook(city)
    ws = wb[layout.SHEET_AWARDS]
    names = {r.name: rid for rid, r in PLAN.rules.items()}
    shown = {}
    for row in ws.iter_rows(min_row=4, values_only=True):
        if row[0] in (None, "合计"):
            continue
        key = (row[2], row[1], None if row[3] == "县区汇总" else row[4], names[row[6]])
        shown[key] = yuan(round(Decimal(str(row[7])) * 100))
    assert shown == {k: yuan(v) for k, v in expected.items()}


def test_totals_per_county_equal_the_engine(round_trip):
    city, _, _, report = round_trip
    expected = expected_by_county(FIXTURE)  # county totals do not depend on row order
    wb = openpyxl.load_workbook(city)
    ws = wb[layout.SHEET_SUMMARY]
    header = [c.value for c in ws[3]]
    total_col = header.index("合计")
    for i, county in enumerate(PLAN.counties):
        assert ws.cell(row=4 + i, column=1).value == county
        shown = Decimal(str(ws.cell(row=4 + i, column=total_col + 1).value)).quantize(Decimal("0.01"))
        assert shown == yuan(sum(expected[county].values())), county
    grand = Decimal(str(ws.cell(row=4 + len(PLAN.counties), column=total_col + 1).value)).quantize(Decimal("0.01"))
    assert grand == yuan(sum(sum(v.values()) for v in expected.values()))
    assert report.result.total_cents == sum(sum(v.values()) for v in expected.values())


def test_progress_equals_the_fixture_counts(round_trip):
    city, _, _, _ = round_trip
    wb = openpyxl.load_workbook(city)
    annex = wb[layout.SHEET_ANNEX]
    first, _, _ = layout.annex_rows(len(PLAN.counties))
    demo = FIXTURE["T_DEMO"]
    for i, county in enumerate(PLAN.counties):
        expected = {
            "demo_towns": sum(1 for r in demo if r["county"] == county and r["kind"] == "省级电商示范镇"),
            "demo_villages": sum(1 for r in demo if r["county"] == county and r["kind"] == "省级电商示范村"),
            "uplink_enterprises": uplink_count(FIXTURE["T_SALES"], county),
        }
        for b, col in enumerate(PLAN.annex_columns):
            assert annex.cell(row=first + i, column=layout.annex_col(b, "完成数")).value == expected[col["key"]], (county, col["key"])


def table_kind(t, key) -> str:
    return next((c.kind for c in t.columns if c.key == key), "")


def test_libreoffice_recalculates_every_file_like_the_engine(round_trip, tmp_path):
    """County files (as returned) and the city workbook (after collect and refresh): LibreOffice
    recalculates their native award formulas; every row agrees with the scalar engine, and the
    annex 完成率 agrees with refresh's 完成情况."""
    from libreoffice import recalculated

    city, filled, _, _ = round_trip
    copies = []
    for p in [city, *filled]:
        dst = tmp_path / (p.stem + p.suffix)
        dst.write_bytes(p.read_bytes())
        copies.append(dst)
    outs = recalculated(copies, tmp_path / "lo")
    checked = 0
    for src, out in zip([city, *filled], outs):
        wb = openpyxl.load_workbook(out, data_only=True)
        for t in TABLES:
            ws = wb[t.sheet]
            paid: dict[str, int] = {}
            for r in range(layout.INPUT_FIRST_ROW, ws.max_row + 1):
                values = {c.key: ws.cell(row=r, column=j).value for j, c in enumerate(t.columns, start=1)}
                if all(v is None for v in values.values()):
                    continue
                for k, award in enumerate(t.awards):
                    kwargs = {inp: values.get(key) for inp, key in award.inputs.items()}
                    before = paid.get(values["county"], 0) if award.cumulative_by else 0
                    cents = engine.calculate_cents(award.rule, on=POLICY_DATE, paid_before=before, **kwargs)
                    if award.cumulative_by and cents is not None:
                        paid[values["county"]] = before + cents
                    shown = ws.cell(row=r, column=len(t.columns) + 1 + k).value
                    if any(isinstance(values.get(key), str) and table_kind(t, key) == "money" for key in award.inputs.values()):
                        # text such as “5000万” typed past the cell's validation: the engine reads it,
                        # a native formula shows a Chinese flag instead of a number — never a wrong one
                        assert shown == "请填数字", (src.name, t.sheet, r, award.key, shown)
                        checked += 1
                        continue
                    if cents is None:
                        assert shown in (None, ""), (src.name, t.sheet, r, award.key)
                    else:
                        assert isinstance(shown, (int, float)) and round(Decimal(str(shown)) * 100) == cents, (src.name, t.sheet, r, award.key, shown, cents)
                    checked += 1
        if src == city:
            annex = wb[layout.SHEET_ANNEX]
            progress = wb[layout.SHEET_PROGRESS]
            first, _, _ = layout.annex_rows(len(PLAN.counties))
            for i in range(len(PLAN.counties)):
                for b in range(len(PLAN.annex_columns)):
                    rate = annex.cell(row=first + i, column=layout.annex_col(b, "完成率")).value
                    assert rate == pytest.approx(progress.cell(row=5 + i, column=2 + 4 * b + 2).value)
    assert checked >= 2 * sum(len(t.awards) * len([r for r in FIXTURE.get(t.key, []) if r]) for t in TABLES)
