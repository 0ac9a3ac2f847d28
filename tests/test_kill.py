"""kill -9 during collect and during refresh (issue #9), at random points of the busy window.

The CLI's ``main()`` runs in a forked child of the test process (the interpreter and its imports are
already loaded, so a run is its work alone, without a second of start-up), and the child gets SIGKILL
after a random delay spread over the length of an uninterrupted run, 20 points in all.  Afterwards:
the workbook is whole (every part's CRC checked and every XML part parsed and openpyxl opening it
after each kill), its VBA project and ribbon parts are byte-identical to before, no partial file or
stale lock blocks the next run (which must succeed), the ledger holds every submission collect
reported as merged before the kill, and every submission in the ledger is whole (its stored rows are
its row count: one transaction each).  Real SQLite ledger beside a real built workbook.  The entry
point ``python -m xl_ecom`` itself runs as a subprocess in test_cli.py and test_udfs_cli.py."""

from __future__ import annotations

import io
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
import traceback
import zipfile
from pathlib import Path

import openpyxl
import pytest
from lxml import etree

from xl_ecom.ledger import MERGED, open_ledger
from xl_ecom.ledger.lock import lock_path
from xl_ecom.ooxml import safeio
from xl_ecom.workflows import build, counties, layout
from xl_ecom.workflows.tables import table

KEPT_PARTS = ("xl/vbaProject.bin", "customUI/customUI14.xml")
KILLS_PER_TEST = 5  # 2 tests per command: 10 random points for collect, 10 for refresh
ROWS_PER_COUNTY = 60
MERGED_LINE = re.compile(r"^【已汇总】(?P<name>.+?)（(?P<county>[^，）]+)，第(?P<version>\d+)版）", re.M)


def command(*args: object) -> list[str]:
    return [str(a) for a in args]


def fork_cli(args: list[str], kill_after: float | None = None) -> tuple[str, str, int | None]:
    """Run the CLI's ``main(args)`` in a forked child, its output to files; SIGKILL it after
    ``kill_after`` seconds when it is still running.  Returns (stdout, stderr, exit code), the exit
    code None when it was killed."""
    import tempfile

    from xl_ecom.frontends import cli

    with tempfile.TemporaryDirectory() as tmp:
        out_path, err_path = Path(tmp) / "out", Path(tmp) / "err"
        pid = os.fork()
        if pid == 0:  # the child: the CLI, as python -m xl_ecom runs it, writing to the two files
            code = 70
            try:
                for fd, path in ((1, out_path), (2, err_path)):
                    os.dup2(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), fd)
                os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
                sys.stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), encoding="utf-8", write_through=True)
                sys.stderr = io.TextIOWrapper(io.FileIO(2, "w", closefd=False), encoding="utf-8", write_through=True)
                try:
                    code = cli.main(args)
                except SystemExit as exc:
                    code = exc.code if isinstance(exc.code, int) else 2
            except BaseException:  # noqa: BLE001 - reported through the output, which the test checks
                traceback.print_exc()
            finally:
                os._exit(code if isinstance(code, int) else 70)
        deadline = None if kill_after is None else time.monotonic() + kill_after
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                code: int | None = os.waitstatus_to_exitcode(status)
                break
            if deadline is not None and time.monotonic() >= deadline:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                code = None
                break
            time.sleep(0.002)
        out, err = out_path.read_text(encoding="utf-8"), err_path.read_text(encoding="utf-8")
    assert "Traceback" not in out + err, (out, err)
    return out, err, code


def run(*args: object) -> subprocess.CompletedProcess:
    out, err, code = fork_cli(command(*args))
    return subprocess.CompletedProcess(command(*args), code, out, err)


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    """A city workbook with its ledger and tokens issued, and every county's returned file filled in."""
    root = tmp_path_factory.mktemp("kill-template")
    city = root / "市级" / layout.WORKBOOK_NAME
    city.parent.mkdir()
    city.write_bytes(build.build_bytes())
    out = root / "下发"
    proc = run("counties", "--out", out, "--workbook", city)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    returned = root / "报回"
    returned.mkdir()
    t = table("T_SALES")
    for src in sorted((out / counties.SUBDIR).glob("*.xlsx")):
        wb = openpyxl.load_workbook(src)
        county = wb[counties.COUNTY_MARKER_SHEET][counties.COUNTY_CELL].value
        ws = wb[t.sheet]
        for i in range(ROWS_PER_COUNTY):
            row = [county, f"{county}电商企业{i:03d}", None, 11_000_000 + 1000 * i, None, None]
            for j, value in enumerate(row, start=1):
                safeio.write_cell_value(ws.cell(row=layout.INPUT_FIRST_ROW + i, column=j), value)
        wb.save(returned / src.name)
    return root


def copy_of(template: Path, dst: Path) -> tuple[Path, Path]:
    shutil.copytree(template, dst)
    return dst / "市级" / layout.WORKBOOK_NAME, dst / "报回"


