"""The ledger's behaviour, each test on a real SQLite file on disk AND on a real PostgreSQL server."""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import multiprocessing as mp
import os
import sqlite3
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from xl_ecom.common.errors import XlEcomError
from xl_ecom.ledger import (
    FAULTY,
    MERGED,
    REJECTED,
    SUPERSEDED,
    LedgerError,
    default_path,
    open_ledger,
    resolve_url,
)
from xl_ecom.ledger.schema import metadata

from pg_server import ledger_url, pg_database_url, pg_url  # noqa: F401


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _submit(ledger, unit, rows, problems=(), table="示范村", file_name=None, **kw):
    with ledger.submission(file_name or f"{unit}.xlsx", _sha(str(rows)), 1000, unit, unit, **kw) as sub:
        if rows:
            sub.add_rows(table, rows, list(range(3, 3 + len(rows))))
        for p in problems:
            sub.add_problem(*p)
    return sub


@pytest.fixture
def ledger(ledger_url):  # noqa: F811
    with open_ledger(url=ledger_url) as opened:
        yield opened


# ------------------------------------------------------------------------------------------ location, schema


def test_default_location_is_beside_the_workbook(tmp_path):
    wb = tmp_path / "目标任务分解表.xlsm"
    assert default_path(wb) == tmp_path / "目标任务分解表.台账.sqlite"
    with open_ledger(wb) as ledger:
        assert ledger.is_sqlite
        assert "目标任务分解表.台账.sqlite" in ledger.url
    assert (tmp_path / "目标任务分解表.台账.sqlite").exists()
    con = sqlite3.connect(tmp_path / "目标任务分解表.台账.sqlite")
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    con.close()


def test_resolve_url_and_bad_urls(tmp_path):
    assert resolve_url(tmp_path / "a.xlsm", None) == "sqlite:///" + str(tmp_path / "a.台账.sqlite")
    assert resolve_url(None, "postgresql://u:p@h/db") == "postgresql+psycopg://u:p@h/db"
    assert resolve_url(None, str(tmp_path / "x.sqlite")).startswith("sqlite:///")
    with pytest.raises(LedgerError, match="台账数据库地址无法识别.*不是地址"):
        resolve_url(None, "不是地址")
    with pytest.raises(LedgerError, match="未指定台账"):
        resolve_url(None, None)
    with pytest.raises(LedgerError, match="文件夹不存在"):
        open_ledger(url="sqlite:///" + str(tmp_path / "无此目录" / "x.sqlite"))
    assert issubclass(LedgerError, XlEcomError)


def test_migrations_from_empty_and_reopen_idempotent(ledger_url):  # noqa: F811
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    with open_ledger(url=ledger_url) as ledger:
        assert ledger.schema_revision() == "0001"
        _submit(ledger, "寿县", [{"a": 1}])
        with ledger.engine.connect() as conn:
            diffs = compare_metadata(MigrationContext.configure(conn), metadata)
        assert diffs == [], diffs  # the migration builds exactly schema.py
        upgrades = [c for c in ledger.changes() if c.action == "升级台账结构"]
        assert len(upgrades) == 1
    with open_ledger(url=ledger_url) as again:
        assert again.schema_revision() == "0001"
        assert [c.action for c in again.changes()].count("升级台账结构") == 1
        assert len(again.submissions()) == 1


def test_a_newer_schema_is_refused(ledger_url):  # noqa: F811
    with open_ledger(url=ledger_url) as ledger, ledger.engine.begin() as conn:
        conn.exec_driver_sql("UPDATE alembic_version SET version_num = '9999'")
    with pytest.raises(LedgerError, match="比本程序新"):
        open_ledger(url=ledger_url)


# ------------------------------------------------------------------------------------------ rounds


