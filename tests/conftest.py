from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

#: The plan text the tests compare plan.yaml with: the copy inside the repository.
SOURCE = ROOT / "xl_ecom" / "policy" / "source.txt"
#: The originals beside the repository (CI lays shared/ there); when present the copies must equal them.
SHARED = ROOT.parent / "shared"


@pytest.fixture(scope="session")
def source_text() -> str:
    assert SOURCE.exists(), f"the plan document is missing: {SOURCE}"
    return SOURCE.read_text(encoding="utf-8")


@pytest.fixture(scope="session")
def plan():
    from xl_ecom.policy import load_plan

    return load_plan()