def parts(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as z:
        return {n: z.read(n) for n in KEPT_PARTS if n in z.namelist()}


def timed(args: list[str]) -> float:
    started = time.perf_counter()
    out, err, code = fork_cli(args)
    assert code in (0, 1), out + err
    return time.perf_counter() - started


def kill_at(args: list[str], delay: float) -> tuple[str, int | None]:
    """Run ``args``, SIGKILL it after ``delay`` seconds; its stdout so far and its exit code when it
    finished before the kill (None when killed)."""
    out, err, code = fork_cli(args, kill_after=delay)
    # a run that ended by itself was not refused (no stale lock, no partial file in its way)
    assert code in (None, 0, 1), (code, out, err)
    return out, code


def check_after(city: Path, before: dict[str, bytes], merged_before_kill: list[tuple[str, str, int]]) -> None:
    """After each kill: the package is whole (every part's CRC, every XML part well-formed), openpyxl opens
    it, its VBA and ribbon are byte-identical, and the ledger holds what was reported."""
    with zipfile.ZipFile(city) as z:
        assert z.testzip() is None
        for name in z.namelist():
            if name.endswith((".xml", ".rels")):
                etree.fromstring(z.read(name), etree.XMLParser(resolve_entities=False, no_network=True))
    openpyxl.load_workbook(city, keep_vba=True).close()
    assert parts(city) == before, "VBA project or ribbon changed"
    with open_ledger(city) as ledger:
        subs = ledger.submissions()
        by_key = {(s.file_name, s.unit, s.version): s for s in subs}
        for name, county, version in merged_before_kill:
            assert (name, county, version) in by_key, f"{name} reported merged but not in the ledger"
        for s in subs:  # each submission whole: written in one transaction
            assert len(ledger.submission_rows(s.id)) == s.row_count, s


@pytest.fixture(scope="module")
def collect_length(template, tmp_path_factory) -> float:
    """The busy window of an uninterrupted collect on this machine now (measured once per module)."""
    city, folder = copy_of(template, tmp_path_factory.mktemp("measure-collect") / "copy")
    return timed(command("collect", folder, "--into", city))


@pytest.fixture(scope="module")
def refresh_length(template, tmp_path_factory) -> float:
    city, folder = copy_of(template, tmp_path_factory.mktemp("measure-refresh") / "copy")
    proc = run("collect", folder, "--into", city)
    assert proc.returncode in (0, 1), proc.stdout + proc.stderr
    return timed(command("refresh", city))


def trial_points(seed: int, length: float) -> list[float]:
    """Random kill times spread over the length of an uninterrupted run."""
    rnd = random.Random(seed)
    return [rnd.uniform(0.0, 1.0) * length for _ in range(KILLS_PER_TEST)]


@pytest.mark.parametrize("seed", range(2))
def test_kill_during_collect(template, collect_length, tmp_path, seed):
    """Five kills in a row on one copy (each run is the next run after the previous kill), then a run to
    the end: every county's file current once, its rows in the workbook, no lock left."""
    length = collect_length
    city, folder = copy_of(template, tmp_path / "run")
    before = parts(city)
    assert set(before) == set(KEPT_PARTS)
    reported: list[tuple[str, str, int]] = []
    for delay in trial_points(seed, length):
        out, _ = kill_at(command("collect", folder, "--into", city), delay)
        reported += [(m["name"], m["county"], int(m["version"])) for m in MERGED_LINE.finditer(out)]
        check_after(city, before, reported)
    proc = run("collect", folder, "--into", city)
    assert proc.returncode in (0, 1), proc.stdout + proc.stderr
    assert "已写入" in proc.stdout, proc.stdout
    check_after(city, before, reported)
    with open_ledger(city) as ledger:
        current = [s for s in ledger.submissions() if s.status == MERGED]
    assert sorted(s.unit for s in current) == sorted({s.unit for s in current})  # one current version each
    assert len(current) == len(list(folder.glob("*.xlsx")))
    sales = openpyxl.load_workbook(city, read_only=True)[table("T_SALES").sheet]
    n = sum(1 for r in sales.iter_rows(min_row=layout.INPUT_FIRST_ROW, max_col=1, values_only=True) if r[0])
    assert n == ROWS_PER_COUNTY * len(current)
    assert not lock_path(city).exists()
    assert not list(city.parent.glob(f"{safeio.TEMP_PREFIX}*")), "a killed run's temporary file was left"


@pytest.mark.parametrize("seed", range(2))
def test_kill_during_refresh(template, refresh_length, tmp_path, seed):
    """Five kills in a row on one collected copy, then a run to the end."""
    city, folder = copy_of(template, tmp_path / "run")
    proc = run("collect", folder, "--into", city)
    assert proc.returncode in (0, 1), proc.stdout + proc.stderr
    before = parts(city)
    length = refresh_length
    for delay in trial_points(100 + seed, length):
        kill_at(command("refresh", city), delay)
        check_after(city, before, [])
    proc = run("refresh", city)  # a stale lock (dead pid) or a left temporary file does not block it
    assert proc.returncode == 0, proc.stdout + proc.stderr
    check_after(city, before, [])
    assert not lock_path(city).exists()
    assert not list(city.parent.glob(f"{safeio.TEMP_PREFIX}*")), "a killed run's temporary file was left"
    detail = openpyxl.load_workbook(city, read_only=True)["奖补明细"]
    names = {c for row in detail.iter_rows(values_only=True) for c in row if isinstance(c, str)}
    assert "寿县电商企业000" in names
