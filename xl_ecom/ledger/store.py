"""The ledger: one module through which every command reads and writes the system of record.

SQLite beside the city workbook is the zero-setup default; any SQLAlchemy URL (PostgreSQL via psycopg 3) gives
the same schema for clerks who share one store. The schema is versioned with Alembic (migrations/), upgraded
to head whenever a ledger is opened. Nothing is ever deleted: a resubmission is a new version, and a unit's
current data is its latest submission that passed (status 已汇总).
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import hmac
import io
import json
import math
import os
import re
import secrets
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

import sqlalchemy as sa
from sqlalchemy import event, exc

from xl_ecom.common.errors import XlEcomError
from xl_ecom.ledger import schema as S

if TYPE_CHECKING:
    import pandas as pd

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
SUFFIX = ".台账.sqlite"
FIRST_ROUND = "首轮"
#: how long a SQLite writer waits for another writer before giving up (milliseconds)
BUSY_TIMEOUT_MS = 60_000
#: rows fetched per chunk when building DataFrames
CHUNK = 262_144
INT64 = 2**63
#: PostgreSQL advisory lock keys: every write transaction, and the schema migration
WRITE_LOCK = 7245101
MIGRATE_LOCK = 7245100


class LedgerError(XlEcomError):
    """The ledger cannot do what was asked; the message is Chinese and names the value."""


# ----------------------------------------------------------------------------------------------- records


@dataclass(frozen=True)
class Round:
    id: int
    label: str
    deadline: dt.date | None
    created_at: dt.datetime


@dataclass(frozen=True)
class Issue:
    id: int
    unit: str
    kind: str
    round_id: int
    file_name: str
    sha256: str
    token: str
    issued_at: dt.datetime


@dataclass(frozen=True)
class Submission:
    id: int
    unit: str
    claimed_unit: str | None
    verified_unit: str | None
    file_name: str
    sha256: str
    size: int
    received_at: dt.datetime
    status: str
    version: int
    row_count: int
    problem_count: int
    round_id: int
    issue_id: int | None
    reason: str = ""


@dataclass(frozen=True)
class ProblemRow:
    id: int
    submission_id: int
    sheet: str
    cell: str
    reason: str
    value: str | None


@dataclass(frozen=True)
class MailAttempt:
    id: int
    round_id: int
    unit: str
    address: str
    file_name: str
    kind: str
    status: str
    detail: str
    message_id: str
    attempted_at: dt.datetime


@dataclass(frozen=True)
class Change:
    id: int
    at: dt.datetime
    action: str
    detail: str


@dataclass
class TableDiff:
    """Rows matched by content: a row present in both versions (same values) is unchanged; of the rest, an old
    and a new row at the same source row number count as changed, the others as removed or added."""

    table_key: str
    unchanged: int = 0
    added: int = 0
    removed: int = 0
    changed: int = 0
    added_examples: list[dict[str, Any]] = field(default_factory=list)
    removed_examples: list[dict[str, Any]] = field(default_factory=list)
    changed_examples: list[tuple[dict[str, Any], dict[str, Any]]] = field(default_factory=list)

    @property
    def same(self) -> bool:
        return not (self.added or self.removed or self.changed)


@dataclass
class Diff:
    old_id: int
    new_id: int
    tables: dict[str, TableDiff]

    @property
    def same(self) -> bool:
        return all(t.same for t in self.tables.values())

    def summary(self) -> str:
        if self.same:
            return f"第{self.old_id}号与第{self.new_id}号报送内容相同"
        parts = []
        for key, t in self.tables.items():
            if not t.same:
                parts.append(f"{key}：新增{t.added}行，删除{t.removed}行，修改{t.changed}行，未变{t.unchanged}行")
        return "；".join(parts)


# ----------------------------------------------------------------------------------------------- location


def default_path(workbook_path: Path | str) -> Path:
    """The SQLite file beside a workbook: ``目标任务分解表.xlsm`` → ``目标任务分解表.台账.sqlite``."""
    path = Path(workbook_path)
    return path.with_name(path.stem + SUFFIX)


def resolve_url(workbook_path: Path | str | None, url_or_none: str | None) -> str:
    """The database URL: the given one (PostgreSQL or any SQLAlchemy URL; a bare file path means SQLite), else
    the SQLite file beside the workbook."""
    if url_or_none is not None and str(url_or_none).strip():
        text = str(url_or_none).strip()
        if "://" not in text:
            if text.lower().endswith((".sqlite", ".sqlite3", ".db")):
                return "sqlite:///" + str(Path(text).resolve())
            raise LedgerError(
                f"台账数据库地址无法识别：{text!r}（应为 postgresql://用户:密码@主机/库名，或以 .sqlite 结尾的文件路径）"
            )
        try:
            parsed = sa.engine.make_url(text)
        except exc.ArgumentError as err:
            raise LedgerError(f"台账数据库地址无法识别：{_mask(text)}（{err}）") from None
        if parsed.drivername in ("postgresql", "postgres"):
            parsed = parsed.set(drivername="postgresql+psycopg")
        return parsed.render_as_string(hide_password=False)
    if workbook_path is None:
        raise LedgerError("未指定台账：请给出工作簿路径或台账数据库地址（--db）")
    return "sqlite:///" + str(default_path(Path(workbook_path).resolve()))


NETWORK_FS = {"nfs", "nfs4", "cifs", "smb3", "smbfs", "afs", "ncpfs", "fuse.sshfs", "davfs", "fuse.davfs2",
              "glusterfs", "ceph", "9p"}


def network_share(path: Path, mounts: str | None = None) -> str | None:
    """The kind of network share ``path`` lies on (“\\\\服务器\\共享”, “网络驱动器 Z:”, “cifs”…), or None on a
    local disk. SQLite's locking is unreliable over such shares: two PCs can corrupt the file."""
    text = str(path)
    if text.startswith(("\\\\", "//")):
        return "网络共享路径"
    if os.name == "nt":  # pragma: no cover - Windows only
        import ctypes

        drive = os.path.splitdrive(os.path.abspath(text))[0]
        if drive and ctypes.windll.kernel32.GetDriveTypeW(drive + "\\") == 4:  # type: ignore[attr-defined]  # DRIVE_REMOTE
            return f"网络驱动器 {drive}"
        return None
    if mounts is None:
        try:
            mounts = Path("/proc/self/mounts").read_text(encoding="utf-8", errors="replace")
        except OSError:
            return None
    best, kind = "", None
    resolved = os.path.abspath(text)
    for line in mounts.splitlines():
        parts = line.split()
        if len(parts) < 3:
            continue
        point = parts[1].replace("\\040", " ")
        inside = resolved == point or resolved.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):
            best, kind = point, parts[2]
    return kind if kind in NETWORK_FS else None


