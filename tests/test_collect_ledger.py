"""collect into the ledger (issue #9): each returned file one submission with versions, the workbook
a view of the current versions, issue tokens verified.  End to end through the CLI
(``python -m xl_ecom counties`` / ``collect``) against a real SQLite file beside the city workbook and
a real PostgreSQL server (``--db``)."""

from __future__ import annotations

import hashlib
import io
import shutil
import subprocess
from pathlib import Path

import openpyxl
import pytest
from cli_inproc import cli

from xl_ecom.ledger import (
    FAULTY,
    MERGED,
    REJECTED,
    SUPERSEDED,
    default_path,
    open_ledger,
)
from xl_ecom.ooxml import safeio
from xl_ecom.workflows import build, collect, counties, layout
from xl_ecom.workflows.tables import table

from pg_server import create_database, drop_database, pg_database_url, pg_url  # noqa: F401

SHOU_SALES = [
    ["寿县", "寿县八公山豆制品电商", "91340422MA2N0A1234", 12_000_000, None, 800_000],
    ["寿县", "寿县瓦埠湖农品网店", None, 5_000_000, 2_000_000, None],
]
FENGTAI_SALES = [["凤台县", "凤台县淮河农品", None, 11_000_000, None, None]]


@pytest.fixture(scope="module")
def city_bytes() -> bytes:
    return build.build_bytes()


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def db_kind(request) -> str:
    return request.param


@pytest.fixture(scope="module")
def issued_template(request, db_kind, tmp_path_factory, city_bytes):
    """Once per module and ledger kind: a city workbook, its ledger, and the county workbooks
    `xl-ecom counties --workbook 市级工作簿 [--db URL]` issued from it.  Each test that takes ``issued``
    gets its own copy (files copied; a PostgreSQL ledger cloned from this one as a template)."""
    root = tmp_path_factory.mktemp(f"issued-{db_kind}")
    city = root / "市级" / layout.WORKBOOK_NAME
    city.parent.mkdir()
    city.write_bytes(city_bytes)
    url = None if db_kind == "sqlite" else create_database(request.getfixturevalue("pg_url"))
    proc = cli("counties", "--out", root / "下发", "--workbook", city, *db_args(url))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    yield root, url
    if url:
        drop_database(request.getfixturevalue("pg_url"), url)


@pytest.fixture
def db(request, db_kind, tmp_path) -> str | None:
    """None: the default SQLite file beside the city workbook; else a PostgreSQL database URL of its own.
    A test that takes ``issued`` starts from a copy of :func:`issued_template` (workbook, ledger, files)."""
    if "issued" in request.fixturenames:
        root, url = request.getfixturevalue("issued_template")
        shutil.copytree(root, tmp_path, dirs_exist_ok=True)
        if url is None:
            return None
        clone = create_database(request.getfixturevalue("pg_url"), template=url)
        request.addfinalizer(lambda: drop_database(request.getfixturevalue("pg_url"), clone))
        return clone
    if db_kind == "sqlite":
        return None
    return request.getfixturevalue("pg_database_url")


@pytest.fixture
def city(tmp_path, city_bytes, db) -> Path:
    path = tmp_path / "市级" / layout.WORKBOOK_NAME
    if not path.exists():  # else copied with the issued files
        path.parent.mkdir()
        path.write_bytes(city_bytes)
    return path




def db_args(db: str | None) -> list[str]:
    return ["--db", db] if db else []


def ledger_of(city: Path, db: str | None):
    return open_ledger(city, db)


@pytest.fixture
def issued(tmp_path, city, db) -> Path:
    """The county workbooks as `xl-ecom counties --workbook 市级工作簿 [--db URL]` issued them (a copy
    of :func:`issued_template`, with the city workbook and ledger they were issued from)."""
    out = tmp_path / "下发" / counties.SUBDIR
    assert sorted(p.stem for p in out.iterdir()), "no issued workbooks"
    return out


def fill(src: Path, dst: Path, sales: list[list], edit=None) -> Path:
    """An issued workbook with 企业销售 rows typed in (openpyxl keeps its token and marker)."""
    wb = openpyxl.load_workbook(src)
    ws = wb[table("T_SALES").sheet]
    for i, row in enumerate(sales):
        for j, value in enumerate(row, start=1):
            safeio.write_cell_value(ws.cell(row=layout.INPUT_FIRST_ROW + i, column=j), value)
    if edit:
        edit(wb)
    dst.parent.mkdir(parents=True, exist_ok=True)
    wb.save(dst)
    return dst


def claim(county: str):
    """Edit a workbook's marker (both copies) to claim ``county``, as someone re-using a file would."""

    def edit(wb):
        counties._set_marker(wb, county)
        wb[counties.COUNTY_MARKER_SHEET][counties.COUNTY_CELL].value = county

    return edit


def sales_rows(path: Path) -> list[list]:
    wb = openpyxl.load_workbook(path)
    t = table("T_SALES")
    return [list(v) for v in wb[t.sheet].iter_rows(min_row=layout.INPUT_FIRST_ROW, max_col=len(t.columns), values_only=True) if v[0]]


