"""`xl-ecom bundle`: a real pip download from the registry (one per session) of 64-bit Windows wheels.

The checks walk the downloaded wheels' own metadata (Requires-Dist, markers evaluated for Windows,
extras followed) from xl-ecom down, independently of the bundle's own walk, and require each
dependency to be there as a win_amd64 or pure-Python wheel."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from packaging.metadata import Metadata
from packaging.tags import Tag
from packaging.utils import canonicalize_name, parse_wheel_filename

from xl_ecom.frontends import bundle

ROOT = Path(__file__).resolve().parents[1]
PY = "3.11"
WINDOWS = {
    "implementation_name": "cpython", "implementation_version": "3.11.9", "os_name": "nt",
    "platform_machine": "AMD64", "platform_python_implementation": "CPython", "platform_release": "10",
    "platform_system": "Windows", "platform_version": "10.0.22631", "python_full_version": "3.11.9",
    "python_version": "3.11", "sys_platform": "win32",
}


@pytest.fixture(scope="session")
def made(tmp_path_factory) -> bundle.BundleReport:
    return bundle.make_bundle(tmp_path_factory.mktemp("bundle") / "xl-ecom离线安装包", PY, archive=True)


def _wheels(folder: Path) -> dict[str, list[Path]]:
    found: dict[str, list[Path]] = {}
    for path in folder.glob("*.whl"):
        found.setdefault(parse_wheel_filename(path.name)[0], []).append(path)
    return found


def _requires(path: Path) -> list:
    with zipfile.ZipFile(path) as z:
        meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA") and n.count("/") == 1)
        return list(Metadata.from_email(z.read(meta), validate=False).requires_dist or [])


def _installable_on_windows(tag: Tag) -> bool:
    return (tag.platform in ("win_amd64", "any")
            and tag.interpreter in ("py3", "py2", "cp3", "cp311", "py311")
            and tag.abi in ("none", "abi3", "cp311"))


def test_every_wheel_is_for_64_bit_windows_or_pure_python(made):
    wheels = list((made.folder / "wheels").glob("*.whl"))
    assert len(wheels) >= 20
    for path in wheels:
        tags = parse_wheel_filename(path.name)[3]
        assert any(_installable_on_windows(t) for t in tags), path.name


def test_every_dependency_is_present_transitively(made):
    wheels = _wheels(made.folder / "wheels")
    assert "xl-ecom" in wheels
    missing, seen = [], set()
    todo = [("xl-ecom", frozenset())]
    while todo:
        name, extras = todo.pop()
        if (name, extras) in seen:
            continue
        seen.add((name, extras))
        for req in _requires(wheels[name][0]):
            if req.marker and not any(req.marker.evaluate({**WINDOWS, "extra": e}) for e in ("", *extras)):
                continue
            dep = canonicalize_name(req.name)
            if dep not in wheels:
                missing.append(f"{name} → {req}")
                continue
            versions = [parse_wheel_filename(p.name)[1] for p in wheels[dep]]
            assert any(req.specifier.contains(v, prereleases=True) for v in versions), (str(req), versions)
            todo.append((dep, frozenset(canonicalize_name(e) for e in req.extras)))
    assert missing == []
    names = {n for n, _ in seen}
    # every dependency declared in pyproject, and the Windows-only ones pip's own markers would skip on Linux
    for must in ("xlwings", "openpyxl", "pandas", "numpy", "pyyaml", "lxml", "sqlalchemy", "psycopg",
                 "psycopg-binary", "pyarrow", "keyring", "pywin32", "pywin32-ctypes", "tzdata"):
        assert must in names, must


def test_our_wheel_carries_the_package_and_templates(made):
    with zipfile.ZipFile(made.own_wheel) as z:
        names = set(z.namelist())
    for part in ("xl_ecom/frontends/cli.py", "xl_ecom/frontends/setup_excel.py", "xl_ecom/policy/plan.yaml",
                 "xl_ecom/templates/bundle/install.bat", "xl_ecom/templates/vba/Ribbon.bas"):
        assert part in names, part


def test_install_scripts_install_offline_and_run_setup_excel(made):
    bat = (made.folder / "install.bat").read_bytes()
    ps1 = (made.folder / "install.ps1").read_bytes()
    assert ps1.startswith("\ufeff".encode()) and not bat.startswith("\ufeff".encode())
    for raw in (bat, ps1):
        text = raw.decode("utf-8-sig")
        assert "\r\n" in text and "\n" not in text.replace("\r\n", "")
        assert "--no-index --find-links wheels" in text and "-m venv .venv" in text
        assert "setup-excel" in text and made.own_wheel.name in text and "{{" not in text
        assert "错误：" in text and "64 位的 Python" in text
    assert f'set "PYVER={PY}"' in bat.decode("utf-8") and f'$PyVer = "{PY}"' in ps1.decode("utf-8-sig")
    assert bat.decode("utf-8").splitlines()[1] == "chcp 65001 >nul"
    assert (made.folder / "目标任务分解表.xlsm").is_file() == (ROOT / "workbook" / "目标任务分解表.xlsm").is_file()


def test_the_bundle_resolves_offline(made, tmp_path):
    """pip resolves xl-ecom from the bundle alone (no index) for 64-bit Windows Python 3.11."""
    wheels = made.folder / "wheels"
    r = subprocess.run(
        [sys.executable, "-m", "pip", "--disable-pip-version-check", "install", "--dry-run", "--ignore-installed",
         "--no-index", "--find-links", str(wheels), "--platform", "win_amd64", "--python-version", PY,
         "--only-binary=:all:", "--target", str(tmp_path / "t"), str(made.own_wheel)],
        check=False, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "Would install" in r.stdout and "xlwings-0.37.8" in r.stdout


def test_the_zip_holds_the_folder(made):
    assert made.archive and made.archive.suffix == ".zip"
    with zipfile.ZipFile(made.archive) as z:
        names = z.namelist()
    top = made.folder.name
    assert f"{top}/install.bat" in names and f"{top}/install.ps1" in names
    assert sum(n.startswith(f"{top}/wheels/") and n.endswith(".whl") for n in names) == len(made.wheels)
    assert "离线安装包" in made.to_text() and "install.bat" in made.to_text()


@pytest.mark.parametrize("version", ["2.7", "3.10", "三点一一", ""])
def test_a_bad_python_version_is_an_error(version, tmp_path):
    r = subprocess.run([sys.executable, "-m", "xl_ecom", "bundle", "--out", str(tmp_path / "b"), "--python", version],
                       check=False, capture_output=True, text=True, encoding="utf-8", cwd=ROOT)
    assert r.returncode == 2 and r.stderr.startswith("错误：") and "Python 版本" in r.stderr
    assert not (tmp_path / "b").exists()