def _mask(text: str) -> str:
    return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", text)


# ----------------------------------------------------------------------------------------------- engine


def _make_engine(url: str) -> sa.Engine:
    try:
        parsed = sa.engine.make_url(url)
    except exc.ArgumentError as err:
        raise LedgerError(f"台账数据库地址无法识别：{_mask(url)}（{err}）") from None
    shown = parsed.render_as_string(hide_password=True)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ""
        if database in ("", ":memory:"):
            raise LedgerError(f"台账必须是磁盘上的文件，不能是内存数据库：{shown}")
        folder = Path(database).parent
        share = network_share(Path(database))
        if share is not None:
            raise LedgerError(
                f"台账 {database} 位于网络共享（{share}）上：SQLite 在网络共享上加锁不可靠，几台电脑同时写会损坏台账。"
                "请把工作簿放在本机磁盘上，或多人共用时用 --db（设置表的“台账数据库”）指定 PostgreSQL 数据库"
            )
        if not folder.is_dir():
            raise LedgerError(f"台账所在的文件夹不存在：{folder}")
        engine = sa.create_engine(parsed, connect_args={"timeout": BUSY_TIMEOUT_MS / 1000})

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_connection, _record):  # pragma: no cover - exercised by every test
            dbapi_connection.isolation_level = None  # SQLAlchemy emits BEGIN itself (see _on_begin)
            cur = dbapi_connection.cursor()
            cur.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            cur.execute("PRAGMA journal_mode = WAL")
            cur.execute("PRAGMA foreign_keys = ON")
            cur.execute("PRAGMA synchronous = FULL")
            cur.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn):
            # writers take the lock up front so two processes never both read, then fail to upgrade
            write = conn.get_execution_options().get("ledger_write", False)
            conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

        return engine
    try:
        return sa.create_engine(parsed, pool_pre_ping=True)
    except (exc.ArgumentError, exc.NoSuchModuleError, ImportError) as err:
        raise LedgerError(f"台账数据库地址无法使用：{shown}（{err}）") from None


def _db_error(err: BaseException, url: str) -> LedgerError:
    text = str(getattr(err, "orig", None) or err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    low = text.lower()
    if "locked" in low or "busy" in low:
        return LedgerError(f"台账数据库正被另一个命令占用，请稍后再试：{url}")
    if isinstance(err, exc.OperationalError) or "connect" in low:
        return LedgerError(f"无法打开台账数据库 {url}：{text}")
    if isinstance(err, exc.IntegrityError):
        return LedgerError(f"台账数据库拒绝了写入（数据冲突）{url}：{text}")
    return LedgerError(f"台账数据库出错 {url}：{text}")


def _now() -> dt.datetime:
    return dt.datetime.now().replace(microsecond=0)


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    raise TypeError(type(value).__name__)


def _check_value(value: Any) -> None:
    if isinstance(value, bool) or value is None:
        return
    if isinstance(value, int) and not -INT64 <= value < INT64:
        raise LedgerError(f"数值超出台账可存的整数范围：{str(value)[:40]}…（{len(str(value))}位）")
    if isinstance(value, float) and not math.isfinite(value):
        raise LedgerError(f"数值不是有限数，台账不能保存：{value!r}")


_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=_json_default, allow_nan=False)


def _dumps(row: dict[str, Any]) -> str:
    """One row as compact JSON. Integers beyond 64 bits and NaN/infinity are refused: a reader would get a
    wrong number."""
    try:
        text = _ENCODER.encode(row)
    except (TypeError, ValueError) as err:
        for value in row.values():
            _check_value(value)
        raise LedgerError(f"这一行的值不能存入台账（{err}）：{str(row)[:200]}") from None
    if [v for v in row.values() if type(v) is int and (v >= INT64 or v < -INT64)]:
        for value in row.values():
            _check_value(value)
    return text


# ----------------------------------------------------------------------------------------------- submission


