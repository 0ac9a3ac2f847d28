"""The repository carries its own copies of the plan text and the ribbon schema."""

from __future__ import annotations

import hashlib

from conftest import ROOT, SHARED, SOURCE

from xl_ecom.policy.check import default_source_path

SCHEMA = ROOT / "tests" / "fixtures" / "customui14.xsd"
#: sha256 of the plan text as issued (shared/policy/农村电商提质增效工作方案.txt).
SOURCE_SHA256 = hashlib.sha256(SOURCE.read_bytes()).hexdigest() if SOURCE.exists() else ""
EXPECTED_SOURCE_SHA256 = "cf10438d745dce8d9bf18916cd14a0a61e9ea63b3aa1a15fd47437cef03edd0d"


def test_plan_text_copy_is_the_issued_text():
    assert SOURCE.exists()
    assert SOURCE_SHA256 == EXPECTED_SOURCE_SHA256
    original = SHARED / "policy" / "农村电商提质增效工作方案.txt"
    if original.exists():
        assert original.read_bytes() == SOURCE.read_bytes()


def test_schema_copy_equals_the_shared_schema_when_present():
    assert SCHEMA.exists() and b"customUI" in SCHEMA.read_bytes()
    original = SHARED / "schemas" / "customui14.xsd"
    if original.exists():
        assert original.read_bytes() == SCHEMA.read_bytes()


def test_check_finds_the_packaged_text_without_shared():
    assert default_source_path() == SOURCE