def collect_cli(folder: Path, city: Path, db: str | None) -> subprocess.CompletedProcess:
    return cli("collect", folder, "--into", city, *db_args(db))


# --- tokens ---------------------------------------------------------------------------------------------


def test_counties_issue_every_workbook_with_a_token_in_a_hidden_name_and_a_document_property(issued, city, db):
    if db is None:
        assert default_path(city).is_file()  # the ledger beside the city workbook
    with ledger_of(city, db) as ledger:
        issues = {i.unit: i for i in ledger.issues()}
        assert sorted(issues) == sorted(p.stem for p in issued.iterdir())
        for path in issued.iterdir():
            wb = openpyxl.load_workbook(path)
            by_name, by_prop = counties.issue_token(wb)
            assert by_name and by_name == by_prop
            assert wb.defined_names[counties.TOKEN_NAME].hidden
            issue = ledger.verify_token(by_name)
            assert issue is not None and issue.unit == path.stem and issue.kind == "县区" and issue.file_name == path.name
            # the recorded hash is that of the file as written and mailed, its token included
            assert issue.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
        assert len({i.sha256 for i in issues.values()}) == len(issues)
        assert len({i.token for i in issues.values()}) == len(issues)


def test_another_countys_file_claiming_fengtai_under_a_neutral_name_is_rejected(issued, tmp_path, city, db):
    returned = tmp_path / "报回"
    fill(issued / "凤台县.xlsx", returned / "凤台县.xlsx", FENGTAI_SALES)
    first = collect_cli(returned, city, db)
    assert first.returncode == 0, first.stdout
    assert "【已汇总】凤台县.xlsx（凤台县，第1版）" in first.stdout

    # 寿县's issued workbook, its marker and rows edited to say 凤台县, under a neutral file name
    forged_rows = [["凤台县", *r[1:]] for r in SHOU_SALES]
    second = tmp_path / "第二批"
    fill(issued / "寿县.xlsx", second / "报表.xlsx", forged_rows, edit=claim("凤台县"))
    proc = collect_cli(second, city, db)
    assert proc.returncode == 1
    assert "【拒收】报表.xlsx（凤台县）" in proc.stdout
    assert "文件声称是凤台县，但其下发凭证属于寿县" in proc.stdout
    assert sales_rows(city) == FENGTAI_SALES  # 凤台县's rows are untouched
    with ledger_of(city, db) as ledger:
        current = ledger.current_submission("凤台县")
        assert current.version == 1 and current.file_name == "凤台县.xlsx"
        rejected = [s for s in ledger.submissions() if s.file_name == "报表.xlsx"]
        assert [(s.status, s.claimed_unit, s.verified_unit) for s in rejected] == [(REJECTED, "凤台县", "寿县")]
        assert "文件声称是凤台县，但其下发凭证属于寿县" in rejected[0].reason


def test_a_forged_or_missing_token_is_rejected(issued, tmp_path, city, db):
    returned = tmp_path / "报回"

    def forge(wb):
        by_name, _ = counties.issue_token(wb)
        counties.set_token(wb, ("0" if by_name[0] != "0" else "1") + by_name[1:])

    fill(issued / "寿县.xlsx", returned / "寿县.xlsx", SHOU_SALES, edit=forge)
    fill(issued / "凤台县.xlsx", returned / "凤台县.xlsx", FENGTAI_SALES, edit=lambda wb: counties.set_token(wb, None))
    proc = collect_cli(returned, city, db)
    assert proc.returncode == 1
    assert "【拒收】寿县.xlsx（寿县）" in proc.stdout and "下发凭证无效" in proc.stdout
    assert "【拒收】凤台县.xlsx（凤台县）" in proc.stdout and "文件中没有下发凭证" in proc.stdout
    assert "请让凤台县用市里下发的县区工作簿" in proc.stdout
    assert sales_rows(city) == []
    with ledger_of(city, db) as ledger:
        assert {s.unit: s.status for s in ledger.submissions()} == {"寿县": REJECTED, "凤台县": REJECTED}


def test_files_from_before_tokens_are_collected_while_the_ledger_has_no_issue_record(tmp_path, city, db):
    """Decision: a workbook without a token (generated before tokens existed, or without a ledger) is
    collected by its marker as long as the ledger has issued nothing; the report says so."""
    old = tmp_path / "旧版"
    counties.make_county_workbooks(old)  # no ledger: no token
    returned = tmp_path / "报回"
    fill(old / counties.SUBDIR / "寿县.xlsx", returned / "寿县.xlsx", SHOU_SALES)
    proc = collect_cli(returned, city, db)
    assert proc.returncode == 0, proc.stdout
    assert "文件没有下发凭证（台账中尚无下发记录" in proc.stdout
    assert sales_rows(city) == SHOU_SALES
    # once the ledger has issued workbooks, such a file is refused
    proc = cli("counties", "--out", tmp_path / "新版", "--workbook", city, *db_args(db))
    assert proc.returncode == 0
    fill(old / counties.SUBDIR / "寿县.xlsx", returned / "寿县.xlsx", SHOU_SALES[:1])
    proc = collect_cli(returned, city, db)
    assert "【拒收】寿县.xlsx" in proc.stdout and "文件中没有下发凭证" in proc.stdout
    assert sales_rows(city) == SHOU_SALES


