"""Department replies end to end through the CLI (issue #10, second half).

generate department task sheets and county workbooks (with issue tokens), fill replies with openpyxl
on the returned copies, collect one folder holding both kinds, refresh, and check: the department-owned
target actuals, the measures' states, the status of the units, the bad cells named, the 环比 after a
second round, and 差额 meaning the same in county and city files (LibreOffice recalculates both).
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path

import openpyxl
import pytest

from tests import libreoffice
from xl_ecom.common.errors import InputError
from xl_ecom.frontends import cli
from xl_ecom.ledger import open_ledger
from xl_ecom.ooxml import safeio
from xl_ecom.policy import load_plan
from xl_ecom.workflows import build, counties, departments, layout
from xl_ecom.workflows.tables import table

PLAN = load_plan()
TODAY = dt.date.today()


@pytest.fixture(scope="module")
def city_bytes() -> bytes:
    return build.build_bytes()


@pytest.fixture
def city(tmp_path, city_bytes) -> Path:
    path = tmp_path / "市级" / layout.WORKBOOK_NAME
    path.parent.mkdir()
    path.write_bytes(city_bytes)
    return path


def run(capsys, *argv) -> tuple[int, str, str]:
    capsys.readouterr()
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err, out + err
    return code, out, err


def measure_row(ws, measure_id: str) -> int:
    for r in range(departments.TASK_FIRST_ROW, ws.max_row + 1):
        if ws.cell(row=r, column=2).value == measure_id:
            return r
    raise AssertionError(f"{measure_id} not in {ws.title}")


def reply(src: Path, dst: Path, done: dict | None = None, progress: dict | None = None) -> Path:
    """Fill a department's returned copy: done {target name: value}, progress {measure: (text, date)}."""
    wb = openpyxl.load_workbook(src)
    if done:
        ws = wb[departments.DONE_SHEET]
        for r in range(departments.DONE_FIRST_ROW, ws.max_row + 1):
            name = ws.cell(row=r, column=2).value
            if name in done:
                ws.cell(row=r, column=departments.DONE_VALUE_COL).value = done[name]
    ws = wb[departments.TASK_SHEET]
    heads = [c[0] for c in departments.TASK_COLUMNS]
    for measure, (text, date) in (progress or {}).items():
        r = measure_row(ws, measure)
        ws.cell(row=r, column=heads.index("进展情况") + 1).value = text
        ws.cell(row=r, column=heads.index("完成时间") + 1).value = date
    dst.parent.mkdir(parents=True, exist_ok=True)
    wb.save(dst)
    return dst


def fill_county(src: Path, dst: Path, sales: list[list]) -> Path:
    wb = openpyxl.load_workbook(src)
    ws = wb[table("T_SALES").sheet]
    for i, row in enumerate(sales):
        for j, value in enumerate(row, start=1):
            safeio.write_cell_value(ws.cell(row=layout.INPUT_FIRST_ROW + i, column=j), value)
    dst.parent.mkdir(parents=True, exist_ok=True)
    wb.save(dst)
    return dst


def progress_sheet(city: Path):
    return openpyxl.load_workbook(city, read_only=False)[layout.SHEET_PROGRESS]


def city_actuals(ws) -> dict[str, object]:
    """目标（方案原文） -> 实际完成 of the city-target block of 完成情况."""
    texts = {t.text for t in PLAN.targets}
    out = {}
    for r in range(1, ws.max_row + 1):
        text = ws.cell(row=r, column=2).value
        if text in texts and ws.cell(row=r, column=7).value == next(t.value for t in PLAN.targets if t.text == text):
            out[text] = (ws.cell(row=r, column=9).value, ws.cell(row=r, column=11).value)
    return out


def measure_states(ws) -> dict[str, tuple]:
    ids = {m.id for m in PLAN.measures}
    out = {}
    for r in range(1, ws.max_row + 1):
        key = ws.cell(row=r, column=1).value
        if key in ids:
            out[key] = tuple(ws.cell(row=r, column=c).value for c in (6, 9, 11, 12, 13))
    return out