def test_rounds(ledger):
    assert ledger.current_round() is None
    first = ledger.ensure_round()
    assert first.label == "首轮" and ledger.ensure_round().id == first.id
    second = ledger.new_round("2020-10", dt.date(2020, 10, 31))
    assert ledger.current_round() == second
    assert second.deadline == dt.date(2020, 10, 31)
    assert [r.label for r in ledger.rounds()] == ["首轮", "2020-10"]
    with pytest.raises(LedgerError, match="2020-10.*已存在"):
        ledger.new_round("2020-10")
    with pytest.raises(LedgerError, match="第 99 号报送轮次"):
        ledger.submissions(round_id=99)
    assert ledger.ensure_round("2020-10").id == second.id


# ------------------------------------------------------------------------------------------ submissions


def test_resubmission_is_version_2_and_supersedes(ledger):
    first = _submit(ledger, "寿县", [{"村": "甲", "数": 1}, {"村": "乙", "数": 2}])
    assert (first.status, first.version) == (MERGED, 1)
    other = _submit(ledger, "凤台县", [{"村": "丙", "数": 3}])
    second = _submit(ledger, "寿县", [{"村": "甲", "数": 5}])
    assert (second.status, second.version) == (MERGED, 2)
    statuses = {s.id: s.status for s in ledger.submissions()}
    assert statuses == {first.id: SUPERSEDED, other.id: MERGED, second.id: MERGED}
    assert ledger.current_submission("寿县").id == second.id
    rows = ledger.current_rows("示范村")
    assert sorted(zip(rows["_unit"], rows["村"], rows["数"])) == [("凤台县", "丙", 3), ("寿县", "甲", 5)]
    assert [s.version for s in ledger.history("寿县")] == [1, 2]


def test_all_rows_failing_keeps_the_previous_version(ledger):
    good = _submit(ledger, "寿县", [{"村": "甲", "数": 1}])
    bad = _submit(ledger, "寿县", [], problems=[("示范村", "C3", "不是数字", "abc"), ("示范村", "C4", "空白")])
    assert bad.status == FAULTY and bad.kept_previous is True and bad.version == 2
    assert ledger.current_submission("寿县").id == good.id
    assert list(ledger.current_rows("示范村")["村"]) == ["甲"]
    stored = ledger.submissions(unit="寿县")[-1]
    assert stored.problem_count == 2 and stored.row_count == 0 and f"第{good.id}号" in stored.reason
    problems = ledger.problems(bad.id)
    assert [(p.cell, p.reason, p.value) for p in problems] == [("C3", "不是数字", "abc"), ("C4", "空白", None)]
    first_ever = _submit(ledger, "谢家集区", [], problems=[("示范村", "C3", "不是数字")])
    assert first_ever.status == FAULTY and first_ever.kept_previous is False
    assert ledger.current_submission("谢家集区") is None


def test_partial_problems_still_merge(ledger):
    sub = _submit(ledger, "寿县", [{"村": "甲"}], problems=[("示范村", "C4", "不是数字", "x")])
    assert sub.status == MERGED
    assert ledger.current_submission("寿县").problem_count == 1


def test_rejected_submission_changes_nothing(ledger):
    good = _submit(ledger, "凤台县", [{"村": "甲"}])
    with ledger.submission("中性.xlsx", _sha("x"), 10, "凤台县", None) as sub:
        sub.add_rows("示范村", [{"村": "假"}], [3])
        sub.reject("令牌属于寿县，文件声明为凤台县")
    assert sub.status == REJECTED
    assert ledger.current_submission("凤台县").id == good.id
    assert list(ledger.current_rows("示范村")["村"]) == ["甲"]
    stored = ledger.submissions()[-1]
    assert stored.status == REJECTED and stored.reason == "令牌属于寿县，文件声明为凤台县" and stored.row_count == 0


