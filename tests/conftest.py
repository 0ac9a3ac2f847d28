from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

SOURCE = ROOT.parent / "shared" / "policy" / "农村电商提质增效工作方案.txt"


@pytest.fixture(scope="session")
def source_text() -> str:
    assert SOURCE.exists(), f"the plan document is missing: {SOURCE}"
    return SOURCE.read_text(encoding="utf-8")


@pytest.fixture(scope="session")
def plan():
    from xl_ecom.policy import load_plan

    return load_plan()
