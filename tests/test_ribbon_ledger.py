"""The ribbon's 生成县区工作簿 and 汇总县区报表 use the ledger exactly as the CLI does (issue #9).

Two copies of one real built city workbook side by side: the ribbon's (driven through xlwings' own
remote-interpreter Book, as tests/test_macros.py does) and the CLI's (``python -m xl_ecom counties
--workbook`` / ``collect --into``).  Each issues its own county workbooks (tokens in the SQLite ledger
beside it), receives the same returned files, and the two ledgers must hold the same submissions
(status, version, row count, claimed and verified unit) after each batch; the ribbon's input tables
(replayed from the recorded xlwings actions) must hold the rows the CLI wrote into its file.
"""

from __future__ import annotations

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
