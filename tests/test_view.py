"""The workbook is a view (issue #9): with a ledger, refresh reads the input tables from it; rows a city
clerk typed into the master are imported first as a 市本级 submission (with provenance), never lost,
and a second refresh imports nothing.  Through the CLI on a real built workbook, against a real
SQLite file beside it and a real PostgreSQL server (``--db``)."""

from __future__ import annotations

import zipfile
from pathlib import Path

import openpyxl
import pytest
from cli_inproc import cli, cli_process

from xl_ecom.ledger import MERGED, SUPERSEDED, default_path, open_ledger
from xl_ecom.ledger.lock import lock_path
from xl_ecom.ooxml import safeio
from xl_ecom.workflows import build, layout
from xl_ecom.workflows.refresh.read import CITY_UNIT
from xl_ecom.workflows.tables import table

from pg_server import pg_database_url, pg_url  # noqa: F401

CITY_ROWS = [
    ["寿县", "市本级录入的寿县电商", "91340422MA2N0A9999", 12_000_000, None, 800_000],
    ["凤台县", "市本级录入的凤台网店", None, 5_000_000, 2_000_000, None],
]


@pytest.fixture(scope="module")
def city_bytes() -> bytes:
    return build.build_bytes()


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request) -> str | None:
    if request.param == "sqlite":
        return None
    return request.getfixturevalue("pg_database_url")


@pytest.fixture
def city(tmp_path, city_bytes) -> Path:
    path = tmp_path / "市级" / layout.WORKBOOK_NAME
    path.parent.mkdir()
    path.write_bytes(city_bytes)
    return path




def db_args(db):
    return ["--db", db] if db else []


def type_rows(path: Path, rows: list[list], first: int = layout.INPUT_FIRST_ROW) -> None:
    """A city clerk types 企业销售 rows into the master (openpyxl keeps the VBA project)."""
    wb = openpyxl.load_workbook(path, keep_vba=True)
    ws = wb[table("T_SALES").sheet]
    for i, row in enumerate(rows):
        for j, value in enumerate(row, start=1):
            safeio.write_cell_value(ws.cell(row=first + i, column=j), value)
    wb.save(path)


def sales_rows(path: Path) -> list[list]:
    wb = openpyxl.load_workbook(path)
    t = table("T_SALES")
    return [list(v) for v in wb[t.sheet].iter_rows(min_row=layout.INPUT_FIRST_ROW, max_col=len(t.columns),
                                                   values_only=True) if v[0]]


def ledger_sales(city: Path, db):
    with open_ledger(city, db) as ledger:
        frame = ledger.current_rows("T_SALES", unit=CITY_UNIT)
        subs = ledger.submissions(unit=CITY_UNIT)
    return frame, subs


def test_typed_rows_are_imported_as_city_submission_and_shown_again(city, db):
    if db is None:  # the SQLite ledger beside the workbook makes it a view
        open_ledger(city).close()
        assert default_path(city).is_file()
    type_rows(city, CITY_ROWS)
    proc = cli("refresh", city, *db_args(db))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "已作为“市本级”的报送登记到台账" in proc.stdout and "2行" in proc.stdout
    frame, subs = ledger_sales(city, db)
    assert [s.status for s in subs] == [MERGED]
    assert subs[0].claimed_unit == CITY_UNIT and subs[0].verified_unit == CITY_UNIT
    assert subs[0].file_name == city.name
    assert sorted(frame["_row"].tolist()) == [layout.INPUT_FIRST_ROW, layout.INPUT_FIRST_ROW + 1]
    assert sorted(frame["enterprise"].tolist()) == sorted(r[1] for r in CITY_ROWS)
    assert sorted(r[1] for r in sales_rows(city)) == sorted(r[1] for r in CITY_ROWS)
    # the award is computed from them: 上行奖励 for the 12M enterprise shows in 奖补明细
    wb = openpyxl.load_workbook(city)
    detail = [c for row in wb["奖补明细"].iter_rows(values_only=True) for c in row if isinstance(c, str)]
    assert "市本级录入的寿县电商" in detail

    # idempotent: a second refresh imports nothing
    proc = cli("refresh", city, *db_args(db))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "市本级" not in proc.stdout
    _, subs = ledger_sales(city, db)
    assert len(subs) == 1
    assert not lock_path(city).exists()


def test_a_row_typed_later_is_added_the_earlier_ones_kept(city, db):
    if db is None:
        open_ledger(city).close()
    type_rows(city, CITY_ROWS[:1])
    assert cli("refresh", city, *db_args(db)).returncode == 0
    type_rows(city, CITY_ROWS[1:], first=layout.INPUT_FIRST_ROW + 1)
    proc = cli("refresh", city, *db_args(db))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1行台账中没有" in proc.stdout
    frame, subs = ledger_sales(city, db)
    assert [s.status for s in subs] == [SUPERSEDED, MERGED]
    assert sorted(frame["enterprise"].tolist()) == sorted(r[1] for r in CITY_ROWS)


def test_rows_the_ledger_holds_but_the_sheet_lost_are_written_back(city, db):
    """A clerk deletes a row the ledger holds: refresh shows the ledger's rows again (the sheet is a view)."""
    if db is None:
        open_ledger(city).close()
    type_rows(city, CITY_ROWS)
    assert cli("refresh", city, *db_args(db)).returncode == 0
    type_rows(city, [[None] * 6, [None] * 6])  # both rows cleared in the sheet
    assert sales_rows(city) == []
    proc = cli("refresh", city, *db_args(db))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "输入表已按台账的当前数据重写" in proc.stdout
    assert sorted(r[1] for r in sales_rows(city)) == sorted(r[1] for r in CITY_ROWS)
    with zipfile.ZipFile(city) as z:
        assert "xl/vbaProject.bin" in z.namelist()


def test_without_a_ledger_refresh_reads_the_sheets_and_creates_none(city):
    type_rows(city, CITY_ROWS)
    proc = cli("refresh", city)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "无台账" in proc.stdout
    assert not default_path(city).exists()
    wb = openpyxl.load_workbook(city)
    detail = [c for row in wb["奖补明细"].iter_rows(values_only=True) for c in row if isinstance(c, str)]
    assert "市本级录入的寿县电商" in detail


def test_refresh_refuses_while_another_command_holds_the_workbook(city):
    from xl_ecom.ledger.lock import workbook_lock

    with workbook_lock(city, "汇总县区报表"):
        proc = cli_process("refresh", city)
    assert proc.returncode == 2
    assert "汇总县区报表" in proc.stderr


def test_rows_beyond_a_sheets_capacity_stay_in_the_ledger_and_the_report_says_so(city, monkeypatch):
    """The capacity lowered to one row (a real sheet holds 1,048,572 data rows): the other row is computed
    and kept in the ledger, the sheet shows one, the report names the sheet."""
    from xl_ecom.workflows import refresh

    open_ledger(city).close()
    type_rows(city, CITY_ROWS)
    refresh.refresh_workbook(city)  # both imported
    type_rows(city, [[None] * 6, [None] * 6])
    monkeypatch.setattr(refresh, "SHEET_CAPACITY", 1)
    report = refresh.refresh_workbook(city)
    text = report.to_text()
    assert f"“{table('T_SALES').sheet}”共2行，超出工作表容量" in text
    assert len(sales_rows(city)) == 1
    assert sum(report.result.rows_read.values()) == 2
    frame, _ = ledger_sales(city, None)
    assert len(frame) == 2