def test_exception_rolls_back_everything(ledger):
    _submit(ledger, "寿县", [{"村": "甲"}])
    before = (len(ledger.submissions()), len(ledger.changes()))
    with pytest.raises(RuntimeError):  # noqa: SIM117
        with ledger.submission("寿县.xlsx", _sha("y"), 10, "寿县", "寿县") as sub:
            sub.add_rows("示范村", [{"村": "乙"}], [3])
            sub.add_problem("示范村", "C3", "x")
            raise RuntimeError("断电")
    assert (len(ledger.submissions()), len(ledger.changes())) == before
    assert list(ledger.current_rows("示范村")["村"]) == ["甲"]
    # a failure inside the database transaction (bad issue id) also leaves nothing
    with pytest.raises(LedgerError, match="第 424242 号下发文件"):  # noqa: SIM117
        with ledger.submission("寿县.xlsx", _sha("z"), 10, "寿县", "寿县", issue_id=424242) as sub:
            sub.add_rows("示范村", [{"村": "丙"}], [3])
    assert len(ledger.submissions()) == before[0]
    assert list(ledger.current_rows("示范村")["村"]) == ["甲"]


def test_values_that_cannot_be_stored_are_refused(ledger):
    with pytest.raises(LedgerError, match="整数范围"):  # noqa: SIM117
        with ledger.submission("寿县.xlsx", "x", 1, "寿县", "寿县") as sub:
            sub.add_rows("示范村", [{"数": 10**400}], [3])
    with pytest.raises(LedgerError, match="有限数"):  # noqa: SIM117
        with ledger.submission("寿县.xlsx", "x", 1, "寿县", "寿县") as sub:
            sub.add_rows("示范村", [{"数": float("inf")}], [3])
    assert ledger.submissions() == []


def test_current_rows_provenance_and_types(ledger):
    r1 = ledger.new_round("2020-10")
    s1 = _submit(ledger, "寿县", [{"村": "甲", "数": 1, "金额": "12.50", "日期": "2020-10-01"},
                                 {"村": "乙", "数": None, "金额": "3", "日期": "2020-10-02"}])
    s2 = _submit(ledger, "凤台县", [{"村": "丙", "数": 7, "金额": "1", "日期": "x"}], file_name="凤.xlsx")
    _submit(ledger, "寿县", [{"名称": "培训"}], table="培训")
    frame = ledger.current_rows("示范村")
    assert list(frame.columns) == ["村", "数", "金额", "日期", "_unit", "_submission", "_row"]
    # a submission is a whole file: 寿县's later file (only 培训) supersedes its 示范村 rows as well
    assert list(frame["_unit"]) == ["凤台县"]
    assert len(ledger.current_rows("培训")) == 1
    frame = ledger.current_rows("示范村", round_id=r1.id, unit="凤台县")
    assert frame.to_dict("records") == [
        {"村": "丙", "数": 7, "金额": "1", "日期": "x", "_unit": "凤台县", "_submission": s2.id, "_row": 3}
    ]
    old = ledger.submission_rows(s1.id)
    assert list(old["_row"]) == [3, 4] and list(old["金额"]) == ["12.50", "3"]
    assert list(old["日期"]) == ["2020-10-01", "2020-10-02"]  # date-like text stays text
    assert pd.isna(old["数"].iloc[1])
    assert ledger.current_rows("无此表").empty


def test_mixed_types_in_a_column_are_kept(ledger):
    _submit(ledger, "寿县", [{"数": 1}, {"数": "一"}, {"数": 2.5}])
    assert list(ledger.current_rows("示范村")["数"]) == [1, "一", 2.5]


# ------------------------------------------------------------------------------------------ tokens


