"""xl-ecom history 县区 and xl-ecom export (issue #9): a unit's submissions and what changed between
them, and the ledger's current rows for analysts.  Through the CLI against a real SQLite file and a
real PostgreSQL server."""

from __future__ import annotations

import csv
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from cli_inproc import cli

from xl_ecom.ledger import default_path, open_ledger

from pg_server import pg_database_url, pg_url  # noqa: F401

ROW_A = {"county": "寿县", "enterprise": "寿县八公山豆制品电商", "uplink_sales": 12_000_000}
ROW_B = {"county": "寿县", "enterprise": "寿县瓦埠湖农品网店", "uplink_sales": 5_000_000}
ROW_B2 = {"county": "寿县", "enterprise": "寿县瓦埠湖农品网店", "uplink_sales": 6_000_000}
ROW_C = {"county": "寿县", "enterprise": "寿县新农人合作社", "uplink_sales": 1_000_000}


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request, tmp_path) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "台账.sqlite")
    return request.getfixturevalue("pg_database_url")




def submit(ledger, unit: str, name: str, rows: list[dict], problems: int = 0, claimed: str | None = None):
    with ledger.submission(name, name.encode().hex().ljust(64, "0")[:64], 1000, claimed or unit, unit) as sub:
        if rows:
            sub.add_rows("T_SALES", rows, list(range(5, 5 + len(rows))))
        for i in range(problems):
            sub.add_problem("企业销售", f"D{5 + i}", "不是数字", "abc")
    return sub


@pytest.fixture
def filled(db) -> str:
    with open_ledger(None, db) as ledger:
        submit(ledger, "寿县", "寿县-第一次.xlsx", [ROW_A, ROW_B])
        submit(ledger, "寿县", "寿县-全错.xlsx", [], problems=2)
        submit(ledger, "寿县", "寿县-第二次.xlsx", [ROW_A, ROW_B2, ROW_C])
        submit(ledger, "凤台县", "凤台县.xlsx", [{"county": "凤台县", "enterprise": "凤台县淮河农品", "uplink_sales": 1}])
    return db


def test_history_lists_versions_status_and_changes(filled):
    proc = cli("history", "寿县", "--db", filled)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    lines = [line for line in out.splitlines() if line.startswith("  第")]
    assert len(lines) == 3
    assert "寿县-第一次.xlsx" in lines[0] and "被替代" in lines[0] and "2行" in lines[0]
    assert "寿县-全错.xlsx" in lines[1] and "有错" in lines[1] and "2个问题" in lines[1] and "保留" in lines[1]
    assert "寿县-第二次.xlsx" in lines[2] and "已汇总" in lines[2] and "3行" in lines[2]
    # the faulty version carries no rows: the change is measured from version 1 to version 3
    assert "与第1版相比：T_SALES：新增1行，删除0行，修改1行，未变1行" in out
    assert "与第2版相比" not in out
    assert "当前数据：第3版（“寿县-第二次.xlsx”）" in out
    assert "凤台县" not in out


def test_history_of_a_unit_without_submissions_exits_1_naming_the_known_units(filled):
    proc = cli("history", "潘集区", "--db", filled)
    assert proc.returncode == 1
    assert "没有“潘集区”的报送" in proc.stdout and "寿县" in proc.stdout and "凤台县" in proc.stdout


def test_history_without_a_ledger_is_an_error_and_creates_none(tmp_path):
    book = tmp_path / "目标任务分解表.xlsm"
    book.write_bytes(b"not really a workbook")
    proc = cli("history", "寿县", "--workbook", book)
    assert proc.returncode == 2
    assert proc.stderr.startswith("错误：") and "找不到台账" in proc.stderr
    assert not default_path(book).exists()


def test_history_reads_the_ledger_beside_the_workbook(tmp_path):
    book = tmp_path / "目标任务分解表.xlsm"
    book.write_bytes(b"x")
    with open_ledger(book) as ledger:
        submit(ledger, "寿县", "寿县.xlsx", [ROW_A])
    proc = cli("history", "寿县", "--workbook", book)
    assert proc.returncode == 0, proc.stderr
    assert "寿县.xlsx" in proc.stdout and "已汇总" in proc.stdout


def test_export_csv_holds_the_current_rows_and_every_submission(filled, tmp_path):
    out = tmp_path / "导出"
    proc = cli("export", "--csv", "--out", out, "--db", filled)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "已导出" in proc.stdout
    with open(out / "T_SALES.csv", encoding="utf-8-sig", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert sorted((r["_unit"], r["enterprise"], r["uplink_sales"]) for r in rows) == sorted([
        ("寿县", "寿县八公山豆制品电商", "12000000"), ("寿县", "寿县瓦埠湖农品网店", "6000000"),
        ("寿县", "寿县新农人合作社", "1000000"), ("凤台县", "凤台县淮河农品", "1"),
    ])
    with open(out / "报送记录.csv", encoding="utf-8-sig", newline="") as fh:
        subs = list(csv.DictReader(fh))
    assert [s["状态"] for s in subs] == ["被替代", "有错", "已汇总", "已汇总"]


def test_export_parquet_and_an_unknown_round(filled, tmp_path):
    out = tmp_path / "pq"
    proc = cli("export", "--parquet", "--out", out, "--db", filled)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    table = pq.read_table(out / "T_SALES.parquet").to_pandas()
    assert len(table) == 4 and set(table["_unit"]) == {"寿县", "凤台县"}
    proc = cli("export", "--csv", "--out", tmp_path / "x", "--round", "第九轮", "--db", filled)
    assert proc.returncode == 2
    assert "没有轮次“第九轮”" in proc.stderr
    assert not (tmp_path / "x").exists()


def test_export_needs_a_format(tmp_path):
    proc = cli("export", "--out", tmp_path / "x", "--db", str(tmp_path / "a.sqlite"))
    assert proc.returncode == 2
    assert "--csv" in proc.stderr
    assert not Path(tmp_path / "a.sqlite").exists()