# --- versions -------------------------------------------------------------------------------------------


def test_versions_an_all_fail_resubmission_keeps_the_good_rows(issued, tmp_path, city, db):
    returned = tmp_path / "报回"
    fill(issued / "寿县.xlsx", returned / "寿县.xlsx", SHOU_SALES)
    assert collect_cli(returned, city, db).returncode == 0

    # version 2: every row fails (negative amount, text amount)
    bad = [["寿县", "寿县八公山豆制品电商", None, -5, None, None], ["寿县", "寿县瓦埠湖农品网店", None, "50万", None, None]]
    fill(issued / "寿县.xlsx", returned / "寿县.xlsx", bad)
    proc = collect_cli(returned, city, db)
    assert proc.returncode == 1
    assert "【有错】寿县.xlsx（寿县，第2版）：有效0行，有错未汇总2行" in proc.stdout
    assert "寿县仍以台账中的第1版（“寿县.xlsx”" in proc.stdout and "市级工作簿中寿县的数据保持不变" in proc.stdout
    assert sales_rows(city) == SHOU_SALES

    # collecting the same folder again records nothing new
    proc = collect_cli(returned, city, db)
    with ledger_of(city, db) as ledger:
        assert [(s.version, s.status) for s in ledger.submissions("寿县")] == [(1, MERGED), (2, FAULTY), (3, FAULTY)]
        assert ledger.current_submission("寿县").version == 1
        problems = ledger.problems(ledger.submissions("寿县")[1].id)
        cells = {(p.sheet, p.cell) for p in problems}
        assert {("企业销售", f"D{layout.INPUT_FIRST_ROW}"), ("企业销售", f"D{layout.INPUT_FIRST_ROW + 1}")} <= cells
        assert any("50万" in p.reason for p in problems)

    # version 4: one good row, one bad: 已汇总, version 1 被替代
    fill(issued / "寿县.xlsx", returned / "寿县.xlsx", [SHOU_SALES[1], bad[0]])
    proc = collect_cli(returned, city, db)
    assert "【已汇总】寿县.xlsx（寿县，第4版）：有效1行，有错未汇总1行" in proc.stdout
    assert "替代第1版" in proc.stdout
    assert sales_rows(city) == [SHOU_SALES[1]]
    with ledger_of(city, db) as ledger:
        assert [(s.version, s.status) for s in ledger.submissions("寿县")] == [(1, SUPERSEDED), (2, FAULTY), (3, FAULTY), (4, MERGED)]
        rows = ledger.current_rows("T_SALES", unit="寿县")
        assert list(rows["enterprise"]) == ["寿县瓦埠湖农品网店"]
        assert list(rows["_row"]) == [layout.INPUT_FIRST_ROW]  # source row number
        sub = ledger.current_submission("寿县")
        assert len(sub.sha256) == 64 and sub.size == (returned / "寿县.xlsx").stat().st_size
        assert sub.claimed_unit == "寿县" and sub.verified_unit == "寿县" and sub.issue_id is not None


def test_the_same_file_collected_twice_is_one_version_and_other_rows_survive(issued, tmp_path, city, db):
    """The workbook is a view: only the counties with a current version are rewritten; rows a city
    clerk typed for a county that never reported stay."""
    wb = openpyxl.load_workbook(city, keep_vba=True)
    ws = wb[table("T_SALES").sheet]
    typed = ["大通区", "大通区市级录入企业", None, 3_000_000, None, None]
    for j, v in enumerate(typed, start=1):
        ws.cell(row=layout.INPUT_FIRST_ROW, column=j).value = v
    buf = io.BytesIO()
    wb.save(buf)
    city.write_bytes(buf.getvalue())
    returned = tmp_path / "报回"
    fill(issued / "寿县.xlsx", returned / "寿县.xlsx", SHOU_SALES)
    assert collect_cli(returned, city, db).returncode == 0
    proc = collect_cli(returned, city, db)
    assert "与台账中寿县的第1版内容相同，未重复登记" in proc.stdout
    assert sales_rows(city) == [typed, *SHOU_SALES]
    with ledger_of(city, db) as ledger:
        assert [s.version for s in ledger.submissions("寿县")] == [1]


def test_check_only_with_db_verifies_tokens_and_writes_nothing(issued, tmp_path, city, db):
    returned = tmp_path / "报回"
    fill(issued / "寿县.xlsx", returned / "报表.xlsx", SHOU_SALES, edit=claim("凤台县"))
    if db is None:
        with open_ledger(city) as ledger:
            report = collect.collect(returned, ledger=ledger)
    else:
        report = collect.collect(returned, db=db)
    assert "文件声称是凤台县，但其下发凭证属于寿县" in report.to_text()
    assert "只核对下发凭证，未登记报送" in report.to_text() and not report.written
    with ledger_of(city, db) as ledger:
        assert ledger.submissions() == []