def test_tokens_verify_and_forgeries_fail(ledger):
    rnd = ledger.new_round("2020-10")
    shou = ledger.issue("寿县", "县区", "寿县.xlsx", _sha("a"))
    feng = ledger.issue("凤台县", "县区", "凤台县.xlsx", _sha("b"))
    assert shou.round_id == rnd.id and len(shou.token) == 32 and shou.token != feng.token
    assert ledger.verify_token(shou.token) == shou
    assert ledger.verify_token(shou.token.upper()).unit == "寿县"
    assert ledger.verify_token(feng.token).unit == "凤台县"  # another county's token names that county
    forged = ("0" if shou.token[0] != "0" else "1") + shou.token[1:]
    for bad in (forged, "", "zz", None, "'; DROP TABLE issues; --", shou.token[:-1]):
        assert ledger.verify_token(bad) is None
    with pytest.raises(LedgerError, match="县区.*部门"):
        ledger.issue("寿县", "乡镇", "x.xlsx", _sha("c"))
    # the secret lives in the ledger, not in the code: another ledger signs differently
    with ledger.engine.connect() as conn:
        secret = conn.exec_driver_sql("SELECT value FROM meta WHERE key = 'issue_secret'").scalar()
    assert len(bytes.fromhex(secret)) == 32


def test_a_token_edited_in_the_database_no_longer_verifies(ledger):
    issue = ledger.issue("寿县", "县区", "寿县.xlsx", _sha("a"))
    with ledger.engine.begin() as conn:  # someone moves the token to another county's row
        conn.execute(sa.text("UPDATE issues SET unit = '凤台县' WHERE id = :i"), {"i": issue.id})
    assert ledger.verify_token(issue.token) is None


def test_issue_file_records_the_hash_of_the_bytes_it_rendered_with_the_token_in_them(ledger):
    seen: list[str] = []

    def render(token: str) -> bytes:
        seen.append(token)
        return f"文件内容 {token}".encode()

    issue, data = ledger.issue_file("寿县", "县区", "寿县.xlsx", render)
    assert seen == [issue.token] and data == f"文件内容 {issue.token}".encode()
    assert issue.sha256 == hashlib.sha256(data).hexdigest()
    assert ledger.verify_token(issue.token) == issue == ledger.issues()[0]

    def broken(token: str) -> bytes:
        raise OSError("磁盘已满")

    with pytest.raises(OSError):
        ledger.issue_file("凤台县", "县区", "凤台县.xlsx", broken)
    assert [i.unit for i in ledger.issues()] == ["寿县"]  # nothing recorded for a file that was not made


# ------------------------------------------------------------------------------------------ mail


def test_mail_attempts_delivered_and_csv_export(ledger, tmp_path):
    ledger.record_mail("寿县", "shou@example.cn", "寿县.xlsx", "县区", "失败", detail="421 稍后再试")
    assert not ledger.delivered("寿县", "shou@example.cn", "寿县.xlsx")
    ledger.record_mail("寿县", "shou@example.cn", "寿县.xlsx", "县区", "不确定", message_id="<m1@x>")
    assert not ledger.delivered("寿县", "shou@example.cn", "寿县.xlsx")
    ledger.record_mail("寿县", "shou@example.cn", "寿县.xlsx", "县区", "已发送", message_id="<m1@x>")
    assert ledger.delivered("寿县", "shou@example.cn", "寿县.xlsx")
    assert not ledger.delivered("寿县", "other@example.cn", "寿县.xlsx")
    with pytest.raises(LedgerError, match="发送状态"):
        ledger.record_mail("寿县", "a@b", "f", "县区", "成功")
    assert [a.status for a in ledger.mail_attempts()] == ["失败", "不确定", "已发送"]
    path = tmp_path / "发送记录.csv"
    ledger.export_mail_csv(path)
    assert path.read_bytes().startswith(b"\xef\xbb\xbf")
    # Excel re-saves it as GBK; the ledger does not care: the next export rewrites it whole, in UTF-8
    text = path.read_text(encoding="utf-8-sig")
    path.write_bytes(text.encode("gbk"))
    ledger.record_mail("凤台县", "feng@example.cn", "凤台县.xlsx", "县区", "已发送")
    ledger.export_mail_csv(path)
    with open(path, encoding="utf-8-sig", newline="") as fh:
        table = list(csv.reader(fh))
    assert table[0][:4] == ["时间", "轮次", "单位", "邮箱"]
    assert [r[2] for r in table[1:]] == ["寿县", "寿县", "寿县", "凤台县"]
    assert table[1][7] == "421 稍后再试" and table[3][8] == "<m1@x>"
    assert ledger.delivered("寿县", "shou@example.cn", "寿县.xlsx")  # the CSV is never read back


