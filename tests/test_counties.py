"""County workbooks: structure, marker, and native formulas that LibreOffice recalculates to the
engine's figures on fixture data typed in with openpyxl.

Expected sets (counties, targets, 各县区人民政府 measures) are read from plan.yaml directly.
"""

from __future__ import annotations

import argparse
import datetime as dt
import zipfile
from collections import defaultdict

import pytest
import yaml
from openpyxl import load_workbook

from xl_ecom.common.errors import InputError
from xl_ecom.policy import PLAN_PATH
from xl_ecom.rules import engine
from xl_ecom.workflows import counties, departments, layout
from xl_ecom.workflows.tables import TABLES, table

from libreoffice import cached_disagreements, convert, formula_results, recalculated

RAW = yaml.safe_load(PLAN_PATH.read_text(encoding="utf-8"))
ON = dt.date(2020, 12, 31)
COUNTIES = [r["county"] for r in RAW["annex"]["rows"]]
COUNTY_GOV = "各县区人民政府"


def yaml_county_measures() -> list[str]:
    return [
        m["id"]
        for t in RAW["tasks"]
        for m in t["measures"]
        if m["lead"] == COUNTY_GOV or COUNTY_GOV in (m.get("cooperating") or [])
    ]


def yaml_threshold(rule_id: str, input_name: str):
    for c in RAW["rules"][rule_id]["body"]["conditions"]:
        if c["input"] == input_name:
            (since, value), = c["threshold"]["values"].items()
            return c["word"], value
    raise KeyError(rule_id)


# --- fixture data (typed into the generated files with openpyxl) ------------------------------------

def fixture_rows(k: int, county: str, other: str) -> dict[str, list[dict]]:
    """Rows per input table for county number k; includes boundary values, caps, blanks and one row
    of another county (which the county's totals must leave out)."""
    sales = [
        {"enterprise": "甲公司", "uplink_sales": 10_000_000, "platform_retail": 2_000_000, "livestream_sales": 499_999.99},
        {"enterprise": "乙公司", "uplink_sales": 10_000_000.01, "platform_retail": 2_000_000.01, "livestream_sales": 500_000},
        {"enterprise": "丙公司", "uplink_sales": 150_000_000 + k * 1_000_003.37, "platform_retail": 12_345_678.9, "livestream_sales": 1_000_000},
        {"enterprise": "戊公司", "platform_retail": 3_333_333.33 + k},
        {"county": other, "enterprise": "外县公司", "uplink_sales": 50_000_000, "platform_retail": 5_000_000},
    ]
    if k % 2 == 0:
        sales.append({"enterprise": "丁公司", "uplink_sales": 23_456_789.45 + k, "livestream_sales": 999_999.99})
    linkage = [
        {"enterprise": "甲公司", "partner": "一号基地", "agreement_years": 2, "annual_purchase": 500_000},
        {"enterprise": "乙公司", "partner": "二号社", "agreement_years": 1.5, "annual_purchase": 900_000},
        {"enterprise": "丙公司", "partner": "三号社", "agreement_years": 3, "annual_purchase": 499_999.99},
        {"enterprise": "丁公司", "partner": "四号基地", "agreement_years": 2, "annual_purchase": 8_000_000, "online_purchase": 5_000_000},
        {"enterprise": "戊公司", "partner": "五号社", "agreement_years": 2, "annual_purchase": 600_000, "online_purchase": 123_456.78 + k},
    ]
    expo = [
        {"enterprise": "甲公司", "event": "农交会", "booth_fees": 12_345.67, "personnel_costs": 2_345.11 * (k + 1)},
        {"enterprise": "乙公司", "event": "网货大赛", "booth_fees": 0.01, "personnel_costs": 0},
    ]
    promo = [
        {"event": "产销对接一", "date": dt.date(2020, 5, 1), "event_sales": 800_000},
        {"event": "直播促销一", "date": dt.date(2020, 6, 1), "event_sales": 900_000 + k * 10_000},
        {"county": other, "event": "外县直播", "date": dt.date(2020, 6, 2), "event_sales": 2_000_000},
        {"event": "直播促销二", "date": dt.date(2020, 7, 1), "event_sales": 600_000},
        {"event": "直播促销三", "date": dt.date(2020, 8, 1), "event_sales": 100_000},
    ]
    if k >= 4:  # some counties stay under the cumulative cap
        promo = [r for r in promo if r["event"] in ("产销对接一", "外县直播")]
    training = [
        {"training": "基础班一", "kind": "基础", "attendees": 80, "costs": 60_000},
        {"training": "基础班二", "kind": "基础", "attendees": 79, "costs": 10_000},
        {"training": "高管班", "kind": "高管", "attendees": 5, "costs": 70_000.5},
        {"training": "基础班三", "kind": "基础", "attendees": 120, "costs": 33_333.33 + k},
    ]
    facility = [
        {"enterprise": "甲公司", "project": "冷库", "investment": 6_000_000, "rent": 50_000.55},
        {"enterprise": "乙公司", "project": "分拣线", "investment": 1_234_567.89 + k},
        {"enterprise": "丙公司", "project": "租冷库", "rent": 1_500_000},
    ]
    poor = [
        {"site": "一号网点", "village": "甲村", "sales": 100_000},
        {"site": "二号网点", "village": "乙村", "sales": 99_999.99},
        {"site": "三号网点", "sales": 250_000 + k},
    ]
    purchase = [
        {"enterprise": "甲公司", "amount": 123_456.78, "order_based": "否"},
        {"enterprise": "乙公司", "amount": 123_456.78 + k, "order_based": "是"},
        {"enterprise": "丙公司", "amount": 1_000},
    ]
    demo = [{"name": f"{county}示范镇", "kind": "省级电商示范镇"}]
    demo += [{"name": f"{county}示范村{i}", "kind": "省级电商示范村"} for i in range(k % 3 + 1)]
    demo += [{"name": f"{county}旅游镇{i}", "kind": "省级特色旅游名镇"} for i in range(k % 2)]
    demo += [{"name": f"{county}旅游村{i}", "kind": "省级特色旅游名村"} for i in range(2)]
    demo.append({"county": other, "name": "外县示范镇", "kind": "省级电商示范镇"})
    data = {
        "T_SALES": sales, "T_LINKAGE": linkage, "T_EXPO": expo, "T_PROMO": promo, "T_TRAINING": training,
        "T_FACILITY": facility, "T_POOR_SITE": poor, "T_PURCHASE": purchase, "T_DEMO": demo,
    }
    for rows in data.values():
        for r in rows:
            r.setdefault("county", county)
    return data


