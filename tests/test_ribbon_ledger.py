"""The ribbon's 生成县区工作簿 and 汇总县区报表 use the ledger exactly as the CLI does (issue #9).

Two copies of one real built city workbook side by side: the ribbon's (driven through xlwings' own
remote-interpreter Book, as tests/test_macros.py does) and the CLI's (``python -m xl_ecom counties
--workbook`` / ``collect --into``).  Each issues its own county workbooks (tokens in the SQLite ledger
beside it), receives the same returned files, and the two ledgers must hold the same submissions
(status, version, row count, claimed and verified unit) after each batch; the ribbon's input tables
(replayed from the recorded xlwings actions) must hold the rows the CLI wrote into its file.
"""

from __future__ import annotations

import copy
import shutil
from pathlib import Path

import openpyxl
import pytest
from test_collect_ledger import FENGTAI_SALES, SHOU_SALES, claim, cli, fill, sales_rows
from test_macros import Replay, _settings_override, normalised, payload, remote_book

from xl_ecom.frontends import macros
from xl_ecom.ledger import FAULTY, MERGED, REJECTED, default_path, open_ledger
from xl_ecom.workflows import build, counties, layout
from xl_ecom.workflows.settings import output_dir, read_settings
from xl_ecom.workflows.tables import table

BAD_SHOU = [["寿县", "寿县八公山豆制品电商", None, -5, None, None], ["寿县", "寿县瓦埠湖农品网店", None, "50万", None, None]]


@pytest.fixture(scope="module")
def city_bytes() -> bytes:
    return build.build_bytes()


def _city(root: Path, data: bytes) -> Path:
    path = root / layout.WORKBOOK_NAME
    path.parent.mkdir(parents=True)
    path.write_bytes(data)
    return path


@pytest.fixture(scope="module")
def issued_pair(tmp_path_factory, city_bytes) -> Path:
    """Once per module: a ribbon city and a CLI city (with their ledgers), each issued by its own twin."""
    root = tmp_path_factory.mktemp("pair")
    ribbon = _city(root / "功能区", city_bytes)
    out = root / "功能区输出"
    paths = macros.make_counties(book=remote_book(ribbon, _settings_override(ribbon, out)))
    assert paths is not None, macros.LAST_UI.alerts
    shell = _city(root / "命令行", city_bytes)
    proc = cli("counties", "--out", root / "命令行输出", "--workbook", shell)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return root


@pytest.fixture
def pair(tmp_path, issued_pair):
    """(ribbon city, its issued folder, CLI city, its issued folder): a copy of :func:`issued_pair` each."""
    shutil.copytree(issued_pair, tmp_path, dirs_exist_ok=True)
    return (tmp_path / "功能区" / layout.WORKBOOK_NAME, tmp_path / "功能区输出" / counties.SUBDIR,
            tmp_path / "命令行" / layout.WORKBOOK_NAME, tmp_path / "命令行输出" / counties.SUBDIR)


def _submissions(city: Path) -> list[tuple]:
    with open_ledger(city) as ledger:
        return [(s.file_name, s.unit, s.claimed_unit, s.verified_unit, s.status, s.version, s.row_count)
                for s in ledger.submissions()]


def _ribbon_sales(city: Path, book) -> list[list]:
    """企业销售's data rows of the open book after the recorded actions (as the clerk sees them)."""
    t = table("T_SALES")
    grid = normalised(Replay(payload(city), book.json()["actions"]).values[t.sheet])
    rows = []
    for r in range(layout.INPUT_FIRST_ROW, max((k[0] for k in grid), default=0) + 1):
        row = [grid.get((r, c)) for c in range(1, len(t.columns) + 1)]
        row = [None if v == "" else v for v in row]
        if row[0]:
            rows.append(row)
    return rows


def _collect_both(ribbon, ribbon_book_city, shell, make_folder):
    """The same returned files (made by ``make_folder(issued, folder)`` from each side's own issued
    workbooks) collected by the ribbon on the open book and by the CLI into its file."""
    r_issued, r_folder = ribbon
    s_issued, s_folder, s_city = shell
    make_folder(r_issued, r_folder)
    make_folder(s_issued, s_folder)
    book = remote_book(ribbon_book_city)
    report = macros.collect(book=book, folder=r_folder)
    assert report is not None, macros.LAST_UI.alerts
    proc = cli("collect", s_folder, "--into", s_city)
    assert proc.returncode in (0, 1), proc.stdout + proc.stderr
    return report, book, proc