# ------------------------------------------------------------------------------------------ history, diff, export


def test_history_and_diff(ledger):
    v1 = _submit(ledger, "寿县", [{"村": "甲", "数": 1}, {"村": "乙", "数": 2}, {"村": "丙", "数": 3}])
    v2 = _submit(ledger, "寿县", [{"村": "甲", "数": 1}, {"村": "乙", "数": 20}, {"村": "丙", "数": 3},
                                 {"村": "丁", "数": 4}])
    diff = ledger.diff(v1.id, v2.id)
    t = diff.tables["示范村"]
    assert (t.unchanged, t.changed, t.added, t.removed) == (2, 1, 1, 0)
    assert t.changed_examples == [({"村": "乙", "数": 2}, {"村": "乙", "数": 20})]
    assert t.added_examples == [{"村": "丁", "数": 4}]
    assert "修改1行" in diff.summary() and "新增1行" in diff.summary()
    back = ledger.diff(v2.id, v1.id).tables["示范村"]
    assert (back.changed, back.added, back.removed) == (1, 0, 1)
    assert ledger.diff(v1.id, v1.id).same
    assert [h.id for h in ledger.history("寿县")] == [v1.id, v2.id]
    with pytest.raises(LedgerError, match="第 999 号报送"):
        ledger.diff(v1.id, 999)


def test_export_csv_and_parquet_round_trip(ledger, tmp_path):
    _submit(ledger, "寿县", [{"村": "甲", "数": 1, "说明": "=1+1"}, {"村": "乙", "数": 2, "说明": None}])
    _submit(ledger, "凤台县", [{"村": "丙", "数": 3, "说明": "好"}])
    ledger.record_mail("寿县", "a@example.cn", "寿县.xlsx", "县区", "已发送")
    expected = ledger.current_rows("示范村")
    csvs = ledger.export(tmp_path / "csv")
    assert sorted(p.name for p in csvs) == ["发送记录.csv", "报送记录.csv", "示范村.csv"]
    back = pd.read_csv(tmp_path / "csv" / "示范村.csv", encoding="utf-8-sig")
    assert list(back["村"]) == list(expected["村"]) and list(back["数"]) == list(expected["数"])
    assert list(back["_unit"]) == ["寿县", "寿县", "凤台县"]
    subs = pd.read_csv(tmp_path / "csv" / "报送记录.csv", encoding="utf-8-sig")
    assert list(subs["状态"]) == ["已汇总", "已汇总"]
    pq = ledger.export(tmp_path / "pq", fmt="parquet")
    assert len(pq) == 3
    back = pd.read_parquet(tmp_path / "pq" / "示范村.parquet")
    pd.testing.assert_frame_equal(back, expected, check_dtype=False)
    mail = pd.read_parquet(tmp_path / "pq" / "发送记录.parquet")
    assert list(mail["状态"]) == ["已发送"]
    with pytest.raises(LedgerError, match="导出格式"):
        ledger.export(tmp_path, fmt="xlsx")


def test_change_log(ledger):
    ledger.log("手工备注", "测试")
    _submit(ledger, "寿县", [{"村": "甲"}])
    ledger.record_mail("寿县", "a@b.cn", "f.xlsx", "县区", "跳过")
    actions = [c.action for c in ledger.changes()]
    for action in ("升级台账结构", "手工备注", "新建报送轮次", "收到报送", "邮件发送"):
        assert action in actions
    assert "寿县" in next(c.detail for c in ledger.changes() if c.action == "收到报送")


# ------------------------------------------------------------------------------------------ concurrency


