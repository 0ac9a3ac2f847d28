"""The ledger on a real PostgreSQL server: what only a server can get wrong (passwords in messages, an
unreachable host, several PCs opening one new database at once)."""

from __future__ import annotations

import multiprocessing as mp
import socket

import pytest
import sqlalchemy as sa

from xl_ecom.ledger import MERGED, LedgerError, open_ledger, resolve_url

from pg_server import pg_database_url, pg_url  # noqa: F401


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_password_is_never_shown(pg_database_url):  # noqa: F811
    password = sa.engine.make_url(pg_database_url).password
    with open_ledger(url=pg_database_url) as ledger:
        assert not ledger.is_sqlite
        assert password not in ledger.url and "***" in ledger.url
        assert password not in repr(ledger) and password not in str(ledger.engine.url)
    wrong = sa.engine.make_url(pg_database_url).set(password="错误的密码-secret")
    with pytest.raises(LedgerError) as caught:
        open_ledger(url=wrong.render_as_string(hide_password=False))
    assert "错误的密码-secret" not in str(caught.value) and "无法打开台账数据库" in str(caught.value)


def test_an_unreachable_server_is_a_chinese_message():
    url = f"postgresql://clerk:pw-secret@127.0.0.1:{_free_port()}/台账"
    with pytest.raises(LedgerError, match=r"无法打开台账数据库 postgresql\+psycopg://clerk:\*\*\*@127\.0\.0\.1") as caught:
        open_ledger(url=url)
    assert "pw-secret" not in str(caught.value)
    assert "Traceback" not in str(caught.value)


def test_a_missing_database_names_it(pg_url):  # noqa: F811
    url = sa.engine.make_url(pg_url).set(database="xl_ecom_no_such_db").render_as_string(hide_password=False)
    with pytest.raises(LedgerError, match="xl_ecom_no_such_db"):
        open_ledger(url=url)


def test_plain_postgresql_urls_use_psycopg(pg_database_url):  # noqa: F811
    plain = pg_database_url.replace("postgresql+psycopg://", "postgresql://")
    assert resolve_url(None, plain) == pg_database_url
    with open_ledger(url=plain) as ledger:
        assert ledger.engine.dialect.driver == "psycopg"


def _open_and_submit(url: str, unit: str, barrier) -> None:
    barrier.wait()
    with open_ledger(url=url) as ledger:  # noqa: SIM117
        with ledger.submission(f"{unit}.xlsx", "x", 1, unit, unit) as sub:
            sub.add_rows("示范村", [{"村": unit}], [3])


def test_several_pcs_open_a_new_database_at_once(pg_database_url):  # noqa: F811
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(4)
    units = ["寿县", "凤台县", "潘集区", "八公山区"]
    procs = [ctx.Process(target=_open_and_submit, args=(pg_database_url, u, barrier)) for u in units]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0] * 4
    with open_ledger(url=pg_database_url) as ledger:
        assert sorted(s.unit for s in ledger.submissions() if s.status == MERGED) == sorted(units)
        assert [c.action for c in ledger.changes()].count("升级台账结构") == 1
        assert len(ledger.rounds()) == 1  # one 首轮, not one per PC
