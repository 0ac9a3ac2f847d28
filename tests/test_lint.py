"""ruff and mypy, configured in pyproject.toml, find nothing (the CI runs these tests with the rest).

The same commands by hand, from the repository root:
    ruff check xl_ecom tests bench
    mypy xl_ecom
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_ruff_finds_nothing():
    proc = _run(["ruff", "check", "--no-cache", "--output-format", "concise", "xl_ecom", "tests", "bench"])
    assert proc.returncode == 0, f"ruff check xl_ecom tests bench:\n{proc.stdout}{proc.stderr}"


def test_mypy_finds_nothing(tmp_path):
    # the cache goes to a temporary folder: the test writes nothing into the repository
    proc = _run(["mypy", "--cache-dir", str(tmp_path / "mypy"), "xl_ecom"])
    assert proc.returncode == 0, f"mypy xl_ecom:\n{proc.stdout}{proc.stderr}"
