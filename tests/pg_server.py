"""A real PostgreSQL server for the tests (no mocks, no skips).

``pg_url`` (session): the URL of a role that may create databases. It is ``XL_ECOM_TEST_PG_URL`` when set;
otherwise the Debian cluster on this machine is started (``pg_ctlcluster <version> main start``) and a role is
created with ``runuser -u postgres -- psql``. When PostgreSQL is not installed the test fails and says how to
install it.

``pg_database_url`` (function): a fresh, empty database on that server, dropped afterwards.
``ledger_url`` (function, parametrised): the same test once on a real SQLite file on disk and once on PostgreSQL.

Import them in a test module: ``from pg_server import ledger_url, pg_database_url, pg_url  # noqa: F401``.
"""

from __future__ import annotations

import fcntl
import os
import re
import secrets
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

ROLE = "xl_ecom_test"
PASSWORD = "xl_ecom_test_pw"
PORT_DEFAULT = 5432


def _fail(message: str) -> None:
    pytest.fail(message, pytrace=False)


def _versions() -> list[str]:
    found = [p.name for p in Path("/usr/lib/postgresql").glob("*") if (p / "bin" / "postgres").exists()]
    return sorted(found, key=lambda v: [int(x) for x in re.findall(r"\d+", v)])


def _run(args: list[str], check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(args, capture_output=True, text=True, timeout=120, check=False)
    if check and proc.returncode != 0:
        _fail(f"PostgreSQL 命令失败 / command failed: {' '.join(args)}\n{proc.stdout}{proc.stderr}")
    return proc


def _psql(sql: str, check: bool = True) -> subprocess.CompletedProcess:
    return _run(["runuser", "-u", "postgres", "--", "psql", "-v", "ON_ERROR_STOP=1", "-qAtX", "-c", sql], check)


def _local_cluster() -> str:
    # xdist workers start at the same moment: one at a time creates, starts and prepares the cluster
    with open(Path(tempfile.gettempdir()) / "xl-ecom-test-pg.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            return _prepare_local_cluster()
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _prepare_local_cluster() -> str:
    versions = _versions()
    if not versions or shutil.which("pg_ctlcluster") is None:
        _fail(
            "未安装 PostgreSQL：台账测试需要真实的 PostgreSQL 服务器。请执行 apt-get install -y postgresql，"
            "或设置 XL_ECOM_TEST_PG_URL=postgresql+psycopg://用户:密码@主机/库名（该用户需能建库）。\n"
            "PostgreSQL is not installed: the ledger tests need a real server. Run `apt-get install -y postgresql` "
            "or set XL_ECOM_TEST_PG_URL to a role that may create databases."
        )
    version = versions[-1]
    status = _run(["pg_lsclusters", "-h"], check=False).stdout
    line = next((ln.split() for ln in status.splitlines() if ln.split()[:2] == [version, "main"]), None)
    if line is None:
        _run(["pg_createcluster", version, "main"])
        status = _run(["pg_lsclusters", "-h"]).stdout
        line = next(ln.split() for ln in status.splitlines() if ln.split()[:2] == [version, "main"])
    port = int(line[2])
    if line[3] != "online":
        proc = _run(["pg_ctlcluster", version, "main", "start"], check=False)
        # another test process may have started it at the same moment
        if proc.returncode != 0 and "online" not in _run(["pg_lsclusters", "-h"]).stdout:
            _fail(f"PostgreSQL {version} 无法启动 / cannot start:\n{proc.stdout}{proc.stderr}")
    for _ in range(60):
        if _psql("SELECT 1", check=False).returncode == 0:
            break
        time.sleep(0.5)
    exists = _psql(f"SELECT 1 FROM pg_roles WHERE rolname = '{ROLE}'").stdout.strip()
    if not exists:
        proc = _psql(f"CREATE ROLE {ROLE} LOGIN CREATEDB PASSWORD '{PASSWORD}'", check=False)
        if proc.returncode != 0 and "already exists" not in proc.stderr:
            _fail(f"无法创建测试角色 / cannot create the test role:\n{proc.stderr}")
    return f"postgresql+psycopg://{ROLE}:{PASSWORD}@127.0.0.1:{port}/postgres"


@pytest.fixture(scope="session")
def pg_url() -> str:
    url = os.environ.get("XL_ECOM_TEST_PG_URL") or _local_cluster()
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
    except Exception as err:  # noqa: BLE001 - the message is the point
        _fail(f"无法连接测试用 PostgreSQL / cannot connect to {engine.url!r}: {err}")
    finally:
        engine.dispose()
    return url


def create_database(pg_url: str, template: str | None = None) -> str:
    """A new database on the server of ``pg_url`` (a copy of the database ``template`` names, when
    given: PostgreSQL's CREATE DATABASE … TEMPLATE); its URL."""
    import sqlalchemy as sa

    name = f"xl_ecom_t_{secrets.token_hex(6)}"
    admin = sa.create_engine(pg_url, isolation_level="AUTOCOMMIT")
    clause = f' TEMPLATE "{sa.engine.make_url(template).database}"' if template else ""
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"{clause}')
    finally:
        admin.dispose()
    return sa.engine.make_url(pg_url).set(database=name).render_as_string(hide_password=False)


def drop_database(pg_url: str, url: str) -> None:
    import sqlalchemy as sa

    admin = sa.create_engine(pg_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{sa.engine.make_url(url).database}" WITH (FORCE)')
    finally:
        admin.dispose()


@pytest.fixture
def pg_database_url(pg_url: str):
    url = create_database(pg_url)
    yield url
    drop_database(pg_url, url)


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger_url(request, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return "sqlite:///" + str(tmp_path / "目标任务分解表.台账.sqlite")
    return request.getfixturevalue("pg_database_url")