def fill(path, data, dest):
    wb = load_workbook(path)
    for key, rows in data.items():
        t = table(key)
        ws = wb[t.sheet]
        for i, row in enumerate(rows):
            for c, col in enumerate(t.columns, start=1):
                if col.key in row:
                    ws.cell(row=layout.INPUT_FIRST_ROW + i, column=c, value=row[col.key])
    wb.save(dest)


def expected_awards(data, county: str) -> dict[tuple[str, str], list]:
    """(table, award) -> cents per row from the engine, with cumulative caps per county in row order;
    a row of another county shows counties.FLAG_COUNTY in ``county``'s workbook."""
    out = {}
    for t in TABLES:
        rows = data.get(t.key, [])
        for a in t.awards:
            paid = defaultdict(int)
            values = []
            for row in rows:
                if row.get("county") not in (None, county):
                    values.append(counties.FLAG_COUNTY)
                    continue
                kwargs = {name: row.get(col) for name, col in a.inputs.items()}
                group = row.get(a.cumulative_by) if a.cumulative_by else None
                cents = engine.calculate_cents(a.rule, on=ON, paid_before=paid[group], **kwargs)
                if cents is not None and a.cumulative_by:
                    paid[group] += cents
                values.append(cents)
            out[(t.key, a.key)] = values
    return out


# --- fixtures ----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    out = tmp_path_factory.mktemp("export")
    deps = departments.make_department_sheets(out, on=ON)
    cts = counties.make_county_workbooks(out, on=ON)
    return out, deps, cts


@pytest.fixture(scope="module")
def filled(exported, tmp_path_factory):
    _, _, cts = exported
    dest = tmp_path_factory.mktemp("filled")
    result = {}
    for k, path in enumerate(cts):
        county = path.stem
        other = COUNTIES[(k + 1) % len(COUNTIES)]
        data = fixture_rows(k, county, other)
        target = dest / path.name
        fill(path, data, target)
        result[county] = (target, data)
    return result