def history(ws) -> tuple[dict, dict]:
    """(county -> [(本轮, 上轮, 增减) per annex column], target text -> (本轮, 上轮, 增减)) of the 环比 blocks."""
    by_county, by_target = {}, {}
    top = next(r for r in range(1, ws.max_row + 1) if str(ws.cell(row=r, column=1).value or "").startswith("县区（环比"))
    for r in range(top + 2, top + 2 + len(PLAN.counties)):
        county = ws.cell(row=r, column=1).value
        by_county[county] = [tuple(ws.cell(row=r, column=2 + 3 * b + k).value for k in range(3))
                             for b in range(len(PLAN.annex_columns))]
    head = next(r for r in range(top, ws.max_row + 1) if str(ws.cell(row=r, column=7).value or "").startswith("本轮（"))
    r = head + 1
    while ws.cell(row=r, column=2).value:
        by_target[ws.cell(row=r, column=2).value] = tuple(ws.cell(row=r, column=c).value for c in (7, 8, 9))
        r += 1
    return by_county, by_target


def status(capsys, city: Path) -> dict:
    _code, out, _ = run(capsys, "status", city, "--json", "--today", "2020-09-20")
    return {u["unit"]: u for u in json.loads(out)["units"]}


def target_text(target_id: str) -> str:
    return PLAN.target(target_id).text


