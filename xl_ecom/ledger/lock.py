"""One writer at a time: a lock file beside the workbook, and the lock files Office keeps.

``with workbook_lock(path, "汇总县区报表"):`` refuses (:class:`WorkbookBusyError`, a Chinese
message naming who holds it) while

- another xl-ecom command holds the workbook: the lock file ``.~xl-ecom.<name>.lock`` beside it,
  created with ``O_CREAT | O_EXCL`` (so exactly one process creates it), holds that command's pid,
  host, user, command and start time as JSON; or
- Excel, WPS or LibreOffice has the file open: their own lock files ``~$<name>`` and
  ``.~lock.<name>#`` (:func:`xl_ecom.ooxml.safeio.lock_files`).

A lock whose process is gone (killed, crashed, the PC restarted) is stale: when it was taken on
this host and its pid no longer runs, the next command removes it and goes on. A lock from another
host (a workbook on a shared folder) is never broken automatically: the message names the host,
and the clerk deletes the file once that command has surely stopped.

The lock is re-entrant within one process (a command that calls another workflow holding the same
workbook does not refuse itself), and released only by the process that holds it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import getpass
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from xl_ecom.common.errors import XlEcomError
from xl_ecom.common.processes import pid_alive
from xl_ecom.ooxml import safeio

#: A lock file this young that cannot be read yet is being written (a crash between create and
#: write leaves an empty one, which is stale once older than this).
UNREADABLE_GRACE_SECONDS = 10.0


class WorkbookBusyError(XlEcomError):
    """Another command, or Excel/WPS/LibreOffice, has the workbook (the message is Chinese)."""


@dataclass(frozen=True)
class Holder:
    """Who holds a workbook's lock."""

    pid: int
    host: str
    user: str
    command: str
    since: str  # local time, YYYY-mm-dd HH:MM:SS
    token: str  # unique per acquisition: release removes only its own file

    def describe(self) -> str:
        return f"{self.user or '某用户'}在计算机“{self.host}”上运行的“{self.command}”（进程号 {self.pid}，{self.since} 开始）"


def lock_path(path: str | os.PathLike) -> Path:
    """The lock file of the workbook ``path``: ``.~xl-ecom.<name>.lock`` in the same folder."""
    path = Path(path)
    return path.with_name(f".~xl-ecom.{path.name}.lock")


def _host() -> str:
    return socket.gethostname() or "?"


def read_holder(lock: Path) -> Holder | None:
    """The holder recorded in ``lock``; None when it is missing, empty or not ours to read."""
    try:
        data = json.loads(lock.read_text(encoding="utf-8"))
        return Holder(
            pid=int(data["pid"]),
            host=str(data["host"]),
            user=str(data.get("user", "")),
            command=str(data.get("command", "")),
            since=str(data.get("since", "")),
            token=str(data.get("token", "")),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _is_stale(lock: Path, holder: Holder | None) -> bool:
    if holder is None:
        try:
            age = time.time() - lock.stat().st_mtime
        except FileNotFoundError:
            return True
        return age > UNREADABLE_GRACE_SECONDS
    return holder.host == _host() and not pid_alive(holder.pid)


def _break_stale(lock: Path, holder: Holder | None) -> None:
    """Remove a stale lock, unless another process replaced it meanwhile (then it is put back)."""
    aside = lock.with_name(f"{lock.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.stale")
    try:
        os.replace(lock, aside)
    except FileNotFoundError:
        return  # another process broke it first
    taken = read_holder(aside)
    if (taken is None and holder is None) or (taken is not None and holder is not None and taken.token == holder.token):
        aside.unlink(missing_ok=True)
        return
    # what we moved aside is a fresh lock another process took after our look: give it back
    try:
        os.link(aside, lock)
    except OSError:
        pass
    aside.unlink(missing_ok=True)


def _refuse_if_open_in_office(path: Path, command: str) -> None:
    found = safeio.lock_files(path)
    if found:
        raise WorkbookBusyError(
            f"“{path.name}”正被 Excel、WPS 或 LibreOffice 打开（发现其锁定文件“{found[0].name}”），"
            f"“{command}”未执行。请保存并关闭该工作簿后重试；如确认没有打开，可删除该锁定文件。"
        )


_held: dict[Path, tuple[Holder, int]] = {}
_held_guard = threading.Lock()


def _acquire(path: Path, command: str) -> Holder:
    lock = lock_path(path)
    me = Holder(
        pid=os.getpid(),
        host=_host(),
        user=_user(),
        command=command,
        since=dt.datetime.now().strftime("%Y-%m-%d %H:%M:%S"),
        token=uuid.uuid4().hex,
    )
    for _ in range(5):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = read_holder(lock)
            if _is_stale(lock, holder):
                _break_stale(lock, holder)
                continue
            if holder is None:
                raise WorkbookBusyError(
                    f"“{path.name}”正由另一个命令使用（锁文件“{lock.name}”刚刚创建），“{command}”未执行。请稍后重试。"
                ) from None
            raise WorkbookBusyError(
                f"“{path.name}”正由{holder.describe()}使用，“{command}”未执行。请等它完成后重试；"
                f"如确认它已不在运行，可删除锁文件“{lock}”。"
            ) from None
        except OSError as exc:
            raise WorkbookBusyError(
                f"无法在“{path.parent}”创建锁文件“{lock.name}”（{exc.strerror or exc}），“{command}”未执行。"
            ) from None
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(asdict(me), fh, ensure_ascii=False)
                fh.flush()
                os.fsync(fh.fileno())
        except OSError as exc:
            lock.unlink(missing_ok=True)
            raise WorkbookBusyError(f"无法写入锁文件“{lock}”（{exc.strerror or exc}），“{command}”未执行。") from None
        return me
    raise WorkbookBusyError(f"“{path.name}”的锁文件“{lock}”反复被其他命令占用，“{command}”未执行。请稍后重试。")


def _user() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError, ImportError):
        return ""


def _release(path: Path, me: Holder) -> None:
    lock = lock_path(path)
    holder = read_holder(lock)
    if holder is not None and holder.token == me.token:
        lock.unlink(missing_ok=True)


@contextlib.contextmanager
def workbook_lock(path: str | os.PathLike, command: str, *, office_locks: bool = True) -> Iterator[Holder]:
    """Hold the workbook ``path`` for ``command`` (its Chinese name, shown to whoever is refused).

    Refuses with :class:`WorkbookBusyError` while another command holds it or an Office program
    has it open; yields the :class:`Holder` written into the lock file.

    ``office_locks=False`` ignores only the Office programs' lock files (``~$<name>``,
    ``.~lock.<name>#``): for a ribbon button, whose own Excel holds the workbook open and which
    writes the ledger, not the file. Another xl-ecom command's lock still refuses."""
    path = Path(path).absolute()
    with _held_guard:
        if path in _held:
            holder, depth = _held[path]
            _held[path] = (holder, depth + 1)
            nested = True
        else:
            nested = False
    if nested:
        try:
            yield holder
        finally:
            with _held_guard:
                holder, depth = _held[path]
                _held[path] = (holder, depth - 1)
        return
    if office_locks:
        _refuse_if_open_in_office(path, command)
    me = _acquire(path, command)
    with _held_guard:
        _held[path] = (me, 0)
    try:
        yield me
    finally:
        with _held_guard:
            _held.pop(path, None)
        _release(path, me)