@pytest.fixture(scope="module")
def lo(exported, filled, tmp_path_factory):
    """Every generated file through LibreOffice in one soffice call: the 17 department sheets as
    generated and the 8 county workbooks with fixture data.  Returns original -> recalculated."""
    _, deps, issued = exported
    as_sent = tmp_path_factory.mktemp("as_sent")  # issued workbooks under names of their own
    sent = _as_sent(issued)
    copies = [as_sent / f"发出-{p.name}" for p in sent]
    for p, c in zip(sent, copies):
        c.write_bytes(p.read_bytes())
    files = list(deps) + [p for p, _ in filled.values()]
    out = recalculated(files + copies, tmp_path_factory.mktemp("lo"))
    return dict(zip(files + sent, out))


def _as_sent(issued) -> list:
    """The issued workbooks LibreOffice recalculates as sent: 寿县 (a 国家示范 county with tourism targets),
    and two more with other targets (every county's sheets are made by the same code)."""
    by_name = {p.stem: p for p in issued}
    return [by_name["寿县"], by_name["凤台县"], by_name["大通区"]]


def test_issued_workbooks_carry_the_values_of_their_formulas(exported, lo):
    """A county workbook as mailed: every formula cell carries the engine's value as its cached result
    (0 done, the whole target as 差额, blank awards, 0 totals), the same LibreOffice computes when it
    recalculates — so a mail client's or phone's preview shows numbers, not blanks."""
    _, _, issued = exported
    for path in _as_sent(issued):
        ours = formula_results(path)
        assert len(ours) > 2000 and "(no value)" not in ours.values(), path.name
        assert not cached_disagreements(path, load_workbook(lo[path], data_only=True)), path.name
        targets = load_workbook(path, data_only=True)["目标任务"]
        row = 4
        assert targets.cell(row=row, column=6).value == targets.cell(row=row, column=3).value  # 差额 = the target


# --- structure -----------------------------------------------------------------------------------------

def test_one_workbook_per_county(exported):
    out, _, cts = exported
    assert [p.name for p in cts] == [f"{c}.xlsx" for c in COUNTIES]
    assert all(p.parent == out / "县区工作簿" for p in cts)
    from xl_ecom.workflows.settings import COUNTY_SUBDIR

    assert counties.SUBDIR == COUNTY_SUBDIR


def test_sheets_targets_and_tasks(exported):
    _, _, cts = exported
    expected_sheets = ["填报说明", "目标任务", "奖补汇总", "工作任务", *(t.sheet for t in TABLES)]  # totals near the front
    for path in cts:
        county = path.stem
        wb = load_workbook(path)
        assert wb.sheetnames == expected_sheets
        # annex targets, from the YAML
        ws = wb["目标任务"]
        annex = next(r for r in RAW["annex"]["rows"] if r["county"] == county)
        for i, col in enumerate(RAW["annex"]["columns"]):
            r = counties.TARGET_FIRST_ROW + i
            assert col["header"].startswith(ws.cell(row=r, column=2).value)
            assert ws.cell(row=r, column=3).value == annex[col["key"]]
            assert ws.cell(row=r, column=4).value.startswith("=COUNTIFS(")
            assert f'"{county}"' in ws.cell(row=r, column=4).value
        # 各县区人民政府 measures, every one of them, then the measures whose text names this county
        ws = wb["工作任务"]
        assert ws["A2"].value.startswith(f"填报单位：{county}人民政府")
        rows = [r for r in ws.iter_rows(min_row=4, max_col=4, values_only=True) if isinstance(r[0], int)]
        measure_ids = [r[1] for r in rows if "-" in str(r[1])]
        named = [r[1] for r in rows if r[3] == "涉及"]
        assert measure_ids == yaml_county_measures() + named
        # 寿县: 国家电子商务进农村综合示范 (二（五）-2) and the 出村进城 pilot (二（五）-3); no other county is named
        assert named == (["二（五）-2", "二（五）-3"] if county == "寿县" else [])
        # input sheets: county list holds only this county; award columns are native formulas
        for t in TABLES:
            ws = wb[t.sheet]
            assert [c.value for c in ws[layout.INPUT_HEADER_ROW]][: len(t.headers)] == t.headers
            lists = [dv.formula1 for dv in ws.data_validations.dataValidation if dv.type == "list" and "A" in str(dv.sqref)]
            assert f'"{county}"' in lists
            for j in range(len(t.awards)):
                cell = ws.cell(row=layout.INPUT_FIRST_ROW, column=len(t.columns) + 1 + j)
                assert isinstance(cell.value, str) and cell.value.startswith("=")
        with zipfile.ZipFile(path) as z:
            assert not any("vba" in n.lower() for n in z.namelist())