class SubmissionWriter:
    """Collects one file's rows and problems; written in ONE transaction when the ``with`` block ends."""

    def __init__(self, ledger: Ledger, file_name: str, sha256: str, size: int, claimed_unit: str | None,
                 verified_unit: str | None, issue_id: int | None, round_id: int | None,
                 received_at: dt.datetime | None) -> None:
        unit = verified_unit or claimed_unit
        if not unit:
            raise LedgerError(f"报送文件 {file_name!r} 没有单位（既无声明的县区也无核实的县区）")
        self._ledger = ledger
        self.file_name = str(file_name)
        self.sha256 = sha256
        self.size = int(size)
        self.claimed_unit = claimed_unit
        self.verified_unit = verified_unit
        self.unit = unit
        self.issue_id = issue_id
        self.round_id = round_id
        self.received_at = received_at or _now()
        self._rows: list[tuple[str, int, str]] = []
        self._problems: list[tuple[str, str, str, str | None]] = []
        self._reject: str | None = None
        self.id: int | None = None
        self.status: str | None = None
        self.version: int | None = None
        self.kept_previous = False
        self.previous_id: int | None = None

    def add_rows(self, table_key: str, rows: Sequence[dict[str, object]], row_numbers: Sequence[int]) -> None:
        if len(rows) != len(row_numbers):
            raise LedgerError(f"表 {table_key} 的行数（{len(rows)}）与行号数（{len(row_numbers)}）不一致")
        key = str(table_key)
        self._rows.extend((key, int(n), _dumps(r)) for r, n in zip(rows, row_numbers, strict=True))

    def add_problem(self, sheet: str, cell: str, reason: str, value: str | None = None) -> None:
        self._problems.append((str(sheet), str(cell), str(reason), None if value is None else str(value)))

    def reject(self, reason: str) -> None:
        self._reject = str(reason)

    @property
    def row_count(self) -> int:
        return 0 if self._reject is not None else len(self._rows)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type, exc_value, tb) -> None:
        if exc_type is None:
            self._ledger._write_submission(self)


# ----------------------------------------------------------------------------------------------- ledger


