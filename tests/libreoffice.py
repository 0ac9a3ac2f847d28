"""LibreOffice headless for tests: recalculate workbooks and render PDFs.

Tests that use it FAIL when LibreOffice is missing (CI installs it); they never skip.

Each conversion is shared within one test run.  A file's bytes are hashed, and a (hash, format) pair is
converted once: later requests for the same bytes, from any test, module or pytest-xdist worker of the
same run, get a copy of that result.  The run's cache lives under pytest's base temporary directory
(the one all xdist workers of a run share) and is written by atomic renames, so a worker never reads a
half-written file.  Nothing is kept from one run to the next: every run's LibreOffice really opens and
recalculates every file the tests check.

Each process (so each xdist worker) has its own LibreOffice profile (``-env:UserInstallation``).  Two
soffice processes on one profile would not run side by side: the second hands its files to the first
and may return before they are written.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

FILTERS = {"xlsx": "xlsx:Calc MS Excel 2007 XML", "pdf": "pdf:calc_pdf_Export"}

_cache_dir: Path | None = None
_profile: Path | None = None
#: how many files this process handed to LibreOffice, and how many soffice processes it started
stats = {"converted": 0, "shared": 0, "runs": 0}


def configure(cache_dir: Path, profile: Path) -> None:
    """Set the run's shared cache and this process's own profile (tests/conftest.py does, per session)."""
    global _cache_dir, _profile
    _cache_dir, _profile = Path(cache_dir), Path(profile)
    _cache_dir.mkdir(parents=True, exist_ok=True)


def save_stats() -> None:
    """Leave this process's counts beside the run's cache, for the run's summary line."""
    if _cache_dir is not None and any(stats.values()):
        (_cache_dir / f"stats-{os.getpid()}.json").write_text(json.dumps(stats), encoding="utf-8")


def run_stats(cache_dir: Path) -> dict[str, int]:
    """The counts of every process of a run, added up."""
    total = dict.fromkeys(stats, 0)
    for f in Path(cache_dir).glob("stats-*.json"):
        for k, v in json.loads(f.read_text(encoding="utf-8")).items():
            total[k] = total.get(k, 0) + v
    return total


def _dirs() -> tuple[Path, Path]:
    global _cache_dir, _profile
    if _cache_dir is None or _profile is None:  # used outside pytest: a private cache and profile
        base = Path(tempfile.mkdtemp(prefix="xl-ecom-lo-"))
        configure(base / "cache", base / "profile")
    assert _cache_dir is not None and _profile is not None
    return _cache_dir, _profile


def soffice() -> str:
    exe = shutil.which("soffice") or shutil.which("libreoffice")
    if not exe:
        raise AssertionError("LibreOffice (soffice) is not installed: apt-get install -y libreoffice-calc-nogui")
    return exe


def _digest(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


#: the profile's settings: recalculate every formula on loading (Excel 2007+ and ODF files).  LibreOffice's
#: default for .xlsx is "never recalculate": it would keep the cached results the generated files carry
#: and compute only the cells without one, so the engine would be compared with its own values.
_RECALC_ALWAYS = """<?xml version="1.0" encoding="UTF-8"?>
<oor:items xmlns:oor="http://openoffice.org/2001/registry" xmlns:xs="http://www.w3.org/2001/XMLSchema" \
xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
<item oor:path="/org.openoffice.Office.Calc/Formula/Load"><prop oor:name="OOXMLRecalcMode" oor:op="fuse"><value>0</value></prop></item>
<item oor:path="/org.openoffice.Office.Calc/Formula/Load"><prop oor:name="ODFRecalcMode" oor:op="fuse"><value>0</value></prop></item>
</oor:items>
"""


def _prepare_profile(profile: Path) -> None:
    settings = profile / "user" / "registrymodifications.xcu"
    if not settings.exists():
        settings.parent.mkdir(parents=True, exist_ok=True)
        settings.write_text(_RECALC_ALWAYS, encoding="utf-8")


def _run_soffice(paths: list[Path], filt: str, ext: str, timeout: int) -> list[Path]:
    """One soffice process for ``paths`` (distinct stems); returns the outputs in a fresh directory."""
    cache, profile = _dirs()
    _prepare_profile(profile)
    outdir = Path(tempfile.mkdtemp(prefix="out-", dir=cache))
    cmd = [
        soffice(),
        f"-env:UserInstallation={profile.resolve().as_uri()}",
        "--headless",
        "--norestore",
        "--convert-to",
        filt,
        "--outdir",
        str(outdir),
        *map(str, paths),
    ]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"LibreOffice took over {timeout} s to convert {[p.name for p in paths]}") from exc
    stats["runs"] += 1
    stats["converted"] += len(paths)
    out = [outdir / (p.stem + "." + ext) for p in paths]
    missing = [str(o) for o in out if not o.exists()]
    if missing:
        raise AssertionError(f"LibreOffice did not produce {missing}: {proc.stdout}\n{proc.stderr}")
    return out


