"""kill -9 during collect and during refresh (issue #9), at random points of the busy window.

The CLI runs in a subprocess and gets SIGKILL after a random delay spread over the busy window of an
uninterrupted run (measured: from the end of the interpreter's start-up to the end of the run), 20
points in all.  Afterwards: the workbook is whole (every part's CRC checked and every XML part parsed
and openpyxl opening it after each kill), its VBA project and
ribbon parts are byte-identical to before, no partial file or stale lock blocks the next run (which
must succeed), the ledger holds every submission collect reported as merged before the kill, and
every submission in the ledger is whole (its stored rows are its row count: one transaction each).
Real SQLite ledger beside a real built workbook."""

from __future__ import annotations

import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
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
    return [sys.executable, "-m", "xl_ecom", *map(str, args)]


def run(*args: object) -> subprocess.CompletedProcess:
    proc = subprocess.run(command(*args), capture_output=True, text=True, timeout=300, check=False)
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stdout + proc.stderr
    return proc


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
    proc = subprocess.run(args, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode in (0, 1), proc.stdout + proc.stderr
    return time.perf_counter() - started


def kill_at(args: list[str], delay: float) -> tuple[str, int | None]:
    """Run ``args``, SIGKILL it after ``delay`` seconds; its stdout so far and its exit code when it
    finished before the kill (None when killed)."""
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        proc.wait(timeout=delay)
        code: int | None = proc.returncode
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        code = None
    out, err = proc.communicate(timeout=60)
    assert "Traceback" not in (out or "") + (err or ""), (out, err)
    # a run that ended by itself was not refused (no stale lock, no partial file in its way)
    assert code in (None, 0, 1), (code, out, err)
    return out or "", code


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


@pytest.fixture(scope="module")
def startup() -> float:
    """How long ``python -m xl_ecom`` takes to start (imports, parser) before a command does anything."""
    return min(timed(command("--version")) for _ in range(2))


def trial_points(seed: int, start: float, length: float) -> list[float]:
    """Random kill times spread over the command's busy window, from the end of start-up to its end."""
    rnd = random.Random(seed)
    start = min(start, 0.8 * length)
    return [start + rnd.uniform(0.0, 1.0) * (length - start) for _ in range(KILLS_PER_TEST)]


@pytest.mark.parametrize("seed", range(2))
def test_kill_during_collect(template, collect_length, startup, tmp_path, seed):
    """Five kills in a row on one copy (each run is the next run after the previous kill), then a run to
    the end: every county's file current once, its rows in the workbook, no lock left."""
    length = collect_length
    city, folder = copy_of(template, tmp_path / "run")
    before = parts(city)
    assert set(before) == set(KEPT_PARTS)
    reported: list[tuple[str, str, int]] = []
    for delay in trial_points(seed, startup, length):
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
def test_kill_during_refresh(template, refresh_length, startup, tmp_path, seed):
    """Five kills in a row on one collected copy, then a run to the end."""
    city, folder = copy_of(template, tmp_path / "run")
    proc = run("collect", folder, "--into", city)
    assert proc.returncode in (0, 1), proc.stdout + proc.stderr
    before = parts(city)
    length = refresh_length
    for delay in trial_points(100 + seed, startup, length):
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