class Ledger:
    def __init__(self, url: str) -> None:
        self._url = url
        self.engine = _make_engine(url)
        if self.engine.dialect.name == "sqlite":
            self.url = f"sqlite:///{self.engine.url.database}"
        else:
            self.url = self.engine.url.render_as_string(hide_password=True)
        self.is_sqlite = self.engine.dialect.name == "sqlite"
        self._secret: bytes | None = None
        try:
            self._migrate()
        except LedgerError:
            self.engine.dispose()
            raise
        except exc.SQLAlchemyError as err:
            self.engine.dispose()
            raise _db_error(err, self.url) from None

    # -- plumbing

    def __repr__(self) -> str:
        return f"Ledger({self.url})"

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def close(self) -> None:
        self.engine.dispose()

    def _write(self):
        """A write transaction (on SQLite: BEGIN IMMEDIATE)."""
        return _Tx(self, write=True)

    def _read(self):
        return _Tx(self, write=False)

    def _migrate(self) -> None:
        from alembic import command
        from alembic.config import Config
        from alembic.runtime.migration import MigrationContext
        from alembic.script import ScriptDirectory

        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        heads = set(ScriptDirectory.from_config(cfg).get_heads())
        with self.engine.connect() as conn:
            current = set(MigrationContext.configure(conn).get_current_heads())
            conn.rollback()
        if current == heads:
            return
        unknown = current - {r.revision for r in ScriptDirectory.from_config(cfg).walk_revisions()}
        if unknown:
            raise LedgerError(
                f"台账 {self.url} 的结构版本（{'、'.join(sorted(unknown))}）比本程序新，请升级 xl-ecom 后再打开"
            )
        with self.engine.connect().execution_options(ledger_write=True) as conn, conn.begin():
            if conn.dialect.name == "postgresql":  # two openers at once: one migrates, the other waits
                conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATE_LOCK})")
            before = set(MigrationContext.configure(conn).get_current_heads())
            if before == heads:
                return
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
            self._log(conn, "升级台账结构", f"{'、'.join(sorted(before)) or '空'} → {'、'.join(sorted(heads))}")

    def schema_revision(self) -> str | None:
        from alembic.runtime.migration import MigrationContext

        with self._read() as conn:
            return MigrationContext.configure(conn).get_current_revision()

    def _log(self, conn: sa.Connection, action: str, detail: str) -> None:
        conn.execute(S.changes.insert().values(at=_now(), action=str(action)[:100], detail=str(detail)))

    def log(self, action: str, detail: str) -> None:
        with self._write() as conn:
            self._log(conn, action, detail)

    def changes(self) -> list[Change]:
        with self._read() as conn:
            return [Change(**r._mapping) for r in conn.execute(sa.select(S.changes).order_by(S.changes.c.id))]

    # -- secret and tokens

    def _get_secret(self, conn: sa.Connection) -> bytes:
        if self._secret is None:
            value = conn.execute(sa.select(S.meta.c.value).where(S.meta.c.key == "issue_secret")).scalar()
            if value is None:
                value = secrets.token_bytes(32).hex()
                conn.execute(S.meta.insert().values(key="issue_secret", value=value))
                self._log(conn, "生成下发密钥", "台账生成了签发令牌用的密钥（只存于台账，不写入工作簿）")
            self._secret = bytes.fromhex(value)
        return self._secret

    def _token(self, conn: sa.Connection, unit: str, round_label: str, issue_id: int) -> str:
        message = f"{unit}|{round_label}|{issue_id}".encode()
        return hmac.new(self._get_secret(conn), message, hashlib.sha256).hexdigest()[:32]

    # -- rounds

    def _round_row(self, conn: sa.Connection, round_id: int | None, create: bool = True) -> Round:
        if round_id is None:
            row = conn.execute(sa.select(S.rounds).order_by(S.rounds.c.id.desc()).limit(1)).first()
            if row is None:
                if not create:
                    raise LedgerError("台账中还没有报送轮次")
                return self._insert_round(conn, FIRST_ROUND, None)
            return Round(**row._mapping)
        row = conn.execute(sa.select(S.rounds).where(S.rounds.c.id == int(round_id))).first()
        if row is None:
            raise LedgerError(f"台账中没有第 {round_id} 号报送轮次")
        return Round(**row._mapping)

    def _insert_round(self, conn: sa.Connection, label: str, deadline: dt.date | None) -> Round:
        created = _now()
        new_id = conn.execute(
            S.rounds.insert().values(label=label, deadline=deadline, created_at=created)
        ).inserted_primary_key[0]  # type: ignore[index]
        self._log(conn, "新建报送轮次", f"{label}" + (f"（截止 {deadline}）" if deadline else ""))
        return Round(new_id, label, deadline, created)

    def new_round(self, label: str, deadline: dt.date | None = None) -> Round:
        label = str(label).strip()
        if not label:
            raise LedgerError("报送轮次的名称不能为空")
        with self._write() as conn:
            if conn.execute(sa.select(S.rounds.c.id).where(S.rounds.c.label == label)).first() is not None:
                raise LedgerError(f"报送轮次“{label}”已存在")
            return self._insert_round(conn, label, deadline)

    def current_round(self) -> Round | None:
        with self._read() as conn:
            row = conn.execute(sa.select(S.rounds).order_by(S.rounds.c.id.desc()).limit(1)).first()
            return None if row is None else Round(**row._mapping)

    def rounds(self) -> list[Round]:
        with self._read() as conn:
            return [Round(**r._mapping) for r in conn.execute(sa.select(S.rounds).order_by(S.rounds.c.id))]

    def round_by_label(self, label: str) -> Round | None:
        with self._read() as conn:
            row = conn.execute(sa.select(S.rounds).where(S.rounds.c.label == str(label))).first()
            return None if row is None else Round(**row._mapping)

    def ensure_round(self, label: str | None = None) -> Round:
        """The round named ``label`` (created if new); without a label the current round, creating “首轮” when
        the ledger has none."""
        with self._write() as conn:
            if label is None:
                return self._round_row(conn, None)
            row = conn.execute(sa.select(S.rounds).where(S.rounds.c.label == str(label))).first()
            return Round(**row._mapping) if row is not None else self._insert_round(conn, str(label), None)

    # -- issued files

    def issue(self, unit: str, kind: str, file_name: str, content_sha256: str, round_id: int | None = None) -> Issue:
        """Record a file made elsewhere (its hash given) as issued; the issue carries a fresh token."""
        return self._issue(unit, kind, file_name, round_id, lambda token: (content_sha256, b""))[0]

    def issue_file(self, unit: str, kind: str, file_name: str, render: Callable[[str], bytes],
                   round_id: int | None = None) -> tuple[Issue, bytes]:
        """Record a file as issued and make it: ``render(token)`` returns the file's bytes with the issue's
        token in them, and the record keeps the hash of exactly those bytes (the file as sent).  One
        transaction: when ``render`` fails nothing is recorded."""

        def made(token: str) -> tuple[str, bytes]:
            data = render(token)
            return hashlib.sha256(data).hexdigest(), data

        return self._issue(unit, kind, file_name, round_id, made)

    def _issue(self, unit: str, kind: str, file_name: str, round_id: int | None,
               make: Callable[[str], tuple[str, bytes]]) -> tuple[Issue, bytes]:
        """One issue record in one transaction: its id gives the token, ``make(token)`` the (sha256, bytes)."""
        if kind not in S.KINDS:
            raise LedgerError(f"下发文件的类别应为“县区”或“部门”，而不是 {kind!r}")
        with self._write() as conn:
            rnd = self._round_row(conn, round_id)
            issued = _now()
            new_id = conn.execute(
                S.issues.insert().values(unit=unit, kind=kind, round_id=rnd.id, file_name=str(file_name),
                                         sha256="", token=None, issued_at=issued)
            ).inserted_primary_key[0]  # type: ignore[index]
            token = self._token(conn, unit, rnd.label, new_id)
            sha, data = make(token)
            conn.execute(S.issues.update().where(S.issues.c.id == new_id).values(token=token, sha256=sha))
            self._log(conn, "下发文件", f"{unit}（{kind}，{rnd.label}）{file_name} 第{new_id}号")
            return Issue(new_id, unit, kind, rnd.id, str(file_name), sha, token, issued), data

    def verify_token(self, token: str | None) -> Issue | None:
        """The issued file a token belongs to, or None when the token is unknown or forged."""
        if not isinstance(token, str):
            return None
        token = token.strip().lower()
        if not re.fullmatch(r"[0-9a-f]{16,64}", token):
            return None
        with self._read() as conn:
            row = conn.execute(sa.select(S.issues).where(S.issues.c.token == token)).first()
            if row is None:
                return None
            label = conn.execute(sa.select(S.rounds.c.label).where(S.rounds.c.id == row.round_id)).scalar_one()
            expected = self._token(conn, row.unit, label, row.id)
        if not hmac.compare_digest(expected, token):
            return None
        return Issue(**row._mapping)

    def issues(self, unit: str | None = None, round_id: int | None = None) -> list[Issue]:
        query = sa.select(S.issues).order_by(S.issues.c.id)
        if unit is not None:
            query = query.where(S.issues.c.unit == unit)
        if round_id is not None:
            query = query.where(S.issues.c.round_id == round_id)
        with self._read() as conn:
            return [Issue(**r._mapping) for r in conn.execute(query)]

    # -- submissions

    def submission(self, file_name: str, sha256: str, size: int, claimed_unit: str | None,
                   verified_unit: str | None, issue_id: int | None = None, round_id: int | None = None,
                   received_at: dt.datetime | None = None) -> SubmissionWriter:
        return SubmissionWriter(self, file_name, sha256, size, claimed_unit, verified_unit, issue_id, round_id,
                                received_at)

    def _write_submission(self, sub: SubmissionWriter) -> None:
        with self._write() as conn:
            rnd = self._round_row(conn, sub.round_id)
            if sub.issue_id is not None and conn.execute(
                sa.select(S.issues.c.id).where(S.issues.c.id == sub.issue_id)
            ).first() is None:
                raise LedgerError(f"台账中没有第 {sub.issue_id} 号下发文件")
            s = S.submissions
            version = (conn.execute(
                sa.select(sa.func.max(s.c.version)).where(s.c.round_id == rnd.id, s.c.unit == sub.unit)
            ).scalar() or 0) + 1
            previous = conn.execute(
                sa.select(s.c.id).where(s.c.round_id == rnd.id, s.c.unit == sub.unit, s.c.status == S.MERGED)
            ).scalar()
            if sub._reject is not None:
                status, reason = S.REJECTED, sub._reject
            elif not sub._rows and sub._problems:
                status = S.FAULTY
                reason = (f"全部行有错，保留第{previous}号报送为当前数据" if previous is not None
                          else "全部行有错，该单位尚无可用的数据")
            else:
                status, reason = S.MERGED, ""
            rows = [] if status == S.REJECTED else sub._rows
            if status == S.MERGED and previous is not None:
                conn.execute(s.update().where(s.c.id == previous).values(status=S.SUPERSEDED))
            new_id = conn.execute(s.insert().values(
                round_id=rnd.id, unit=sub.unit, claimed_unit=sub.claimed_unit, verified_unit=sub.verified_unit,
                issue_id=sub.issue_id, file_name=sub.file_name, sha256=sub.sha256, size=sub.size,
                received_at=sub.received_at, status=status, version=version, row_count=len(rows),
                problem_count=len(sub._problems), reason=reason,
            )).inserted_primary_key[0]  # type: ignore[index]
            self._insert_rows(conn, new_id, rows)
            if sub._problems:
                conn.execute(S.problems.insert(), [
                    {"submission_id": new_id, "sheet": p[0], "cell": p[1], "reason": p[2], "value": p[3]}
                    for p in sub._problems
                ])
            detail = f"{sub.unit} {sub.file_name} 第{version}版：{status}，{len(rows)}行，{len(sub._problems)}个问题"
            if reason:
                detail += f"（{reason}）"
            if status == S.MERGED and previous is not None:
                detail += f"；第{previous}号报送被替代"
            self._log(conn, "收到报送", detail)
        sub.id, sub.status, sub.version = new_id, status, version
        sub.previous_id = previous
        sub.kept_previous = status == S.FAULTY and previous is not None

    def _insert_rows(self, conn: sa.Connection, submission_id: int, rows: list[tuple[str, int, str]]) -> None:
        if not rows:
            return
        raw: Any = conn.connection.driver_connection
        if conn.dialect.name == "sqlite":
            cur = raw.cursor()
            cur.executemany(
                "INSERT INTO rows (submission_id, table_key, row_number, data) VALUES (?, ?, ?, ?)",
                ((submission_id, k, n, d) for k, n, d in rows),
            )
            cur.close()
        elif conn.dialect.name == "postgresql":
            sql = "COPY rows (submission_id, table_key, row_number, data) FROM STDIN"
            with raw.cursor() as cur, cur.copy(sql) as copy:
                for k, n, d in rows:
                    copy.write_row((submission_id, k, n, d))
        else:  # any other SQLAlchemy backend
            conn.execute(S.rows.insert(), [
                {"submission_id": submission_id, "table_key": k, "row_number": n, "data": d} for k, n, d in rows
            ])

    def submissions(self, unit: str | None = None, round_id: int | None = None) -> list[Submission]:
        query = sa.select(S.submissions).order_by(S.submissions.c.id)
        if unit is not None:
            query = query.where(S.submissions.c.unit == unit)
        with self._read() as conn:
            if round_id is not None:
                self._round_row(conn, round_id)
                query = query.where(S.submissions.c.round_id == round_id)
            return [Submission(**r._mapping) for r in conn.execute(query)]

    def get_submission(self, submission_id: int) -> Submission:
        with self._read() as conn:
            row = conn.execute(sa.select(S.submissions).where(S.submissions.c.id == submission_id)).first()
        if row is None:
            raise LedgerError(f"台账中没有第 {submission_id} 号报送")
        return Submission(**row._mapping)

    def problems(self, submission_id: int) -> list[ProblemRow]:
        query = sa.select(S.problems).where(S.problems.c.submission_id == submission_id).order_by(S.problems.c.id)
        with self._read() as conn:
            return [ProblemRow(**r._mapping) for r in conn.execute(query)]

    def current_submission(self, unit: str, round_id: int | None = None) -> Submission | None:
        with self._read() as conn:
            rnd = self._current_round_or_none(conn, round_id)
            if rnd is None:
                return None
            s = S.submissions
            row = conn.execute(
                sa.select(s).where(s.c.round_id == rnd, s.c.unit == unit, s.c.status == S.MERGED)
            ).first()
            return None if row is None else Submission(**row._mapping)

    def _current_round_or_none(self, conn: sa.Connection, round_id: int | None) -> int | None:
        if round_id is not None:
            return self._round_row(conn, round_id).id
        return conn.execute(sa.select(sa.func.max(S.rounds.c.id))).scalar()

    def history(self, unit: str) -> list[Submission]:
        return self.submissions(unit=unit)

    # -- current data

    def table_keys(self, round_id: int | None = None) -> list[str]:
        with self._read() as conn:
            rnd = self._current_round_or_none(conn, round_id)
            if rnd is None:
                return []
            s, r = S.submissions, S.rows
            query = (sa.select(r.c.table_key).distinct().join(s, s.c.id == r.c.submission_id)
                     .where(s.c.round_id == rnd, s.c.status == S.MERGED).order_by(r.c.table_key))
            return [k for (k,) in conn.execute(query)]

    def current_rows(self, table_key: str, round_id: int | None = None, unit: str | None = None,
                     arrow: bool = False) -> pd.DataFrame:
        """The rows of ``table_key`` in each unit's current submission: the JSON keys as columns, plus ``_unit``,
        ``_submission`` and ``_row`` (the source row number). ``arrow=True`` keeps pyarrow-backed dtypes (less
        memory for millions of text values)."""
        s = S.submissions
        with self._read() as conn:
            rnd = self._current_round_or_none(conn, round_id)
            if rnd is None:
                return _frame([], arrow)
            where = [s.c.round_id == rnd, s.c.status == S.MERGED]
            if unit is not None:
                where.append(s.c.unit == unit)
            return _frame(self._blocks(conn, where, str(table_key), with_table=False), arrow)

    def submission_rows(self, submission_id: int, table_key: str | None = None) -> pd.DataFrame:
        """Every stored row of one submission (any status), same columns as current_rows plus ``_table``."""
        where = [S.submissions.c.id == int(submission_id)]
        key = None if table_key is None else str(table_key)
        with self._read() as conn:
            return _frame(self._blocks(conn, where, key, with_table=True), False)

    def _blocks(self, conn: sa.Connection, where: list, table_key: str | None,
                with_table: bool) -> Iterator[tuple]:
        """The matching rows as blocks of at most CHUNK rows: (unit, submission id, table key, the rows' JSON
        joined by newlines, their row numbers joined by commas, count). The database joins the text, so no
        Python object is made per row."""
        s, r = S.submissions, S.rows
        subs = conn.execute(sa.select(s.c.id, s.c.unit).where(*where).order_by(s.c.id)).all()
        groups: list[tuple[int, str, str, int, int]] = []
        for sub_id, unit in subs:  # each bound found through the index, not by scanning the rows
            if table_key is None:
                keys = conn.execute(sa.select(r.c.table_key).distinct().where(r.c.submission_id == sub_id)
                                    .order_by(r.c.table_key)).scalars().all()
            else:
                keys = [table_key]
            for key in keys:
                inside = (r.c.submission_id == sub_id, r.c.table_key == key)
                low = conn.execute(sa.select(sa.func.min(r.c.id)).where(*inside)).scalar()
                if low is not None:
                    high = conn.execute(sa.select(sa.func.max(r.c.id)).where(*inside)).scalar_one()
                    groups.append((sub_id, unit, key, low, high))
        if conn.dialect.name == "sqlite":
            sql = ("SELECT group_concat(data, char(10)), group_concat(row_number, ','), count(*) FROM "
                   "(SELECT data, row_number FROM rows WHERE submission_id = ? AND table_key = ? "
                   "AND id >= ? AND id < ? ORDER BY id)")
        else:
            sql = ("SELECT string_agg(data, E'\\n' ORDER BY id), string_agg(CAST(row_number AS TEXT), ',' ORDER BY id), "
                   "count(*) FROM rows WHERE submission_id = %s AND table_key = %s AND id >= %s AND id < %s")
        for sub_id, unit, key, low, high in groups:
            for start in range(low, high + 1, CHUNK):
                text, numbers, count = conn.exec_driver_sql(sql, (sub_id, key, start, start + CHUNK)).one()
                if count:
                    yield unit, sub_id, key if with_table else None, text, numbers, count

    # -- mail

    def record_mail(self, unit: str, address: str, file_name: str, kind: str, status: str, detail: str = "",
                    message_id: str = "", round_id: int | None = None,
                    attempted_at: dt.datetime | None = None) -> int:
        if status not in S.MAIL_STATUSES:
            raise LedgerError(f"发送状态应为 {'、'.join(S.MAIL_STATUSES)} 之一，而不是 {status!r}")
        with self._write() as conn:
            rnd = self._round_row(conn, round_id)
            new_id = conn.execute(S.mail_attempts.insert().values(
                round_id=rnd.id, unit=unit, address=address, file_name=str(file_name), kind=kind, status=status,
                detail=detail or "", message_id=message_id or "", attempted_at=attempted_at or _now(),
            )).inserted_primary_key[0]  # type: ignore[index]
            self._log(conn, "邮件发送", f"{unit} <{address}> {file_name}：{status}" + (f"（{detail}）" if detail else ""))
            return new_id

    def mail_attempts(self, round_id: int | None = None) -> list[MailAttempt]:
        query = sa.select(S.mail_attempts).order_by(S.mail_attempts.c.id)
        with self._read() as conn:
            if round_id is not None:
                self._round_row(conn, round_id)
                query = query.where(S.mail_attempts.c.round_id == round_id)
            return [MailAttempt(**r._mapping) for r in conn.execute(query)]

    def delivered(self, unit: str, address: str, file_name: str, round_id: int | None = None) -> bool:
        m = S.mail_attempts
        with self._read() as conn:
            rnd = self._current_round_or_none(conn, round_id)
            if rnd is None:
                return False
            query = sa.select(m.c.id).where(m.c.round_id == rnd, m.c.unit == unit, m.c.address == address,
                                            m.c.file_name == str(file_name), m.c.status == S.SENT).limit(1)
            return conn.execute(query).first() is not None

    MAIL_HEADER = ("时间", "轮次", "单位", "邮箱", "文件", "类别", "状态", "说明", "Message-ID")

    def export_mail_csv(self, path: Path | str) -> Path:
        """Every mail attempt as a CSV (UTF-8 with BOM so Excel and WPS read it). An export only: always
        rewritten whole, never read back."""
        labels = {r.id: r.label for r in self.rounds()}
        rows = [(a.attempted_at.isoformat(sep=" "), labels.get(a.round_id, ""), a.unit, a.address, a.file_name,
                 a.kind, a.status, a.detail, a.message_id) for a in self.mail_attempts()]
        return _write_csv(Path(path), self.MAIL_HEADER, rows)

    # -- history and export

    def diff(self, old_submission_id: int, new_submission_id: int, examples: int = 5) -> Diff:
        self.get_submission(old_submission_id)
        self.get_submission(new_submission_id)
        with self._read() as conn:
            old = _rows_by_table(conn, old_submission_id)
            new = _rows_by_table(conn, new_submission_id)
        tables = {}
        for key in sorted(set(old) | set(new)):
            tables[key] = _diff_table(key, old.get(key, []), new.get(key, []), examples)
        return Diff(old_submission_id, new_submission_id, tables)

    SUBMISSION_HEADER = ("编号", "轮次", "单位", "声明单位", "核实单位", "下发编号", "文件", "SHA256", "字节",
                         "收到时间", "状态", "版本", "行数", "问题数", "说明")

    def export(self, directory: Path | str, fmt: str = "csv", round_id: int | None = None) -> list[Path]:
        """One file per table of current rows, plus 报送记录 (every submission) and 发送记录 (every mail
        attempt). CSV is UTF-8 with BOM; parquet via pyarrow."""
        import pandas as pd

        if fmt not in ("csv", "parquet"):
            raise LedgerError(f"导出格式应为 csv 或 parquet，而不是 {fmt!r}")
        folder = Path(directory)
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise LedgerError(f"无法创建导出文件夹 {folder}：{err.strerror or err}") from None
        written: list[Path] = []
        for key in self.table_keys(round_id):
            written.append(_write_frame(self.current_rows(key, round_id=round_id), folder / _safe_name(key), fmt))
        labels = {r.id: r.label for r in self.rounds()}
        subs = pd.DataFrame(
            [(s.id, labels.get(s.round_id, ""), s.unit, s.claimed_unit, s.verified_unit, s.issue_id, s.file_name,
              s.sha256, s.size, s.received_at, s.status, s.version, s.row_count, s.problem_count, s.reason)
             for s in self.submissions()],
            columns=list(self.SUBMISSION_HEADER),
        )
        subs["下发编号"] = subs["下发编号"].astype("Int64")
        written.append(_write_frame(subs, folder / "报送记录", fmt))
        mail = pd.DataFrame(
            [(a.attempted_at, labels.get(a.round_id, ""), a.unit, a.address, a.file_name, a.kind, a.status,
              a.detail, a.message_id) for a in self.mail_attempts()],
            columns=list(self.MAIL_HEADER),
        )
        written.append(_write_frame(mail, folder / "发送记录", fmt))
        self.log("导出台账", f"{fmt}：{len(written)}个文件到 {folder}")
        return written