def test_ribbon_make_counties_issues_tokens_as_the_cli_does(pair):
    ribbon, r_issued, shell, s_issued = pair
    with open_ledger(ribbon) as a, open_ledger(shell) as b:
        ra = sorted((i.unit, i.kind, i.file_name) for i in a.issues())
        rb = sorted((i.unit, i.kind, i.file_name) for i in b.issues())
        assert ra == rb and len(ra) == len(counties.load_plan().counties)
        for path in sorted(r_issued.glob("*.xlsx")):
            by_name, by_prop = counties.issue_token(openpyxl.load_workbook(path))
            assert by_name and by_name == by_prop, path.name
            issue = a.verify_token(by_name)
            assert issue is not None and issue.unit == path.stem
            assert b.verify_token(by_name) is None  # a token of the ribbon's ledger, not the CLI's


def test_ribbon_collect_records_the_same_submissions_as_the_cli(pair, tmp_path):
    ribbon, r_issued, shell, s_issued = pair
    # batch 1: 寿县 and 凤台县 good; 寿县's workbook edited to claim 凤台县 under a neutral name
    def batch1(issued, folder):
        fill(issued / "寿县.xlsx", folder / "寿县.xlsx", SHOU_SALES)
        fill(issued / "凤台县.xlsx", folder / "凤台县.xlsx", FENGTAI_SALES)

    report, book, proc = _collect_both((r_issued, tmp_path / "r1"), ribbon, (s_issued, tmp_path / "s1", shell), batch1)
    assert report.written and report.recorded == 2
    assert _submissions(ribbon) == _submissions(shell)
    assert [(s[1], s[4], s[5], s[6]) for s in _submissions(ribbon)] == [("凤台县", MERGED, 1, 1), ("寿县", MERGED, 1, 2)]
    assert sorted(_ribbon_sales(ribbon, book)) == sorted(sales_rows(shell)) == sorted(FENGTAI_SALES + SHOU_SALES)
    alert = Replay(payload(ribbon), book.json()["actions"]).alerts[-1]
    assert "【已汇总】寿县.xlsx（寿县，第1版）" in alert and "已登记为寿县的第1版" in alert
    assert "（本次登记2份报送）" in alert
    assert default_path(ribbon).is_file()  # the ledger beside the saved book, where the CLI finds it
    assert "尚未保存" in alert

    # batch 2: a file whose token belongs to 寿县 but claims 凤台县: refused by both, 凤台县 untouched
    forged = [["凤台县", *r[1:]] for r in SHOU_SALES]

    def batch2(issued, folder):
        fill(issued / "寿县.xlsx", folder / "报表.xlsx", forged, edit=claim("凤台县"))

    report, book, proc = _collect_both((r_issued, tmp_path / "r2"), ribbon, (s_issued, tmp_path / "s2", shell), batch2)
    assert proc.returncode == 1 and "文件声称是凤台县，但其下发凭证属于寿县" in proc.stdout
    assert not report.written and report.changes == []
    alert = Replay(payload(ribbon), book.json()["actions"]).alerts[-1]
    assert "【拒收】报表.xlsx（凤台县）" in alert and "文件声称是凤台县，但其下发凭证属于寿县" in alert
    assert "setValues" not in Replay(payload(ribbon), book.json()["actions"]).funcs  # the open book untouched
    assert _submissions(ribbon) == _submissions(shell)
    assert _submissions(ribbon)[-1][1:5] == ("寿县", "凤台县", "寿县", REJECTED)  # filed under the token's county
    with open_ledger(ribbon) as ledger:
        assert ledger.current_submission("凤台县").file_name == "凤台县.xlsx"

    # batch 3: 寿县 resubmits, every row fails: 有错 version 3 (the refused file was 寿县's version 2),
    # version 1 stays current, rows kept
    def batch3(issued, folder):
        fill(issued / "寿县.xlsx", folder / "寿县.xlsx", BAD_SHOU)

    report, book, proc = _collect_both((r_issued, tmp_path / "r3"), ribbon, (s_issued, tmp_path / "s3", shell), batch3)
    assert "【有错】寿县.xlsx（寿县，第3版）：有效0行，有错未汇总2行" in proc.stdout
    alert = Replay(payload(ribbon), book.json()["actions"]).alerts[-1]
    assert "【有错】寿县.xlsx（寿县，第3版）：有效0行，有错未汇总2行" in alert
    assert "寿县仍以台账中的第1版" in alert and "市级工作簿中寿县的数据保持不变" in alert
    assert not report.written and "setValues" not in Replay(payload(ribbon), book.json()["actions"]).funcs
    assert _submissions(ribbon) == _submissions(shell)
    with open_ledger(ribbon) as ledger:
        assert [(s.version, s.status) for s in ledger.submissions("寿县")] == [(1, MERGED), (2, REJECTED), (3, FAULTY)]
        assert ledger.current_submission("寿县").version == 1
        assert len(ledger.current_rows("T_SALES", unit="寿县")) == 2
    assert sorted(sales_rows(shell)) == sorted(FENGTAI_SALES + SHOU_SALES)

    # batch 4: one good row: version 4 replaces version 1 in the open book's rows, as in the CLI's file
    def batch4(issued, folder):
        fill(issued / "寿县.xlsx", folder / "寿县.xlsx", [SHOU_SALES[1], BAD_SHOU[0]])

    report, book, proc = _collect_both((r_issued, tmp_path / "r4"), ribbon, (s_issued, tmp_path / "s4", shell), batch4)
    assert report.written and "【已汇总】寿县.xlsx（寿县，第4版）：有效1行，有错未汇总1行" in proc.stdout
    assert _submissions(ribbon) == _submissions(shell)
    alert = Replay(payload(ribbon), book.json()["actions"]).alerts[-1]
    assert "【已汇总】寿县.xlsx（寿县，第4版）：有效1行，有错未汇总1行" in alert and "替代第1版" in alert
    shou = [r for r in _ribbon_sales(ribbon, book) if r[0] == "寿县"]
    assert shou == [r for r in sales_rows(shell) if r[0] == "寿县"] == [SHOU_SALES[1]]