def test_marker(exported, tmp_path):
    _, _, cts = exported
    for path in cts:
        wb = load_workbook(path)
        assert counties.county_marker(wb) == (path.stem, counties.STRUCTURE_VERSION)
        assert wb.defined_names[counties.COUNTY_NAME].hidden
        ws = wb[counties.COUNTY_MARKER_SHEET]
        assert ws[counties.COUNTY_CELL].value == path.stem
        assert ws[counties.VERSION_CELL].value == counties.STRUCTURE_VERSION
        assert ws.protection.sheet
        ro = load_workbook(path, read_only=True)
        assert counties.county_marker(ro) == (path.stem, counties.STRUCTURE_VERSION)
        ro.close()
    # a visible cell edited so it disagrees with the hidden name
    wb = load_workbook(cts[0])
    wb[counties.COUNTY_MARKER_SHEET][counties.COUNTY_CELL] = "凤台县"
    with pytest.raises(InputError, match="凤台县"):
        counties.county_marker(wb)
    # names removed (e.g. by another program): the visible cells still identify it
    wb = load_workbook(cts[1])
    del wb.defined_names[counties.COUNTY_NAME]
    del wb.defined_names[counties.VERSION_NAME]
    assert counties.county_marker(wb) == (cts[1].stem, counties.STRUCTURE_VERSION)
    # an unrelated workbook has no marker
    from openpyxl import Workbook

    assert counties.county_marker(Workbook()) == (None, None)


def test_structure_version_follows_headers(monkeypatch):
    before = counties._structure_fingerprint()
    t = TABLES[0]
    changed = type(t)(**{**t.__dict__, "columns": t.columns[:-1]})
    monkeypatch.setattr(counties, "TABLES", (changed, *TABLES[1:]))
    assert counties._structure_fingerprint() != before


def test_export_equals_fresh_build_and_is_reproducible(exported, tmp_path):
    """make_county_workbooks re-targets one workbook for speed: each file must be byte-identical to
    county_workbook(county) built from scratch, and two runs give the same bytes."""
    _, _, cts = exported
    for path in cts:
        fresh = departments.workbook_bytes(counties.county_workbook(path.stem, on=ON))
        assert fresh == path.read_bytes(), path.stem
    again = counties.make_county_workbooks(tmp_path, on=ON, counties=COUNTIES[:2])
    assert [p.read_bytes() for p in again] == [p.read_bytes() for p in cts[:2]]


def test_unknown_county():
    with pytest.raises(InputError, match="淮北县"):
        counties.county_workbook("淮北县")


def test_cli(tmp_path, capsys):
    parser = argparse.ArgumentParser(prog="xl-ecom")
    sub = parser.add_subparsers()
    counties.add_cli(sub)
    args = parser.parse_args(["counties", "--out", str(tmp_path)])
    assert args.func(args) == 0
    assert sorted(p.stem for p in (tmp_path / "县区工作簿").glob("*.xlsx")) == sorted(COUNTIES)
    assert "已生成县区工作簿8个" in capsys.readouterr().out


# --- LibreOffice ---------------------------------------------------------------------------------------

def test_libreoffice_opens_every_generated_file(lo):
    assert len(lo) == 17 + 8 + 3  # department sheets, county workbooks filled in, 3 as issued
    for original, converted in lo.items():
        a = load_workbook(original, read_only=True)
        b = load_workbook(converted, read_only=True, data_only=True)
        assert b.sheetnames == a.sheetnames, original.name
        a.close()
        b.close()


def _num(v):
    return None if v in (None, "") else float(v)


def test_recalculated_awards_agree_with_engine(filled, lo):
    checked = 0
    for county, (path, data) in filled.items():
        wb = load_workbook(lo[path], data_only=True)
        for (tkey, akey), cents in expected_awards(data, county).items():
            t = table(tkey)
            col = len(t.columns) + 1 + [a.key for a in t.awards].index(akey)
            ws = wb[t.sheet]
            for i, expected in enumerate(cents):
                got = ws.cell(row=layout.INPUT_FIRST_ROW + i, column=col).value
                where = f"{county} {t.sheet} row {layout.INPUT_FIRST_ROW + i} {akey}"
                if expected is None:
                    assert _num(got) is None, where
                elif isinstance(expected, str):
                    assert got == expected, (where, got)
                else:
                    assert isinstance(got, (int, float)), (where, got)
                    assert round(got * 100) == expected, (where, got, expected)
                    checked += 1
            # the blank rows below the data stay blank
            assert _num(ws.cell(row=layout.INPUT_FIRST_ROW + len(cents), column=col).value) is None
    assert checked >= 250


