"""The ribbon entry points (xl_ecom.frontends.macros) driven through real xlwings objects.

There is no Excel here, so the book is xlwings' own remote-interpreter Book, ``xw.Book(json=…)``
(the engine xlwings Server / xlwings Lite run): the same ``xlwings.Book``/``Sheet``/``Range`` API
the entries use under Excel, which records every write as an action (``book.json()``) instead of
sending it to Excel.  The payload is made from the real city workbook (xl_ecom.workflows.build, filled with
openpyxl); the recorded actions are replayed into a sheet model and compared, cell for cell, with
what the CLI twin writes to the file.  xlwings PRO's remote engine is licensed here under the
PolyForm Noncommercial licence (a government bureau's use is permitted), XLWINGS_LICENSE_KEY=noncommercial.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
from pathlib import Path

import openpyxl
import pytest

os.environ.setdefault("XLWINGS_LICENSE_KEY", "noncommercial")

import xlwings as xw  # noqa: E402
from test_refresh import BAD, FIXTURE, city_workbook, sheet_values  # noqa: E402

from xl_ecom.frontends import macros
from xl_ecom.policy import load_plan  # noqa: E402
from xl_ecom.workflows import layout, refresh

PLAN = load_plan()


# ---------------------------------------------------------------------------------------------
# a remote-interpreter Book from a workbook file, and a replay of its recorded actions
# ---------------------------------------------------------------------------------------------


def _json_value(v):
    if v is None:
        return ""
    if isinstance(v, dt.datetime):
        return v.strftime("%Y-%m-%dT%H:%M:%S") + ".000Z"
    if isinstance(v, dt.date):
        return v.isoformat() + "T00:00:00.000Z"
    return v


def payload(path: Path, overrides: dict | None = None) -> dict:
    """The JSON the xlwings client sends with a call: book name, sheets and their values."""
    wb = openpyxl.load_workbook(path)
    sheets = []
    for ws in wb.worksheets:
        rows = [[_json_value(c.value) for c in row] for row in ws.iter_rows()]
        for (r, c), v in (overrides or {}).get(ws.title, {}).items():
            while len(rows) < r:
                rows.append([""] * (len(rows[0]) if rows else c))
            for row in rows:
                row.extend([""] * (c - len(row)))
            rows[r - 1][c - 1] = _json_value(v)
        sheets.append({"name": ws.title, "values": rows or [[]], "pictures": [], "tables": [], "charts": [],
                       "shapes": [], "notes": [], "print_area": None})
    return {
        "client": "Microsoft Office Scripts",
        "version": xw.__version__,
        "book": {"name": str(path), "active_sheet_index": 0, "selection": "A1"},
        "names": [],
        "sheets": sheets,
    }


def remote_book(path: Path, overrides: dict | None = None):
    return xw.Book(json=payload(path, overrides))


def _client_value(v):
    """A value as Excel stores it after the client writes it: the engine sends dates as ISO text,
    which Excel enters as dates."""
    if isinstance(v, str) and re.fullmatch(r"\d{4}-\d{2}-\d{2}( \d{2}:\d{2}:\d{2})?", v):
        return dt.datetime.fromisoformat(v)
    return v


class Replay:
    """What the recorded actions do to the workbook: sheet order, cell values, merges, charts."""

    def __init__(self, book_payload: dict, actions: list[dict]):
        self.names = [s["name"] for s in book_payload["sheets"]]
        self.values: dict[str, dict] = {}
        for s in book_payload["sheets"]:
            grid = {}
            for r, row in enumerate(s["values"], start=1):
                for c, v in enumerate(row, start=1):
                    if v != "":
                        grid[(r, c)] = v
            self.values[s["name"]] = grid
        self.charts: dict[str, list] = {}
        self.merges: dict[str, list] = {}
        self.funcs = [a["func"] for a in actions]
        self.alerts = [a["args"][0] for a in actions if a["func"] == "alert"]
        for a in actions:
            f = a["func"]
            if f == "addSheet":
                ix, name = a["args"]
                self.names.insert(ix, name)
                self.values[name] = {}
                continue
            if f == "sheetDelete":
                name = self.names.pop(a["sheet_position"])
                self.values.pop(name, None)
                continue
            if a.get("sheet_position") is None:
                continue
            name = self.names[a["sheet_position"]]
            if f in ("sheetClear", "sheetClearContents"):
                self.values[name] = {}
            elif f == "setValues":
                r0, c0 = a["start_row"] + 1, a["start_column"] + 1
                for i, row in enumerate(a["values"]):
                    for j, v in enumerate(row):
                        if v == "" or v is None:
                            self.values[name].pop((r0 + i, c0 + j), None)
                        else:
                            self.values[name][(r0 + i, c0 + j)] = _client_value(v)
            elif f == "addChart":
                self.charts.setdefault(name, []).append(a["args"])
            elif f == "rangeMerge":
                self.merges.setdefault(name, []).append((a["start_row"] + 1, a["start_column"] + 1, a["row_count"], a["column_count"]))


def normalised(grid: dict) -> dict:
    out = {}
    for k, v in grid.items():
        if isinstance(v, float) and v.is_integer():
            v = int(v)
        out[k] = v
    return out


# ---------------------------------------------------------------------------------------------
# 刷新
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def filled(tmp_path_factory):
    return city_workbook(tmp_path_factory.mktemp("macros"))


def test_refresh_in_excel_writes_what_the_cli_writes(filled, tmp_path):
    book = remote_book(filled)
    result = macros.refresh(book=book)
    assert result is not None, macros.LAST_UI.alerts
    replay = Replay(payload(filled), book.json()["actions"])
    # the CLI twin on a copy of the same file
    cli_copy = tmp_path / filled.name
    shutil.copy(filled, cli_copy)
    refresh.refresh_workbook(cli_copy, backup=False)
    cli = openpyxl.load_workbook(cli_copy)
    assert replay.names == cli.sheetnames  # the generated sheets land in the same places
    for name in refresh.GENERATED_SHEETS:
        assert normalised(replay.values[name]) == normalised(sheet_values(cli[name])), name
    # the annex: only the 完成数 cells of the county rows were written
    annex_at = replay.names.index(layout.SHEET_ANNEX)
    writes = [a for a in book.json()["actions"] if a["func"] == "setValues" and a["sheet_position"] == annex_at]
    first, _, _ = layout.annex_rows(len(PLAN.counties))
    cells = {(a["start_row"] + 1, a["start_column"] + 1) for a in writes}
    assert cells == {(first + i, layout.annex_col(b, "完成数")) for i in range(len(PLAN.counties)) for b in range(len(PLAN.annex_columns))}
    for (r, c) in cells:
        assert replay.values[layout.SHEET_ANNEX][(r, c)] == cli[layout.SHEET_ANNEX].cell(row=r, column=c).value
    # nothing else: no input table, 设置 or 通讯录 is written
    touched = {replay.names[a["sheet_position"]] for a in book.json()["actions"] if a.get("sheet_position") is not None}
    assert touched == set(refresh.GENERATED_SHEETS) | {layout.SHEET_ANNEX}
    # a native chart over the progress block, and a message for the clerk
    assert len(replay.charts[layout.SHEET_PROGRESS]) == 1
    args = replay.charts[layout.SHEET_PROGRESS][0]
    assert args[1] == "ColumnClustered" and args[2] == layout.SHEET_PROGRESS
    assert replay.alerts and replay.alerts[-1].startswith("刷新完成")
    # official number formats on the generated sheets: money columns of 奖补明细, percentages of 完成情况
    formats = {(replay.names[a["sheet_position"]], a["start_column"] + 1, a["args"][0])
               for a in book.json()["actions"] if a["func"] == "setNumberFormat"}
    assert (layout.SHEET_AWARDS, 8, "#,##0.00") in formats
    assert (layout.SHEET_PROGRESS, 4, "0.0%") in formats
    # status bar texts, in order (the remote engine has no status bar: the texts are recorded)
    msgs = macros.LAST_UI.messages
    assert msgs[0] == "刷新：开始……"
    assert any(m.startswith("刷新：读取“企业销售”（1/9）") for m in msgs)
    assert any("写入“完成情况”" in m for m in msgs)


def test_refresh_in_excel_uses_the_values_excel_shows(filled):
    """Excel hands over computed values: a formula typed in an input cell is read as its value
    there (the CLI, which cannot compute formulas, reports it instead)."""
    row = layout.INPUT_FIRST_ROW + len(FIXTURE["T_POOR_SITE"])
    book = remote_book(filled, {"贫困村网点": {(row, 1): "寿县", (row, 2): "三号网点", (row, 4): 120000.0}})
    result = macros.refresh(book=book)
    assert result is not None
    got = result.awards[(result.awards["sheet"] == "贫困村网点") & (result.awards["row"] == row)]
    assert got["cents"].tolist() == [1_000_000]


def test_refresh_in_excel_reports_bad_input_and_writes_nothing(tmp_path):
    path = city_workbook(tmp_path, BAD)
    book = remote_book(path)
    assert macros.refresh(book=book) is None
    actions = book.json()["actions"]
    assert [a["func"] for a in actions] == ["alert"]
    text = actions[0]["args"][0]
    assert actions[0]["args"][1] == macros.TITLE
    assert text.startswith("刷新未完成")
    assert "“企业销售”单元格 D4" in text and "一千万" in text
    assert "“促销活动”单元格 A4" in text
    assert "Traceback" not in text


def test_refresh_second_time_reuses_the_generated_sheets(filled):
    book = remote_book(filled)
    macros.refresh(book=book)
    first = Replay(payload(filled), book.json()["actions"])
    # a book that already has the generated sheets (as Excel would after the first refresh)
    data = payload(filled)
    for name in refresh.SHEET_ORDER[::-1]:
        grid = first.values[name]
        rmax = max(r for r, _ in grid)
        cmax = max(c for _, c in grid)
        values = [[grid.get((r, c), "") for c in range(1, cmax + 1)] for r in range(1, rmax + 1)]
        ix = [s["name"] for s in data["sheets"]].index(layout.SHEET_ANNEX) + 1
        data["sheets"].insert(ix, {"name": name, "values": values, "pictures": [], "tables": [], "charts": [],
                                   "shapes": [], "notes": [], "print_area": None})
    book2 = xw.Book(json=data)
    assert macros.refresh(book=book2) is not None
    funcs = [a["func"] for a in book2.json()["actions"]]
    assert "addSheet" not in funcs and funcs.count("sheetClear") == 3
    again = Replay(data, book2.json()["actions"])
    for name in refresh.GENERATED_SHEETS:
        assert again.values[name] == first.values[name]


def test_entry_outside_excel_says_so_without_a_traceback(capsys):
    assert macros.refresh() is None
    err = capsys.readouterr().err
    assert "找不到调用它的 Excel 工作簿" in err and "Traceback" not in err


# ---------------------------------------------------------------------------------------------
# 校验数据, 生成部门任务表, 生成县区工作簿, 汇总县区报表, 发送邮件
# ---------------------------------------------------------------------------------------------


def test_validate_in_excel_writes_the_validation_sheet(tmp_path):
    from xl_ecom.workflows import validate

    path = city_workbook(tmp_path, BAD)
    book = remote_book(path)
    problems = macros.validate(book=book)
    cli = validate.validate_workbook(path)
    assert [(p.sheet, p.cell, p.message) for p in problems] == [(p.sheet, p.cell, p.message) for p in cli]
    replay = Replay(payload(path), book.json()["actions"])
    sheet = replay.values[layout.SHEET_VALIDATION]
    listed = {(sheet.get((r, 4)), sheet.get((r, 5))) for r in range(4, 4 + len(problems))}
    assert ("企业销售", "D4") in listed and ("促销活动", "A4") in listed
    assert "错误" in replay.alerts[-1]


def _settings_override(path: Path, out: Path) -> dict:
    wb = openpyxl.load_workbook(path)
    ws = wb["设置"]
    row = next(r for r in range(1, ws.max_row + 1) if ws.cell(row=r, column=1).value == "输出文件夹")
    return {"设置": {(row, 2): str(out)}}


def test_make_departments_in_excel_writes_the_cli_files(filled, tmp_path):
    from xl_ecom.ledger import open_ledger
    from xl_ecom.workflows import counties, departments

    out = tmp_path / "输出"
    city = tmp_path / "市级" / filled.name  # a copy: the tokens' ledger is written beside the book
    city.parent.mkdir()
    shutil.copy(filled, city)
    book = remote_book(city, _settings_override(city, out))
    paths = macros.make_departments(book=book)
    assert paths and all(p.parent == out / departments.SUBDIR for p in paths)
    twin = departments.make_department_sheets(tmp_path / "cli", on=dt.date(2020, 12, 31))
    assert [p.name for p in paths] == [p.name for p in twin]
    kinds = {d.get("short") or d["name"]: (d["name"], d.get("kind")) for d in PLAN.departments}
    with open_ledger(city) as ledger:  # each department's file issued as `xl-ecom departments --workbook` issues it
        for a, b in zip(paths, twin):
            wa = openpyxl.load_workbook(a)
            token, _ = counties.issue_token(wa)
            unit, kind = kinds[a.stem]
            if kind == departments.ISSUE_KIND:
                assert ledger.verify_token(token).unit == unit
            else:
                assert token is None and a.read_bytes() == b.read_bytes(), a.name
            wb_ = openpyxl.load_workbook(b)
            for name in wa.sheetnames:
                assert sheet_values(wa[name]) == sheet_values(wb_[name]), (a.name, name)
    alerts = Replay(payload(filled), book.json()["actions"]).alerts
    assert alerts[-1].startswith(f"已生成部门任务表{len(paths)}个")


def test_make_counties_in_excel_writes_the_cli_files(filled, tmp_path):
    from xl_ecom.ledger import open_ledger
    from xl_ecom.workflows import counties

    out = tmp_path / "输出"
    city = tmp_path / "市级" / filled.name  # a copy: the tokens' ledger is written beside the book
    city.parent.mkdir()
    shutil.copy(filled, city)
    book = remote_book(city, _settings_override(city, out))
    paths = macros.make_counties(book=book)
    assert paths is not None and len(paths) == len(PLAN.counties), macros.LAST_UI.alerts
    with open_ledger(city) as ledger:  # issued as `xl-ecom counties --workbook` issues them
        for p in paths:
            token, _ = counties.issue_token(openpyxl.load_workbook(p))
            assert ledger.verify_token(token).unit == p.stem
    twin = counties.make_county_workbooks(tmp_path / "cli", on=dt.date(2020, 12, 31))
    assert sorted(p.name for p in paths) == sorted(p.name for p in twin)
    for a in paths:
        b = next(p for p in twin if p.name == a.name)
        wa, wb_ = openpyxl.load_workbook(a), openpyxl.load_workbook(b)
        assert wa.sheetnames == wb_.sheetnames
        for name in wa.sheetnames:
            assert sheet_values(wa[name]) == sheet_values(wb_[name]), (a.name, name)


def test_collect_in_excel_merges_what_the_cli_merges(tmp_path):
    from test_roundtrip import fill_county_workbook, fixture_for

    from xl_ecom.workflows import collect as collect_mod
    from xl_ecom.workflows import counties

    city = city_workbook(tmp_path, None)
    blank = counties.make_county_workbooks(tmp_path / "gen")
    folder = tmp_path / "报回"
    folder.mkdir()
    for p in blank[:3]:
        county = next(c for c in PLAN.counties if c in p.stem)
        fill_county_workbook(p, fixture_for(county), folder / p.name)
    book = remote_book(city)
    report = macros.collect(book=book, folder=folder)
    assert report is not None and report.written, macros.LAST_UI.alerts
    replay = Replay(payload(city), book.json()["actions"])
    twin_city = tmp_path / "twin.xlsm"
    shutil.copy(city, twin_city)
    twin = collect_mod.collect(folder, into=twin_city)
    assert twin.written
    cli = openpyxl.load_workbook(twin_city)
    from xl_ecom.workflows.tables import TABLES

    for t in TABLES:
        n = len(t.columns)
        got = {k: v for k, v in normalised(replay.values[t.sheet]).items() if k[0] >= layout.INPUT_FIRST_ROW and k[1] <= n}
        want = {k: v for k, v in normalised(sheet_values(cli[t.sheet])).items() if k[0] >= layout.INPUT_FIRST_ROW and k[1] <= n}
        got = {k: (v.replace(tzinfo=None) if isinstance(v, dt.datetime) else v) for k, v in got.items()}
        assert got == want, t.sheet
    assert "已汇总" in replay.alerts[-1] and "尚未保存" in replay.alerts[-1]


def test_collect_in_excel_without_the_folder_creates_it_and_explains(filled, tmp_path):
    out = tmp_path / "输出"
    book = remote_book(filled, _settings_override(filled, out))
    assert macros.collect(book=book) is None
    assert (out / macros.COLLECT_SUBDIR).is_dir()
    alerts = Replay(payload(filled), book.json()["actions"]).alerts
    assert str(out / macros.COLLECT_SUBDIR) in alerts[-1]


def test_send_mail_in_excel_reports_missing_server_in_chinese(filled, tmp_path):
    out = tmp_path / "输出"
    (out / "部门任务表").mkdir(parents=True)
    book = remote_book(filled, _settings_override(filled, out))
    assert macros.send_mail(book=book) is None
    alerts = Replay(payload(filled), book.json()["actions"]).alerts
    assert alerts and all("Traceback" not in a for a in alerts)
    assert any("发件人邮箱" in a for a in alerts), alerts  # mail's own check of 设置, shown as a message box


def test_refresh_in_excel_writes_formula_like_names_as_text(tmp_path):
    rows = {"T_POOR_SITE": [{"county": "寿县", "site": "=HYPERLINK(\"http://x\",\"点我\")", "sales": 100000}]}
    path = city_workbook(tmp_path, rows)
    book = remote_book(path)
    assert macros.refresh(book=book) is not None
    replay = Replay(payload(path), book.json()["actions"])
    names = [v for (r, c), v in replay.values[layout.SHEET_AWARDS].items() if c == 5 and r >= 4]
    assert "'=HYPERLINK(\"http://x\",\"点我\")" in names  # Excel's quote prefix: shown and kept as text


# ---------------------------------------------------------------------------------------------
# 新建轮次, 报送情况, 催报, 退回 (xl_ecom.workflows.cycle) and 进展通报 (xl_ecom.workflows.report)
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def smtp():
    from mail_helpers import SmtpServer

    srv = SmtpServer().start()
    yield srv
    srv.stop()


def _row_of(path: Path, sheet: str, first_cell: str, header_row: int | None = None, column: str | None = None):
    """(row, column) of the cell in the row starting with ``first_cell`` (column 2, or the header's column)."""
    ws = openpyxl.load_workbook(path)[sheet]
    row = next(r for r in range(1, ws.max_row + 1) if ws.cell(row=r, column=1).value == first_cell)
    col = 2 if column is None else [c.value for c in ws[header_row]].index(column) + 1
    return row, col


def _cli(*argv) -> int:
    from xl_ecom.frontends import cli

    return cli.main([str(a) for a in argv])


def test_cycle_buttons_in_excel(tmp_path, smtp):
    """新建轮次 → 催报 → 退回 → 报送情况 → 进展通报 on a real built city workbook, each button pressed on the
    open book while Excel's own ``~$`` lock file is there; unsaved edits of 通讯录 count."""
    from collections import Counter

    from test_cycle import ADDRESSES, DT_BAD, configure, fill
    from test_lock import start_holder

    from xl_ecom.ledger import open_ledger
    from xl_ecom.ledger.lock import lock_path
    from xl_ecom.workflows import build, cycle, report

    city = tmp_path / "市级" / layout.WORKBOOK_NAME
    city.parent.mkdir()
    city.write_bytes(build.build_bytes())
    configure(city, smtp.port, "2020-09-25")
    wb = openpyxl.load_workbook(city, keep_vba=True)
    wb[layout.SHEET_SETTINGS].append([cycle.ROUND_SETTING, "2020-09", "本轮报送的名称"])
    wb.save(city)
    assert _cli("counties", "--workbook", city) == 0

    # 新建轮次: the saved 设置's 当前轮次 and 报送截止日期
    round_row, _ = _row_of(city, layout.SHEET_SETTINGS, cycle.ROUND_SETTING)
    book = remote_book(city, {layout.SHEET_SETTINGS: {(round_row, 2): "2020-10"}})  # typed, not saved
    assert macros.new_round(book=book) is None
    alert = Replay(payload(city), book.json()["actions"]).alerts[-1]
    assert "当前轮次" in alert and "尚未保存" in alert and "2020-10" in alert
    with open_ledger(city) as ledger:
        before = ledger.rounds()  # the counties' issue opened the ledger's first round
    assert "2020-10" not in [r.label for r in before]  # nothing created from the unsaved value
    book = remote_book(city)
    created, carried = macros.new_round(book=book)
    assert (created.label, str(created.deadline), carried) == ("2020-09", "2020-09-25", {})
    assert Replay(payload(city), book.json()["actions"]).alerts[-1] == "当前报送轮次：“2020-09”，截止日期 2020-09-25。"
    assert macros.new_round(book=remote_book(city))[0].id == created.id  # pressed again: the same round

    # a faulty return from 大通区, collected by the CLI
    out_dir = city.parent / "输出"
    returned = out_dir / cycle.RETURNED_SUBDIR
    fill(out_dir / "县区工作簿" / "大通区.xlsx", returned / "大通区.xlsx", DT_BAD)
    _cli("collect", returned, "--into", city)

    excel_lock = city.with_name("~$" + city.name)
    excel_lock.write_bytes(b"clerk")  # Excel has the workbook open from here on

    # 催报: the open book's 通讯录 (寿县's address typed, not saved), not refused by Excel's lock
    row, col = _row_of(city, layout.SHEET_CONTACTS, "寿县", header_row=3, column="邮箱")
    book = remote_book(city, {layout.SHEET_CONTACTS: {(row, col): "new@sx.example.cn"}})
    result = macros.remind(book=book)
    assert result is not None, macros.LAST_UI.alerts
    units = ["寿县", "凤台县", "大通区", "田家庵区"]  # the counties with an address (no department file issued)
    assert sorted(result.units) == sorted(units) and result.result.ok
    want = Counter(a for u in units if u != "寿县" for a in ADDRESSES[u]) + Counter({"new@sx.example.cn": 1})
    assert Counter(a for r in smtp.received for a in r.rcpt_tos) == want
    alerts = Replay(payload(city), book.json()["actions"]).alerts
    assert alerts[-1] == result.to_text() and "个单位无法发送" in alerts[-1] and "市商务局" in alerts[-1]
    assert any(m.startswith("催报：") for m in macros.LAST_UI.messages[1:])  # the send's progress
    assert not lock_path(city).exists()  # the xl-ecom lock was held and released
    with open_ledger(city) as ledger:
        assert Counter(a.kind for a in ledger.mail_attempts()) == Counter({"催报": sum(want.values())})

    # another xl-ecom command holds the workbook: the button refuses, nothing is sent
    excel_lock.unlink()  # the holder is a plain command, which would refuse the open workbook
    child = start_holder(city)
    excel_lock.write_bytes(b"clerk")
    try:
        sent = len(smtp.received)
        book = remote_book(city)
        assert macros.remind(book=book) is None
        alert = Replay(payload(city), book.json()["actions"]).alerts[-1]
        assert alert.startswith("催报未完成") and "汇总县区报表" in alert and str(child.pid) in alert
        assert macros.return_submissions(book=remote_book(city)) is None
        assert len(smtp.received) == sent
    finally:
        child.stdin.close()
        child.wait(timeout=30)

    # 退回: 大通区's problem list, once per submission
    sent = len(smtp.received)
    book = remote_book(city)
    result = macros.return_submissions(book=book)
    assert result is not None and result.units == ["大通区"] and result.result.ok
    assert [r.rcpt_tos for r in smtp.received[sent:]] == [ADDRESSES["大通区"]]
    body = smtp.received[-1].message.get_body().get_content()
    assert "不知道" in body
    again = macros.return_submissions(book=remote_book(city))
    assert len(smtp.received) == sent + 1 and "大通区" in again.skipped

    # 报送情况: the sheet the CLI's status --write writes, rendered into the open book after 通讯录
    book = remote_book(city)
    spec = macros.status(book=book)
    assert spec is not None, macros.LAST_UI.alerts
    replay = Replay(payload(city), book.json()["actions"])
    assert replay.names.index(cycle.SHEET_STATUS) == replay.names.index(layout.SHEET_CONTACTS) + 1
    want_rows = cycle.status_rows(cycle.workbook_status(city))
    grid = normalised(replay.values[cycle.SHEET_STATUS])
    assert grid[(1, 1)] == "报送情况：2020-09"
    assert [grid.get((3, c)) for c in range(1, len(cycle.STATUS_HEADERS) + 1)] == list(cycle.STATUS_HEADERS)
    got_rows = [[grid.get((r, c)) for c in range(1, len(cycle.STATUS_HEADERS) + 1)]
                for r in range(4, 4 + len(want_rows))]
    assert got_rows == [[_client_value(v) for v in row] for row in want_rows]
    shouxian = next(r for r in got_rows if r[0] == "寿县")
    assert shouxian[cycle.STATUS_HEADERS.index("催报次数")] == 1
    datong = next(r for r in got_rows if r[0] == "大通区")
    assert datong[cycle.STATUS_HEADERS.index("最近退回")]
    assert "已写入“报送情况”表" in replay.alerts[-1]

    # 进展通报: the CLI's bulletin, as .docx and .pdf in <输出文件夹>/进展通报
    result = macros.report(book=remote_book(city))
    assert result is not None, macros.LAST_UI.alerts
    assert result.docx.parent == out_dir / report.SUBDIR and result.docx.is_file()
    assert result.pdf is not None and result.pdf.read_bytes().startswith(b"%PDF")
    twin = report.write_report(city, out=tmp_path / "cli", pdf=False)
    assert result.bulletin.summary == twin.bulletin.summary
    assert macros.LAST_UI.alerts[-1] == ("info", result.to_text())


def test_cycle_buttons_on_an_unsaved_book_say_so(filled):
    data = payload(filled)
    data["book"]["name"] = "工作簿1"  # a new book Excel has not saved yet: no folder for ledger and output
    for entry in (macros.remind, macros.return_submissions, macros.status, macros.new_round, macros.report):
        book = xw.Book(json=data)
        assert entry(book=book) is None
        mode, text = macros.LAST_UI.alerts[-1]
        assert mode == "critical" and "请先保存工作簿" in text and "Traceback" not in text, entry.__name__