def test_department_replies_two_rounds_end_to_end(tmp_path, city, capsys):
    out_dir = city.parent / "输出"
    deps, cts = out_dir / departments.SUBDIR, out_dir / counties.SUBDIR
    assert run(capsys, "round", "new", "2020-09", "--workbook", city)[0] == 0
    assert run(capsys, "departments", "--workbook", city)[0] == 0
    assert run(capsys, "counties", "--workbook", city)[0] == 0
    with open_ledger(city) as ledger:
        kinds = {(i.unit, i.kind) for i in ledger.issues()}
    assert ("市农业农村局", "部门") in kinds and ("寿县", "县区") in kinds
    assert ("各县区人民政府", "部门") not in kinds  # generated only, never reported

    # the 完成数 sheet: only the targets the department leads, validated and unlocked
    wb = openpyxl.load_workbook(deps / "市农业农村局.xlsx")
    ws = wb[departments.DONE_SHEET]
    assert ws.cell(row=departments.DONE_FIRST_ROW, column=2).value == PLAN.target("T_SANPIN_YIBIAO").name
    assert ws.cell(row=departments.DONE_FIRST_ROW, column=4).value == 41
    assert ws.cell(row=departments.DONE_FIRST_ROW + 1, column=2).value is None
    cell = ws.cell(row=departments.DONE_FIRST_ROW, column=departments.DONE_VALUE_COL)
    assert ws.protection.sheet and not cell.protection.locked
    assert any(dv.type == "decimal" and dv.formula1 == "0" for dv in ws.data_validations.dataValidation)
    task = wb[departments.TASK_SHEET]
    assert not task.cell(row=measure_row(task, "二（二）-2"), column=10).protection.locked
    assert any(dv.type == "date" for dv in task.data_validations.dataValidation)
    assert "完成数" not in openpyxl.load_workbook(deps / "市财政局.xlsx").sheetnames  # owns no target

    # --- round 1 replies -------------------------------------------------------------------------------
    back = tmp_path / "报回1"
    reply(deps / "市农业农村局.xlsx", back / "市农业农村局.xlsx", {"新培育“三品一标”农产品": 30},
          {"二（二）-2": ("已认证30个", dt.datetime(2020, 9, 1)), "二（六）-2": ("已报省厅", None)})
    reply(deps / "市人力资源社会保障局.xlsx", back / "市人力资源社会保障局.xlsx", {PLAN.target("T_EMPLOYMENT_RATE").name: 0.62})
    reply(deps / "市交通运输管理局.xlsx", back / "市交通运输管理局.xlsx", {PLAN.target("T_TRANSPORT_STATIONS").name: 2},
          {"二（四）-4": ("已建成", "下月")})
    reply(deps / "市邮政管理局.xlsx", back / "市邮政管理局.xlsx", {PLAN.target("T_EXPRESS_POINTS").name: "20个"})
    fill_county(cts / "寿县.xlsx", back / "寿县.xlsx", [["寿县", "寿县甲", None, 11_000_000, None, None]])
    code, out, _ = run(capsys, "collect", back, "--into", city)
    assert code == 1, out  # bad cells are errors
    assert "【已汇总】市农业农村局.xlsx" in out and "【已汇总】寿县.xlsx" in out
    assert "【已汇总】市交通运输管理局.xlsx" in out
    assert "工作任务 J" in out and "完成时间“下月”不是日期" in out
    assert "【有错】市邮政管理局.xlsx" in out and "完成数“20个”不是数字" in out and "完成数 G4" in out

    units = status(capsys, city)
    assert units["市农业农村局"]["valid"] and units["市农业农村局"]["issued_how"] == "台账登记"
    assert units["市交通运输管理局"]["valid"] and units["市交通运输管理局"]["problem_count"] == 1
    assert not units["市邮政管理局"]["valid"] and units["市邮政管理局"]["problem_count"] == 1
    assert not units["市财政局"]["valid"]

    code, out, err = run(capsys, "refresh", city)
    assert code == 0, err
    ws = progress_sheet(city)
    actual = city_actuals(ws)
    assert actual[target_text("T_SANPIN_YIBIAO")][0] == 30 and "市农业农村局报送30个" in actual[target_text("T_SANPIN_YIBIAO")][1]
    assert actual[target_text("T_EMPLOYMENT_RATE")][0] == pytest.approx(0.62)
    assert actual[target_text("T_TRANSPORT_STATIONS")][0] == 2
    assert actual[target_text("T_EXPRESS_POINTS")][0] is None  # its only figure was refused
    assert actual[target_text("T_VOCATIONAL_POINTS")][0] is None
    states = measure_states(ws)
    assert states["二（二）-2"][0] == "市农业农村局" and states["二（二）-2"][1] == "已认证30个"
    assert states["二（二）-2"][2] == "2020年9月1日" and states["二（二）-2"][3] == departments.DONE
    assert states["二（六）-2"][3] == departments.IN_PROGRESS  # no 时限, progress written, no date
    assert states["二（二）-3"][3] == departments.NOT_STARTED and states["二（二）-3"][4] == "未报送"
    # 时限 2020-12-31 passed and not finished (the date typed was refused)
    assert states["二（四）-4"][3] == departments.OVERDUE
    assert "二（五）-2" in states and states["二（五）-2"][0] == "市商务局"
    assert not any(s[0] == "各县区人民政府" for s in states.values())
    with pytest.raises(StopIteration):  # one round only: no 环比 yet
        history(ws)

    # --- round 2: 农业农村局 reports again, 寿县 adds an enterprise, 人社局 silent (carried forward) ----
    assert run(capsys, "round", "new", "2020-10", "--workbook", city)[0] == 0
    assert run(capsys, "departments", "--workbook", city)[0] == 0
    assert run(capsys, "counties", "--workbook", city)[0] == 0
    back2 = tmp_path / "报回2"
    reply(deps / "市农业农村局.xlsx", back2 / "市农业农村局.xlsx", {"新培育“三品一标”农产品": 35},
          {"二（二）-2": ("已认证35个", dt.datetime(2020, 10, 10))})
    fill_county(cts / "寿县.xlsx", back2 / "寿县.xlsx", [["寿县", "寿县甲", None, 11_000_000, None, None],
                                                        ["寿县", "寿县乙", None, 12_000_000, None, None]])
    code, out, _ = run(capsys, "collect", back2, "--into", city)
    assert code == 0, out
    code, out, err = run(capsys, "refresh", city)
    assert code == 0, err
    ws = progress_sheet(city)
    actual = city_actuals(ws)
    assert actual[target_text("T_SANPIN_YIBIAO")][0] == 35
    assert actual[target_text("T_EMPLOYMENT_RATE")][0] == pytest.approx(0.62)  # carried from 2020-09
    assert "2020-09" in actual[target_text("T_EMPLOYMENT_RATE")][1]
    by_county, by_target = history(ws)
    uplink = [c["key"] for c in PLAN.annex_columns].index("uplink_enterprises")
    assert by_county["寿县"][uplink] == (2, 1, 1)
    assert by_county["凤台县"][uplink] == (0, 0, 0)
    assert by_target[target_text("T_SANPIN_YIBIAO")] == (35, 30, 5)
    assert by_target[target_text("T_EMPLOYMENT_RATE")][2] == pytest.approx(0)
    assert by_target[target_text("T_UPLINK_ENTERPRISES")] == (2, 1, 1)
    assert measure_states(ws)["二（二）-2"][1] == "已认证35个"