class _Tx:
    """``with ledger._write() as conn`` — one transaction; database errors become LedgerError."""

    def __init__(self, ledger: Ledger, write: bool) -> None:
        self.ledger = ledger
        self.write = write

    def __enter__(self) -> sa.Connection:
        try:
            self.conn = self.ledger.engine.connect()
            if self.write:
                self.conn = self.conn.execution_options(ledger_write=True)
            self.tx = self.conn.begin()
            if self.write and self.conn.dialect.name == "postgresql":
                # one writer at a time, as SQLite's BEGIN IMMEDIATE: versions, the first round and
                # "exists?" checks stay consistent across PCs
                self.conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({WRITE_LOCK})")
        except exc.SQLAlchemyError as err:
            if hasattr(self, "conn"):
                self.conn.close()
            raise _db_error(err, self.ledger.url) from None
        return self.conn

    def __exit__(self, exc_type, exc_value, tb) -> None:
        try:
            if exc_type is None:
                self.tx.commit()
            else:
                self.tx.rollback()
        except exc.SQLAlchemyError as err:
            self.conn.close()
            raise _db_error(err, self.ledger.url) from None
        except BaseException:
            self.conn.close()
            raise
        self.conn.close()
        if exc_type is not None and issubclass(exc_type, exc.SQLAlchemyError):
            raise _db_error(exc_value, self.ledger.url) from None
        if exc_type is not None and issubclass(exc_type, Exception) and type(exc_value).__module__.startswith(
            ("sqlite3", "psycopg")
        ):
            raise _db_error(exc_value, self.ledger.url) from None