def convert(paths, outdir, fmt: str = "xlsx", timeout: int = 300) -> list[Path]:
    """Open each file in LibreOffice (recalculating every formula) and save it as ``fmt``.

    Returns ``outdir/<stem>.<ext>`` for each file, in the order given.  Files this run has not converted
    yet go to LibreOffice together, in one soffice process (a second only when two share a stem).
    """
    paths = [Path(p) for p in paths]
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    filt = FILTERS.get(fmt, fmt)
    ext = fmt.split(":")[0]
    cache, _ = _dirs()
    keys = [cache / f"{_digest(p)}.{ext}" for p in paths]
    dests = [outdir / (p.stem + "." + ext) for p in paths]
    clash = {d for d, k in zip(dests, keys) if any(d == d2 and k != k2 for d2, k2 in zip(dests, keys))}
    if clash:
        raise AssertionError(f"different files would be written to the same output: {sorted(map(str, clash))}")

    todo: dict[Path, Path] = {}  # cache entry -> a source with those bytes
    for p, key in zip(paths, keys):
        if not key.exists():
            todo.setdefault(key, p)
    stats["shared"] += len(paths) - len(todo)
    pending = list(todo.items())
    while pending:
        batch, stems, rest = [], set(), []
        for key, p in pending:
            (rest if p.stem in stems else batch).append((key, p))
            stems.add(p.stem)
        outs = _run_soffice([p for _, p in batch], filt, ext, timeout)
        for (key, _), produced in zip(batch, outs):
            os.replace(produced, key)  # atomic: another worker sees all of it or nothing
        shutil.rmtree(outs[0].parent, ignore_errors=True)
        pending = rest

    for key, dest in zip(keys, dests):
        shutil.copyfile(key, dest)
    return dests


def recalculated(paths, outdir) -> list[Path]:
    """Recalculate in LibreOffice; read results with openpyxl.load_workbook(p, data_only=True)."""
    return convert(paths, outdir, "xlsx")


def formula_results(path) -> dict[tuple[str, str], object]:
    """{(sheet, ref): cached result} of every formula cell, read from the sheet XML as a previewer
    that does not recalculate would (a formula without ``<v>`` maps to the marker "(no value)")."""
    import zipfile

    from lxml import etree

    from xl_ecom.ooxml.namespaces import MAIN
    from xl_ecom.ooxml.package import Package

    pkg = Package(Path(path).read_bytes())
    out: dict[tuple[str, str], object] = {}
    with zipfile.ZipFile(path) as z:
        for name in pkg.sheet_names:
            for c in etree.fromstring(z.read(pkg.sheet_part(name))).iter(f"{{{MAIN}}}c"):
                if c.find(f"{{{MAIN}}}f") is None:
                    continue
                v = c.find(f"{{{MAIN}}}v")
                if v is None:
                    out[(name, c.get("r"))] = "(no value)"
                elif c.get("t") in ("str", "s", "inlineStr"):
                    out[(name, c.get("r"))] = v.text or ""
                else:
                    out[(name, c.get("r"))] = float(v.text) if v.text else "(no value)"
    return out


def cached_disagreements(path, recalculated_book, skip=lambda sheet, ref: False) -> list[tuple]:
    """The formula cells of ``path`` whose cached result differs from what LibreOffice computed
    (``recalculated_book``: the recalculated file opened by openpyxl with data_only=True)."""
    bad = []
    for (sheet, ref), value in formula_results(path).items():
        if skip(sheet, ref):
            continue
        theirs = recalculated_book[sheet][ref].value
        theirs = "" if theirs is None else theirs
        if isinstance(value, float):
            ok = isinstance(theirs, (int, float)) and not isinstance(theirs, bool) and abs(theirs - value) < 0.005
        else:
            ok = theirs == value
        if not ok:
            bad.append((sheet, ref, value, theirs))
    return bad
