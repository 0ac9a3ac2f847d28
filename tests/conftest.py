from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

#: The plan text the tests compare plan.yaml with: the copy inside the repository.
SOURCE = ROOT / "xl_ecom" / "policy" / "source.txt"
#: The originals beside the repository (CI lays shared/ there); when present the copies must equal them.
SHARED = ROOT.parent / "shared"

#: Test modules by measured cost, heaviest first (2 workers, 2026-12-02, 877 tests: collect_ledger 22 % of
#: the suite's time, collect 12 %, cli 7 %, counties 6 %, ...).  pytest-xdist (--dist loadfile,
#: --no-loadscope-reorder in pyproject) hands whole modules to the workers in collection order, so starting
#: with the long ones keeps both workers busy to the end.  Order only: every test still runs, and unlisted
#: modules follow in their usual order.
HEAVY_FIRST = (
    "test_collect_ledger.py",
    "test_collect.py",
    "test_cli.py",
    "test_counties.py",
    "test_cycle.py",
    "test_ledger.py",
    "test_hardening.py",
    "test_native_edge.py",
    "test_refresh.py",
    "test_setup_excel.py",
    "test_macros.py",
    "test_lint.py",
    "test_mail.py",
    "test_workbook_libreoffice.py",
    "test_bundle.py",
    "test_upgrade.py",
    "test_report.py",
    "test_roundtrip.py",
    "test_udfs_cli.py",
    "test_validate.py",
    "test_build.py",
)


def pytest_collection_modifyitems(session, config, items):
    rank = {name: i for i, name in enumerate(HEAVY_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: each module keeps its order


@pytest.fixture(scope="session", autouse=True)
def _libreoffice_run(tmp_path_factory):
    """LibreOffice: one conversion cache for the whole run, one profile for each process.

    Under pytest-xdist each worker's base temporary directory lies inside the run's, so the cache is
    shared by all workers of this run and by no other run; the profile is the worker's own."""
    import libreoffice

    base = tmp_path_factory.getbasetemp()
    run = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    libreoffice.configure(run / "libreoffice-cache", base / "libreoffice-profile")
    yield
    libreoffice.save_stats()


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """One line on what LibreOffice did in this run (under xdist: all workers together)."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        return
    import libreoffice

    try:  # the run's base temporary directory, as pytest-xdist finds it for its workers
        cache = config._tmp_path_factory.getbasetemp() / "libreoffice-cache"
    except (AttributeError, OSError):
        return
    if not cache.is_dir():
        return
    s = libreoffice.run_stats(cache)
    if s["runs"]:
        terminalreporter.write_line(
            f"LibreOffice：{s['runs']} 次 soffice 打开并重算 {s['converted']} 个文件；"
            f"另有 {s['shared']} 个文件与已转换的内容相同，共用其结果"
        )


@pytest.fixture(scope="session")
def source_text() -> str:
    assert SOURCE.exists(), f"the plan document is missing: {SOURCE}"
    return SOURCE.read_text(encoding="utf-8")


@pytest.fixture(scope="session")
def plan():
    from xl_ecom.policy import load_plan

    return load_plan()