def _writer(url: str, unit: str, count: int, barrier) -> None:
    with open_ledger(url=url) as ledger:
        barrier.wait()
        for i in range(count):
            with ledger.submission(f"{unit}{i}.xlsx", "x", 1, unit, unit) as sub:
                sub.add_rows("示范村", [{"i": i, "j": j} for j in range(200)], list(range(200)))


def test_two_processes_writing_lose_no_submission(ledger_url):  # noqa: F811
    with open_ledger(url=ledger_url) as ledger:
        ledger.ensure_round()
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(2)
    procs = [ctx.Process(target=_writer, args=(ledger_url, unit, 15, barrier)) for unit in ("寿县", "凤台县")]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0]
    with open_ledger(url=ledger_url) as ledger:
        subs = ledger.submissions()
        assert len(subs) == 30
        for unit in ("寿县", "凤台县"):
            mine = [s for s in subs if s.unit == unit]
            assert [s.version for s in mine] == list(range(1, 16))
            assert [s.status for s in mine] == [SUPERSEDED] * 14 + [MERGED]
        frame = ledger.current_rows("示范村")
        assert len(frame) == 400 and set(frame["i"]) == {14}


def test_a_second_opener_migrates_concurrently(tmp_path):
    url = "sqlite:///" + str(tmp_path / "并发.台账.sqlite")
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(3)
    procs = [ctx.Process(target=_writer, args=(url, f"县{i}", 2, barrier)) for i in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0, 0]
    with open_ledger(url=url) as ledger:
        assert len(ledger.submissions()) == 6


def test_a_locked_sqlite_ledger_says_so(tmp_path, monkeypatch):
    from xl_ecom.ledger import store

    path = tmp_path / "锁.台账.sqlite"
    url = "sqlite:///" + str(path)
    open_ledger(url=url).close()
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    monkeypatch.setattr(store, "BUSY_TIMEOUT_MS", 200)
    try:
        with open_ledger(url=url) as ledger:  # noqa: SIM117
            with pytest.raises(LedgerError, match="另一个命令占用"):
                _submit(ledger, "寿县", [{"村": "甲"}])
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    with open_ledger(url=url) as ledger:
        assert _submit(ledger, "寿县", [{"村": "甲"}]).status == MERGED


def test_a_file_that_is_not_a_database(tmp_path):
    path = tmp_path / "坏.台账.sqlite"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(LedgerError, match="坏.台账.sqlite"):
        open_ledger(url="sqlite:///" + str(path))



# ------------------------------------------------------------------------------------------ kill -9

def _killed_writer(url: str, fd: int) -> None:
    """The child: writes submissions forever, reporting each id once its transaction has committed."""
    try:
        with open_ledger(url=url) as ledger:
            os.write(fd, b"ready\n")
            i = 0
            while True:
                unit = ("寿县", "凤台县", "田家庵区")[i % 3]
                with ledger.submission(f"{unit}{i}.xlsx", "x", 1, unit, unit) as sub:
                    rows = [{"i": i, "j": j, "名称": "村" * 20} for j in range(3000)]
                    sub.add_rows("示范村", rows, list(range(3000)))
                    sub.add_problem("示范村", "C3", "测试")
                os.write(fd, f"merged {sub.id}\n".encode())
                i += 1
    finally:
        os._exit(1)