def test_recalculated_summary_and_progress_agree_with_engine(filled, lo):
    uplink_word, uplink_threshold = yaml_threshold("AWARD_UPLINK", "sales")
    assert uplink_word == "超"
    summary = counties.summary_rows()
    promo_capped = 0
    for county, (path, data) in filled.items():
        wb = load_workbook(lo[path], data_only=True)
        ws = wb["奖补汇总"]
        expected = expected_awards(data, county)
        total = 0
        for i, (kind, key) in enumerate(summary):
            r = counties.SUMMARY_FIRST_ROW + i
            if kind == "award":
                tkey, akey = key.split("/")
                own = [c for row, c in zip(data[tkey], expected[(tkey, akey)]) if row["county"] == county and isinstance(c, int)]
                assert round(ws.cell(row=r, column=6).value * 100) == sum(own), (county, key)
                assert ws.cell(row=r, column=5).value == sum(1 for c in own if c > 0), (county, key)
                flagged = sum(1 for c in expected[(tkey, akey)] if isinstance(c, str))
                assert ws.cell(row=r, column=counties.SUMMARY_LEFT_OUT_COL).value == flagged, (county, key)
                total += sum(own)
                if akey == "subsidy_promo":
                    cap = RAW["rules"]["SUBSIDY_PROMO"]["body"]["cap"]["values"]
                    promo_capped += sum(own) == int(list(cap.values())[0]) * 100
            elif kind == "count":
                value = {"towns": "省级特色旅游名镇", "villages": "省级特色旅游名村"}[key]
                n = sum(1 for row in data["T_DEMO"] if row["county"] == county and row["kind"] == value)
                assert ws.cell(row=r, column=5).value == n
            elif kind == "rule":
                towns = sum(1 for row in data["T_DEMO"] if row["county"] == county and row["kind"] == "省级特色旅游名镇")
                villages = sum(1 for row in data["T_DEMO"] if row["county"] == county and row["kind"] == "省级特色旅游名村")
                cents = engine.calculate_cents("AWARD_TOURISM", towns, villages, on=ON)
                assert round(ws.cell(row=r, column=6).value * 100) == cents
                total += cents
            else:
                assert round(ws.cell(row=r, column=6).value * 100) == total, county
        # progress: the annex counts, the >1000万 count by the plan's own threshold word (超: strictly above)
        ws = wb["目标任务"]
        annex = next(x for x in RAW["annex"]["rows"] if x["county"] == county)
        actual = {
            "demo_towns": sum(1 for row in data["T_DEMO"] if row["county"] == county and row["kind"] == "省级电商示范镇"),
            "demo_villages": sum(1 for row in data["T_DEMO"] if row["county"] == county and row["kind"] == "省级电商示范村"),
            "uplink_enterprises": sum(
                1 for row in data["T_SALES"] if row["county"] == county and (row.get("uplink_sales") or 0) > uplink_threshold
            ),
        }
        for i, col in enumerate(RAW["annex"]["columns"]):
            r = counties.TARGET_FIRST_ROW + i
            target, done = annex[col["key"]], actual[col["key"]]
            assert ws.cell(row=r, column=3).value == target
            assert ws.cell(row=r, column=4).value == done, (county, col["key"])
            assert ws.cell(row=r, column=5).value == pytest.approx(done / target)
            assert ws.cell(row=r, column=6).value == target - done
    assert promo_capped >= 4, "the cumulative promo cap was reached in several counties"


def test_recalculated_department_files_keep_content(exported, lo):
    _, deps, _ = exported
    for path in deps:
        wb = load_workbook(lo[path], read_only=True, data_only=True)
        ws = wb[departments.TASK_SHEET]
        first = next(ws.iter_rows(min_row=2, max_row=2, max_col=1, values_only=True))[0]
        assert first.startswith("填报单位：")
        wb.close()


def test_pdf_render_of_a_county_workbook(filled, tmp_path):
    import re

    path, _ = filled["寿县"]
    pdf = convert([path], tmp_path, "pdf")[0]
    data = pdf.read_bytes()
    boxes = re.findall(rb"/MediaBox\s*\[\s*0 0 ([\d.]+) ([\d.]+)\s*\]", data)
    assert boxes and all(round(float(w)) == 842 and round(float(h)) == 595 for w, h in boxes)
    assert len(re.findall(rb"/Type\s*/Page\b", data)) >= len(counties.COUNTY_SHEETS)