def test_a_reply_with_a_token_of_another_department_is_refused(tmp_path, city, capsys):
    out_dir = city.parent / "输出"
    assert run(capsys, "departments", "--workbook", city)[0] == 0
    src = out_dir / departments.SUBDIR / "市农业农村局.xlsx"
    wb = openpyxl.load_workbook(src)
    departments.set_marker(wb, "市教育体育局")  # marker edited, the token still 农业农村局's
    back = tmp_path / "报回"
    back.mkdir()
    wb.save(back / "市教育体育局.xlsx")
    code, out, _ = run(capsys, "collect", back, "--into", city)
    assert code != 0 and "【拒收】" in out and "下发凭证属于市农业农村局" in out
    with open_ledger(city) as ledger:
        assert ledger.current_submission("市教育体育局") is None


def test_read_reply_names_each_bad_cell():
    wb = departments.department_workbook("市人力资源社会保障局", PLAN)
    ws = wb[departments.DONE_SHEET]
    ws.cell(row=departments.DONE_FIRST_ROW, column=departments.DONE_VALUE_COL).value = 60  # 60 meant as 60%
    got = departments.read_reply(wb, "市人力资源社会保障局", PLAN)
    assert got.done == [] and got.problems[0][:2] == ("完成数", f"G{departments.DONE_FIRST_ROW}")
    assert "超过100%" in got.problems[0][2]
    ws.cell(row=departments.DONE_FIRST_ROW, column=departments.DONE_VALUE_COL).value = -1
    assert "不小于0" in departments.read_reply(wb, "市人力资源社会保障局", PLAN).problems[0][2]
    del wb[departments.DONE_SHEET]
    with pytest.raises(InputError, match="缺少“完成数”"):
        departments.read_reply(wb, "市人力资源社会保障局", PLAN)


@pytest.mark.parametrize(("progress", "done", "deadline", "state"), [
    (None, None, None, departments.NOT_STARTED),
    ("  ", None, dt.date(2999, 1, 1), departments.NOT_STARTED),
    ("在推进", None, None, departments.IN_PROGRESS),
    (None, dt.date(2999, 1, 1), None, departments.IN_PROGRESS),  # a date still to come
    ("完成", dt.date(2020, 9, 1), dt.date(2020, 6, 30), departments.DONE),  # finished late is still finished
    ("在推进", None, dt.date(2020, 6, 30), departments.OVERDUE),
    (None, None, dt.date(2020, 6, 30), departments.OVERDUE),
])
def test_measure_state(progress, done, deadline, state):
    assert departments.measure_state(progress, done, deadline, dt.date(2020, 10, 1)) == state


def test_gap_means_the_same_in_county_and_city_files(tmp_path, city, capsys):
    """差额 = 目标任务数 − 完成数 in both files, for the same data, as LibreOffice computes their formulas."""
    out_dir = city.parent / "输出"
    assert run(capsys, "counties", "--workbook", city)[0] == 0
    back = tmp_path / "报回"
    county = fill_county(out_dir / counties.SUBDIR / "寿县.xlsx", back / "寿县.xlsx",
                         [["寿县", "寿县甲", None, 11_000_000, None, None]])
    assert run(capsys, "collect", back, "--into", city)[0] == 0
    assert run(capsys, "refresh", city)[0] == 0
    calc = tmp_path / "重算"
    shutil.copyfile(city, tmp_path / "city.xlsm")
    county_calc, city_calc = libreoffice.recalculated([county, tmp_path / "city.xlsm"], calc)
    cws = openpyxl.load_workbook(county_calc, data_only=True)[counties.SHEET_TARGETS]
    book = openpyxl.load_workbook(city_calc, data_only=True)
    annex, progress = book[layout.SHEET_ANNEX], book[layout.SHEET_PROGRESS]
    first, _total, _check = layout.annex_rows(len(PLAN.counties))
    i = PLAN.counties.index("寿县")
    gaps = []
    for b, col in enumerate(PLAN.annex_columns):
        r = counties.TARGET_FIRST_ROW + b
        target, done, gap = (cws.cell(row=r, column=c).value for c in (3, 4, 6))
        assert gap == target - done
        assert annex.cell(row=first + i, column=layout.annex_col(b, "差额")).value == gap, col["key"]
        assert progress.cell(row=5 + i, column=2 + 4 * b + 3).value == gap, col["key"]
        gaps.append(gap)
    villages = [c["key"] for c in PLAN.annex_columns].index("demo_villages")
    assert gaps[villages] == PLAN.annex_value("寿县", "demo_villages") > 0  # still short: positive in both files
    assert "差额＝目标任务数－完成数" in str([c.value for row in annex.iter_rows() for c in row if isinstance(c.value, str)])


