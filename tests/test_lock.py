"""One writer at a time: the workbook lock beside the city workbook, and Office's lock files.

Real processes: a second process is refused while the first holds the lock; a holder killed with
SIGKILL leaves a stale lock that the next command recovers; `xl-ecom build` is refused the same way."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time

import pytest

from xl_ecom.frontends import cli
from xl_ecom.ledger import lock
from xl_ecom.workflows import layout

HOLDER = textwrap.dedent(
    """
    import sys
    from xl_ecom.ledger.lock import workbook_lock
    with workbook_lock(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "汇总县区报表") as me:
        print(me.pid, flush=True)
        sys.stdin.read()  # hold until the parent closes stdin (or kills us)
    """
)


def start_holder(path, command: str = "汇总县区报表"):
    child = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(path), command], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    line = child.stdout.readline()
    assert line.strip() == str(child.pid), "the holder did not take the lock"
    return child


@pytest.fixture
def city(tmp_path):
    path = tmp_path / layout.WORKBOOK_NAME
    path.write_bytes(b"workbook")
    return path


def test_a_second_process_is_refused_with_who_holds_it(city):
    child = start_holder(city)
    try:
        with pytest.raises(lock.WorkbookBusyError) as caught, lock.workbook_lock(city, "刷新"):
            pytest.fail("the lock was taken twice")
        text = str(caught.value)
        assert "汇总县区报表" in text and str(child.pid) in text and socket.gethostname() in text
        assert "刷新" in text and "未执行" in text
        holder = lock.read_holder(lock.lock_path(city))
        assert holder.pid == child.pid and holder.command == "汇总县区报表"
    finally:
        child.stdin.close()
        child.wait(timeout=30)
    assert not lock.lock_path(city).exists()  # released by its holder
    with lock.workbook_lock(city, "刷新") as me:
        assert me.pid == os.getpid()


def test_build_through_the_cli_is_refused_while_another_command_holds_the_workbook(city, capsys):
    child = start_holder(city)
    try:
        assert cli.main(["build", "--out", str(city)]) == 2
        err = capsys.readouterr().err
        assert "汇总县区报表" in err and str(child.pid) in err and "Traceback" not in err
        assert city.read_bytes() == b"workbook"
    finally:
        child.stdin.close()
        child.wait(timeout=30)


def test_collect_through_the_cli_is_refused_while_refresh_holds_the_workbook(city, tmp_path, capsys):
    """collect takes the lock before it opens the ledger: nothing is recorded, the workbook untouched."""
    folder = tmp_path / "报回"
    folder.mkdir()
    (folder / "寿县.xlsx").write_bytes(b"not read")
    child = start_holder(city, "刷新")
    try:
        assert cli.main(["collect", str(folder), "--into", str(city)]) == 2
        out = capsys.readouterr()
        text = out.out + out.err
        assert "刷新" in text and str(child.pid) in text and "Traceback" not in text
        assert city.read_bytes() == b"workbook"
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted([city.name, "报回", lock.lock_path(city).name])
    finally:
        child.stdin.close()
        child.wait(timeout=30)


def test_a_killed_holder_leaves_a_stale_lock_that_is_recovered(city):
    child = start_holder(city)
    os.kill(child.pid, signal.SIGKILL)  # our own child
    child.wait(timeout=30)
    stale = lock.read_holder(lock.lock_path(city))
    assert stale is not None and stale.pid == child.pid  # it is still there
    with lock.workbook_lock(city, "刷新") as me:
        assert lock.read_holder(lock.lock_path(city)).token == me.token
    assert not lock.lock_path(city).exists()
    assert [p.name for p in city.parent.iterdir()] == [city.name]  # nothing left aside


def test_a_lock_from_another_host_is_never_broken(city):
    path = lock.lock_path(city)
    path.write_text(json.dumps({"pid": 1, "host": "县区办公室-PC", "user": "李四", "command": "发送邮件",
                                "since": "2020-07-01 09:00:00", "token": "x"}), encoding="utf-8")
    with pytest.raises(lock.WorkbookBusyError) as caught, lock.workbook_lock(city, "刷新"):
        pass
    assert "县区办公室-PC" in str(caught.value) and "李四" in str(caught.value) and "发送邮件" in str(caught.value)
    assert str(path) in str(caught.value)  # says which file to delete once that command has stopped
    assert path.exists()


def test_an_unreadable_lock_is_busy_while_young_and_stale_when_old(city):
    path = lock.lock_path(city)
    path.write_bytes(b"")
    with pytest.raises(lock.WorkbookBusyError, match="刚刚创建"), lock.workbook_lock(city, "刷新"):
        pass
    old = time.time() - lock.UNREADABLE_GRACE_SECONDS - 5
    os.utime(path, (old, old))
    with lock.workbook_lock(city, "刷新"):
        assert lock.read_holder(path).pid == os.getpid()


@pytest.mark.parametrize("office_lock", ["~$" + layout.WORKBOOK_NAME, ".~lock." + layout.WORKBOOK_NAME + "#"])
def test_a_workbook_open_in_excel_wps_or_libreoffice_is_refused(city, office_lock):
    (city.parent / office_lock).write_bytes(b"owner")
    with pytest.raises(lock.WorkbookBusyError) as caught, lock.workbook_lock(city, "汇总县区报表"):
        pass
    assert office_lock in str(caught.value) and "关闭" in str(caught.value)
    assert not lock.lock_path(city).exists()


def test_the_lock_is_reentrant_in_one_process_and_released_once(city):
    with lock.workbook_lock(city, "生成工作簿") as outer:
        with lock.workbook_lock(city, "刷新") as inner:
            assert inner == outer
        assert lock.lock_path(city).exists()
    assert not lock.lock_path(city).exists()


def test_an_error_inside_releases_the_lock(city):
    with pytest.raises(RuntimeError), lock.workbook_lock(city, "刷新"):
        raise RuntimeError("boom")
    assert not lock.lock_path(city).exists()


def test_a_dead_pid_on_this_host_is_not_alive():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait(timeout=30)
    assert not lock.pid_alive(child.pid)
    assert lock.pid_alive(os.getpid())


def test_office_locks_false_ignores_only_the_office_lock_files(city):
    """A ribbon button runs inside the Excel that holds the workbook open: its ``~$`` file does not
    refuse it, another xl-ecom command's lock still does."""
    office = city.parent / ("~$" + city.name)
    office.write_bytes(b"owner")
    with pytest.raises(lock.WorkbookBusyError):
        with lock.workbook_lock(city, "催报"):
            pass
    with lock.workbook_lock(city, "催报", office_locks=False) as me:
        assert lock.read_holder(lock.lock_path(city)).token == me.token  # the xl-ecom lock is taken
    assert not lock.lock_path(city).exists() and office.exists()  # Excel's own file is left alone
    office.unlink()  # the holder is a plain command: it would refuse the open workbook itself
    child = start_holder(city)
    office.write_bytes(b"owner")
    try:
        with pytest.raises(lock.WorkbookBusyError) as caught, lock.workbook_lock(city, "催报", office_locks=False):
            pytest.fail("the xl-ecom lock was taken twice")
        assert "汇总县区报表" in str(caught.value) and str(child.pid) in str(caught.value)
    finally:
        child.stdin.close()
        child.wait(timeout=30)