def test_ribbon_collect_uses_the_ledger_named_in_settings(pair, tmp_path):
    """设置's 台账数据库 names the ledger: the ribbon records there, not beside the book."""
    ribbon, r_issued, _shell, _s = pair
    elsewhere = tmp_path / "共用" / "台账.sqlite"
    elsewhere.parent.mkdir()
    wb = openpyxl.load_workbook(ribbon, keep_vba=True)
    wb[layout.SHEET_SETTINGS].append(["台账数据库", f"sqlite:///{elsewhere}", "台账"])
    wb.save(ribbon)
    folder = tmp_path / "报回"
    fill(r_issued / "寿县.xlsx", folder / "寿县.xlsx", SHOU_SALES)
    book = remote_book(ribbon)
    report = macros.collect(book=book, folder=folder)
    assert report is not None, macros.LAST_UI.alerts
    # tokens were issued in the ledger beside the book, so the other ledger does not know them
    assert [f.status for f in report.files] == ["拒收"]
    assert "下发凭证无效" in Replay(payload(ribbon), book.json()["actions"]).alerts[-1]
    with open_ledger(None, f"sqlite:///{elsewhere}") as ledger:
        assert [(s.unit, s.status) for s in ledger.submissions()] == [("寿县", REJECTED)]
    with open_ledger(ribbon) as ledger:
        assert ledger.submissions() == []


def test_run_issues_the_county_workbooks_against_the_workbook_it_built(tmp_path):
    """``xl-ecom run``: the county workbooks carry tokens of the ledger beside the workbook just built,
    so collecting into that workbook checks them."""
    out = tmp_path / "运行"
    proc = cli("run", "--out", out)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    city = out / layout.WORKBOOK_NAME
    folder = output_dir(read_settings(city), city) / counties.SUBDIR  # where 设置's 输出文件夹 says
    issued = sorted(folder.glob("*.xlsx"))
    assert len(issued) == len(counties.load_plan().counties), proc.stdout
    with open_ledger(city) as ledger:
        assert sorted(i.unit for i in ledger.issues() if i.kind == counties.ISSUE_KIND) == sorted(p.stem for p in issued)
        for path in issued:
            token, _prop = counties.issue_token(openpyxl.load_workbook(path))
            issue = ledger.verify_token(token)
            assert issue is not None and issue.unit == path.stem, path.name
    folder = tmp_path / "报回"
    fill(issued[0].parent / "寿县.xlsx", folder / "寿县.xlsx", SHOU_SALES)
    proc = cli("collect", folder, "--into", city)
    assert proc.returncode == 0 and "【已汇总】寿县.xlsx（寿县，第1版）" in proc.stdout, proc.stdout
    assert sales_rows(city) == SHOU_SALES