def test_what_a_county_writes_on_its_task_sheet_is_filed_and_shown(tmp_path, city, capsys):
    """A county workbook's 工作任务 lists the measures of 各县区人民政府 and those naming the county (寿县's
    二（五）-2 国家示范, 涉及).  What the county writes there (进展情况, 完成时间) is filed in the ledger as
    its 县区进展 rows — a file holding nothing else is still a report, not an empty file — a bad date
    is named by its cell, and 完成情况 shows each county's measures with their state after refresh."""
    out_dir = city.parent / "输出"
    cts = out_dir / counties.SUBDIR
    assert run(capsys, "round", "new", "2020-09", "--workbook", city)[0] == 0
    assert run(capsys, "counties", "--workbook", city)[0] == 0
    own = PLAN.measures_for(counties.COUNTY_UNIT)
    first, second = own[0].id, own[1].id
    named = counties.county_measures("寿县", PLAN)[0].id
    heads = [c[0] for c in departments.TASK_COLUMNS]
    text_col, date_col = heads.index("进展情况") + 1, heads.index("完成时间") + 1

    def write_progress(county: str, entries: dict) -> Path:
        wb = openpyxl.load_workbook(cts / f"{county}.xlsx")
        ws = wb[counties.SHEET_TASKS]
        for measure, (text, date) in entries.items():
            r = measure_row(ws, measure)
            ws.cell(row=r, column=text_col).value = text
            ws.cell(row=r, column=date_col).value = date
        dst = tmp_path / "报回" / f"{county}.xlsx"
        dst.parent.mkdir(exist_ok=True)
        wb.save(dst)
        return dst

    write_progress("寿县", {first: ("已开展培训3场", dt.datetime(2020, 8, 31)), named: ("示范县建设推进中", None),
                           second: ("已部署", "九月底")})
    write_progress("凤台县", {first: ("筹备中", None)})
    code, out, _ = run(capsys, "collect", tmp_path / "报回", "--into", city)
    assert code == 1, out  # the bad date is an error, named by its cell
    assert "【已汇总】寿县.xlsx" in out and "【已汇总】凤台县.xlsx" in out, out
    assert "没有填写任何数据" not in out
    shou = openpyxl.load_workbook(cts / "寿县.xlsx")[counties.SHEET_TASKS]
    assert f"工作任务 {openpyxl.utils.get_column_letter(date_col)}{measure_row(shou, second)}" in out
    assert "完成时间“九月底”不是日期" in out

    with open_ledger(city) as ledger:
        rows = ledger.current_rows(departments.TABLE_COUNTY_PROGRESS, unit="寿县")
        filed = {r["measure"]: (r["progress"], r["done"], r["role"]) for r in departments._records(rows)}
    assert filed[first] == ("已开展培训3场", "2020-08-31", own[0].role_of(counties.COUNTY_UNIT))
    assert filed[named] == ("示范县建设推进中", None, "涉及")
    assert filed[second][0] == "已部署" and filed[second][1] is None  # the text kept, the bad date not filed

    code, _, err = run(capsys, "refresh", city)
    assert code == 0, err
    ws = progress_sheet(city)
    shown = {}
    for r in range(1, ws.max_row + 1):
        if ws.cell(row=r, column=1).value in {first, second, named}:
            shown[(ws.cell(row=r, column=1).value, ws.cell(row=r, column=6).value)] = (
                ws.cell(row=r, column=9).value, ws.cell(row=r, column=12).value)
    assert shown[(first, "寿县")] == ("已开展培训3场", departments.DONE)
    assert shown[(first, "凤台县")][0] == "筹备中"
    assert shown[(named, "寿县（涉及）")][0] == "示范县建设推进中"
    assert (first, "大通区") not in shown  # a county that wrote nothing adds no row