def test_kill_9_while_writing_loses_no_reported_submission(ledger_url):  # noqa: F811
    import random
    import signal
    import time

    rng = random.Random(20201)
    reported: set[int] = set()
    with open_ledger(url=ledger_url) as ledger:
        ledger.ensure_round()
    for _ in range(16):
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(read_end)
            _killed_writer(ledger_url, write_end)
        os.close(write_end)
        with os.fdopen(read_end, "rb") as pipe:
            assert pipe.readline() == b"ready\n"
            time.sleep(rng.uniform(0.0, 0.5))
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            out = pipe.read().decode()
        reported |= {int(line.split()[1]) for line in out.splitlines() if line.startswith("merged")}
        with open_ledger(url=ledger_url) as ledger:
            subs = {s.id: s for s in ledger.submissions()}
            assert reported <= set(subs)
            current = [s for s in subs.values() if s.status == MERGED]
            assert len({s.unit for s in current}) == len(current)
            with ledger.engine.connect() as conn:
                counts = dict(conn.exec_driver_sql(
                    "SELECT submission_id, count(*) FROM rows GROUP BY submission_id").all())
                if ledger.is_sqlite:
                    assert conn.exec_driver_sql("PRAGMA integrity_check").scalar() == "ok"
            assert all(counts.get(i, 0) == s.row_count == 3000 for i, s in subs.items())
            assert len(ledger.current_rows("示范村")) == 3000 * len(current)
    assert len(reported) >= 4  # the kills landed both between and inside transactions


def test_the_migrations_ship_in_the_wheel(tmp_path):
    import subprocess
    import sys
    import zipfile

    from xl_ecom.frontends.bundle import copy_source_tree

    root = Path(__file__).resolve().parents[1]
    source = copy_source_tree(root, tmp_path / "src")  # no build/ in the checkout, none shared between workers
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", str(source), "--no-deps",
                           "-q", "-w", str(tmp_path)], capture_output=True, text=True, check=False, timeout=300)
    assert proc.returncode == 0, proc.stderr
    (wheel,) = tmp_path.glob("xl_ecom-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = {p.relative_to(root).as_posix() for p in (root / "xl_ecom/ledger/migrations").rglob("*")
               if p.is_file() and p.suffix in (".py", ".mako")}
    assert shipped and shipped <= names, shipped - names


def test_sqlite_on_a_network_share_is_refused(tmp_path):
    from xl_ecom.ledger.store import network_share

    mounts = ("/dev/vda1 / ext4 rw 0 0\n"
              "//server/科室 /mnt/share cifs rw 0 0\n"
              "nas:/export /mnt/nas\\040dir nfs4 rw 0 0\n"
              "/dev/vdb1 /mnt/share/local ext4 rw 0 0\n")
    assert network_share(Path("/mnt/share/目标任务分解表.台账.sqlite"), mounts) == "cifs"
    assert network_share(Path("/mnt/nas dir/a.sqlite"), mounts) == "nfs4"
    assert network_share(Path("/mnt/share/local/a.sqlite"), mounts) is None  # a local disk mounted inside
    assert network_share(Path("/mnt/shared/a.sqlite"), mounts) is None
    assert network_share(Path("//server/科室/a.sqlite"), "") == "网络共享路径"
    assert network_share(tmp_path / "a.sqlite") is None  # this machine's temp folder is local
    with pytest.raises(LedgerError, match=r"网络共享.*PostgreSQL"):
        open_ledger(url="sqlite://///server/科室/目标任务分解表.台账.sqlite")


def test_awkward_values_round_trip(ledger):
    awkward = [
        {"名称": "第一行\n第二行", "引号": '"双"\'单\'', "反斜杠": "C:\\路径\\", "表情": "🍑", "分隔": "\u2028\u2029\t"},
        {"名称": "=HYPERLINK(\"http://x\")", "引号": "", "反斜杠": None, "表情": "长" * 32767, "分隔": ","},
        {},
        {"布尔": True, "名称": "  前后空格  "},
    ]
    _submit(ledger, "寿县", awkward)
    frame = ledger.current_rows("示范村")
    assert len(frame) == 4 and list(frame["_row"]) == [3, 4, 5, 6]
    records = frame.drop(columns=["_unit", "_submission", "_row"]).to_dict("records")
    for stored, original in zip(records, awkward, strict=True):
        assert {k: v for k, v in stored.items() if not pd.isna(v)} == {k: v for k, v in original.items()
                                                                        if v is not None}