def test_ribbon_refresh_reads_the_ledger_as_the_cli_does(pair, tmp_path):
    """刷新 in Excel is the CLI's refresh on the open book: a row the city clerk typed is imported into the
    ledger as 市本级 before anything overwrites it, the input tables are rewritten to show the ledger's current
    rows (here a later version 寿县 sent, collected on another PC while the book was open), and the
    generated sheets are computed from those rows — the same as ``xl-ecom refresh`` writes into its file."""
    from test_refresh import sheet_values

    from xl_ecom.workflows import refresh
    from xl_ecom.workflows.refresh.read import CITY_UNIT

    ribbon, r_issued, shell, s_issued = pair
    for city, issued in ((ribbon, r_issued), (shell, s_issued)):
        fill(issued / "寿县.xlsx", tmp_path / city.parent.name / "1" / "寿县.xlsx", SHOU_SALES)
        fill(issued / "凤台县.xlsx", tmp_path / city.parent.name / "1" / "凤台县.xlsx", FENGTAI_SALES)
        assert cli("collect", tmp_path / city.parent.name / "1", "--into", city).returncode == 0
    opened = tmp_path / "打开时.xlsm"  # the ribbon's book as Excel has it open: batch 1 on its sheets
    shutil.copy(ribbon, opened)
    for city, issued in ((ribbon, r_issued), (shell, s_issued)):  # 寿县's version 2, collected elsewhere
        fill(issued / "寿县.xlsx", tmp_path / city.parent.name / "2" / "寿县.xlsx", [SHOU_SALES[1]])
        assert cli("collect", tmp_path / city.parent.name / "2", "--into", city).returncode == 0
    typed = ["田家庵区", "田家庵区市里补录网店", None, 10_000_000, None, None]
    t = table("T_SALES")
    row = layout.INPUT_FIRST_ROW + len(SHOU_SALES) + len(FENGTAI_SALES)  # after the rows the book shows
    wb = openpyxl.load_workbook(shell, keep_vba=True)
    for j, value in enumerate(typed, start=1):
        wb[t.sheet].cell(row=layout.INPUT_FIRST_ROW + 2, column=j, value=value)  # the CLI's file shows 2 rows
    wb.save(shell)

    data = payload(opened, {t.sheet: {(row, j): v for j, v in enumerate(typed, start=1) if v is not None}})
    data["book"]["name"] = str(ribbon)  # the open book is the saved file beside its ledger
    import xlwings as xw

    book = xw.Book(json=copy.deepcopy(data))  # the remote Book adds the sheets it creates to its payload
    result = macros.refresh(book=book)
    assert result is not None, macros.LAST_UI.alerts
    report = refresh.refresh_workbook(shell, backup=False)
    assert (report.imported.rows, report.imported.superseded) == (1, 0)
    mode, alert = macros.LAST_UI.alerts[-1]
    assert mode == "info" and "数据来源：台账" in alert
    assert "输入表中有1行台账中没有，已作为“市本级”的报送登记到台账" in alert
    # 寿县's first version, still on the open book's sheet, is history, not something the city typed
    assert "输入表中有1行是台账中已被新版本替代的旧数据" in alert
    assert "输入表已按台账的当前数据重写（企业销售）" in alert and "尚未保存" in alert

    # the ledgers agree: the typed row filed as 市本级, 寿县 at version 2
    for city in (ribbon, shell):
        with open_ledger(city) as ledger:
            sub = ledger.current_submission(CITY_UNIT)
            assert sub is not None and sub.row_count == 1
            assert ledger.current_submission("寿县").version == 2
    # the open book's 企业销售 shows the ledger's rows, as the CLI's file does
    replay = Replay(data, book.json()["actions"])
    shown = []
    grid = normalised(replay.values[t.sheet])
    for r in range(layout.INPUT_FIRST_ROW, max(k[0] for k in grid) + 1):
        values = [grid.get((r, c)) for c in range(1, len(t.columns) + 1)]
        if values[0]:
            shown.append([None if v == "" else v for v in values])
    assert shown == sales_rows(shell)
    assert sorted(map(str, shown)) == sorted(map(str, FENGTAI_SALES + [SHOU_SALES[1], typed]))
    cli_book = openpyxl.load_workbook(shell)
    for name in refresh.GENERATED_SHEETS:
        assert normalised(replay.values[name]) == normalised(sheet_values(cli_book[name])), name

    # a second 刷新 on the book as it now stands imports nothing and rewrites nothing
    from test_macros import _json_value

    again = payload(opened)
    again["book"]["name"] = str(ribbon)
    sheet = next(s for s in again["sheets"] if s["name"] == t.sheet)
    rows = sheet["values"]
    for r in range(layout.INPUT_FIRST_ROW - 1, len(rows)):
        rows[r] = [""] * len(rows[r])
    for (r, c), v in replay.values[t.sheet].items():
        while len(rows) < r:
            rows.append([""] * len(rows[0]))
        rows[r - 1].extend([""] * (c - len(rows[r - 1])))
        rows[r - 1][c - 1] = _json_value(v)
    book2 = xw.Book(json=copy.deepcopy(again))
    assert macros.refresh(book=book2) is not None, macros.LAST_UI.alerts
    mode, alert = macros.LAST_UI.alerts[-1]
    assert alert.startswith("刷新完成") and "市本级" not in alert and "重写" not in alert and "替代" not in alert