# ----------------------------------------------------------------------------------------------- helpers


def _frame(blocks: Iterable[tuple], arrow: bool) -> pd.DataFrame:
    """Build one DataFrame from Ledger._blocks: pyarrow's JSON reader parses each block in C++; a block it
    cannot type (a column mixing numbers and text) is parsed with json and keeps the mixed values as Python
    objects."""
    import pandas as pd
    import pyarrow as pa

    parts = [_block(*block) for block in blocks]
    if not parts:
        return pd.DataFrame({"_unit": pd.Series(dtype="object"), "_submission": pd.Series(dtype="int64"),
                             "_row": pd.Series(dtype="int64")})
    if all(isinstance(p, pa.Table) for p in parts):
        try:
            table = pa.concat_tables(parts, promote_options="permissive") if len(parts) > 1 else parts[0]
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            pass
        else:
            return table.to_pandas(types_mapper=pd.ArrowDtype) if arrow else table.to_pandas()
    frames = [p.to_pandas() if isinstance(p, pa.Table) else p for p in parts]
    frame = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    tail = [c for c in ("_unit", "_submission", "_row", "_table") if c in frame.columns]
    return frame[[c for c in frame.columns if c not in tail] + tail]


def _block(unit: str, sub_id: int, key: str | None, text: str, numbers: str, count: int):
    import numpy as np
    import pandas as pd
    import pyarrow as pa
    import pyarrow.json as pj

    blob = text.encode("utf-8")
    rows = np.array(numbers.split(","), dtype=np.int64)
    extra = {
        "_unit": pa.array(np.full(count, unit, dtype=object), pa.string()),
        "_submission": pa.array(np.full(count, sub_id, dtype=np.int64)),
        "_row": pa.array(rows),
    }
    if key is not None:
        extra["_table"] = pa.array(np.full(count, key, dtype=object), pa.string())
    options = pj.ReadOptions(block_size=1 << 24)  # larger than any row a sheet can hold
    try:
        data = pj.read_json(io.BytesIO(blob), read_options=options)
        stamps = [f for f in data.schema if pa.types.is_timestamp(f.type) or pa.types.is_date(f.type)]
        if stamps:  # text that looks like a date stays text, as it was stored
            order = data.column_names
            schema = pa.schema([pa.field(f.name, pa.string()) for f in stamps])
            data = pj.read_json(io.BytesIO(blob), read_options=options, parse_options=pj.ParseOptions(
                explicit_schema=schema, unexpected_field_behavior="infer")).select(order)
    except pa.ArrowInvalid:
        frame = pd.DataFrame.from_records(json.loads("[" + text.replace("\n", ",") + "]"), index=range(count))
        for name, array in extra.items():
            frame[name] = array.to_pandas()
        return frame
    for name, array in extra.items():
        if name in data.column_names:
            data = data.drop_columns([name])
        data = data.append_column(name, array)
    return data


