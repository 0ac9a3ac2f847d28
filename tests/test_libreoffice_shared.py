"""tests/libreoffice.py: each file's bytes go through LibreOffice once per run, in as few soffice processes
as it can, with this process's own profile; a real soffice recalculates every one of them."""

from __future__ import annotations

import os

import openpyxl
import pytest

import libreoffice


def _book(path, a1: int) -> None:
    wb = openpyxl.Workbook()
    wb.active["A1"] = a1
    wb.active["A2"] = "=A1*2+1"
    wb.save(path)


def _a2(path) -> int:
    return openpyxl.load_workbook(path, data_only=True).active["A2"].value


def test_same_bytes_convert_once_and_every_file_is_recalculated(tmp_path):
    one, two, same = tmp_path / "one.xlsx", tmp_path / "two.xlsx", tmp_path / "same_as_one.xlsx"
    # numbers no other test converts, so the run's cache has not seen these bytes
    _book(one, 7_000_001 + os.getpid())
    _book(two, 8_000_001 + os.getpid())
    same.write_bytes(one.read_bytes())
    before = dict(libreoffice.stats)

    out = libreoffice.recalculated([one, two, same], tmp_path / "a")
    assert [p.name for p in out] == ["one.xlsx", "two.xlsx", "same_as_one.xlsx"]
    assert [_a2(p) for p in out] == [2 * (7_000_001 + os.getpid()) + 1, 2 * (8_000_001 + os.getpid()) + 1,
                                     2 * (7_000_001 + os.getpid()) + 1]
    assert libreoffice.stats["runs"] == before["runs"] + 1  # one soffice process for the batch
    assert libreoffice.stats["converted"] == before["converted"] + 2  # the copy was not converted again

    again = libreoffice.recalculated([two], tmp_path / "b")
    assert _a2(again[0]) == 2 * (8_000_001 + os.getpid()) + 1
    assert libreoffice.stats["runs"] == before["runs"] + 1  # shared, not converted again


def test_files_sharing_a_stem_go_to_separate_processes(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "y").mkdir()
    a, b = tmp_path / "x" / "寿县.xlsx", tmp_path / "y" / "寿县.xlsx"
    _book(a, 9_100_001 + os.getpid())
    _book(b, 9_200_001 + os.getpid())
    before = dict(libreoffice.stats)
    (out_a,) = libreoffice.recalculated([a], tmp_path / "oa")
    (out_b,) = libreoffice.recalculated([b], tmp_path / "ob")
    assert (_a2(out_a), _a2(out_b)) == (2 * (9_100_001 + os.getpid()) + 1, 2 * (9_200_001 + os.getpid()) + 1)
    assert libreoffice.stats["converted"] == before["converted"] + 2
    with pytest.raises(AssertionError, match="same output"):
        libreoffice.recalculated([a, b], tmp_path / "clash")


def test_the_profile_is_this_process_own(tmp_path_factory):
    _, profile = libreoffice._dirs()
    assert profile.is_relative_to(tmp_path_factory.getbasetemp())  # under xdist: popen-gwN, one per worker
    assert (profile / "user").is_dir()  # LibreOffice really ran with it


def test_a_cached_result_is_recalculated_not_trusted(tmp_path):
    """Generated files carry cached results (<v>) for previewers; LibreOffice must still recompute every
    formula (its default for .xlsx is to keep cached results), or the comparisons with the engine would
    compare the engine with itself."""
    import zipfile

    src = tmp_path / "src.xlsx"
    _book(src, 9_000_001 + os.getpid())
    wrong = tmp_path / "wrong_cache.xlsx"
    with zipfile.ZipFile(src) as a, zipfile.ZipFile(wrong, "w") as b:
        for name in a.namelist():
            data = a.read(name)
            if name == "xl/worksheets/sheet1.xml":
                data = data.replace(b"<f>A1*2+1</f><v></v>", b"<f>A1*2+1</f><v>-1</v>")
                assert b"<v>-1</v>" in data
            b.writestr(name, data)
    (out,) = libreoffice.recalculated([wrong], tmp_path / "lo")
    assert _a2(out) == (9_000_001 + os.getpid()) * 2 + 1