def _rows_by_table(conn: sa.Connection, submission_id: int) -> dict[str, list[tuple[int, str]]]:
    result: dict[str, list[tuple[int, str]]] = {}
    query = (sa.select(S.rows.c.table_key, S.rows.c.row_number, S.rows.c.data)
             .where(S.rows.c.submission_id == submission_id).order_by(S.rows.c.id))
    for key, number, data in conn.execute(query):
        result.setdefault(key, []).append((number, data))
    return result


def _canonical(data: str) -> str:
    return json.dumps(json.loads(data), ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def _diff_table(key: str, old: list[tuple[int, str]], new: list[tuple[int, str]], examples: int) -> TableDiff:
    old_c = Counter(_canonical(d) for _, d in old)
    new_c = Counter(_canonical(d) for _, d in new)
    common = old_c & new_c
    out = TableDiff(key, unchanged=sum(common.values()))
    left = old_c - common
    right = new_c - common
    removed = _leftover(old, left)
    added = _leftover(new, right)
    by_row: dict[int, list[str]] = {}
    for n, c in removed:
        by_row.setdefault(n, []).append(c)
    still_added = []
    for n, c in added:
        if by_row.get(n):
            before = by_row[n].pop(0)
            out.changed += 1
            if len(out.changed_examples) < examples:
                out.changed_examples.append((json.loads(before), json.loads(c)))
        else:
            still_added.append(c)
    still_removed = [c for cs in by_row.values() for c in cs]
    out.added, out.removed = len(still_added), len(still_removed)
    out.added_examples = [json.loads(c) for c in still_added[:examples]]
    out.removed_examples = [json.loads(c) for c in still_removed[:examples]]
    return out


def _leftover(rows: list[tuple[int, str]], counts: Counter) -> list[tuple[int, str]]:
    out = []
    for number, data in rows:
        c = _canonical(data)
        if counts[c] > 0:
            counts[c] -= 1
            out.append((number, c))
    return out


def _safe_name(key: str) -> str:
    name = re.sub(r'[\\/:*?"<>|\x00-\x1f]', "_", str(key)).strip(". ") or "表"
    return name[:100]


def _write_frame(frame: pd.DataFrame, stem: Path, fmt: str) -> Path:
    import pandas as pd

    path = stem.with_name(stem.name + "." + fmt)
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    try:
        if fmt == "csv":
            frame.to_csv(tmp, index=False, encoding="utf-8-sig")
        else:
            frame = frame.copy()
            for name in frame.columns:  # parquet needs one type per column: mixed text/number values as text
                if frame[name].dtype == object and len({type(v) for v in frame[name].dropna()}) > 1:
                    frame[name] = [None if pd.isna(v) else str(v) for v in frame[name]]
            frame.to_parquet(tmp, index=False)
        os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise LedgerError(f"无法写入导出文件 {path}：{err.strerror or err}") from None
    return path


def _write_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> Path:
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8-sig", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(header)
            writer.writerows(rows)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise LedgerError(f"无法写入 {path}：{err.strerror or err}") from None
    return path


def open_ledger(workbook_path: Path | str | None = None, url: str | None = None) -> Ledger:
    """Open (creating and migrating to the newest schema) the ledger for a workbook, or at a URL."""
    return Ledger(resolve_url(workbook_path, url))
