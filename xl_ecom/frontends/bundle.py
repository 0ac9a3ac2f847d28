"""`xl-ecom bundle --out DIR [--python 3.11] [--zip]`: an offline installer for intranet Windows PCs.

The folder holds ``wheels/`` (xl-ecom's own wheel, built with ``pip wheel . --no-deps``, and a 64-bit
Windows wheel of every dependency, downloaded with ``pip download --platform win_amd64
--only-binary=:all: --python-version X``), ``install.bat`` / ``install.ps1`` (from
``templates/bundle/``: create a venv, install with ``--no-index --find-links wheels``, run
``xl-ecom setup-excel``) and the city workbook when the source checkout has one.

pip evaluates environment markers (``sys_platform == "win32"``) for the machine it runs on, not for
the ``--platform`` it downloads for, so Windows-only dependencies (pywin32 for xlwings,
pywin32-ctypes for keyring, …) would be missing.  After the download the bundle reads every wheel's
metadata, evaluates the markers for Windows (``packaging``) and downloads what is still missing,
until the set is closed.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from xl_ecom.common.errors import XlEcomError
from xl_ecom.common.progress import Progress
from xl_ecom.common.resources import TEMPLATES_DIR

if TYPE_CHECKING:  # packaging is imported when a bundle is made, not by every CLI start
    from packaging.metadata import Metadata
    from packaging.requirements import Requirement

PLATFORM = "win_amd64"
DISTRIBUTION = "xl-ecom"
WHEELS = "wheels"
SCRIPTS = ("install.bat", "install.ps1")
WORKBOOK = Path("workbook") / "目标任务分解表.xlsm"
MAX_ROUNDS = 6


class BundleError(XlEcomError):
    """The offline bundle cannot be made (the message is Chinese)."""


@dataclass
class BundleReport:
    folder: Path
    python_version: str
    wheels: list[Path] = field(default_factory=list)
    own_wheel: Path | None = None
    workbook: Path | None = None
    archive: Path | None = None
    rounds: int = 0

    def to_text(self) -> str:
        size = sum(p.stat().st_size for p in self.wheels) / 1e6
        lines = [
            f"离线安装包：{self.folder}",
            f"  Python {self.python_version}（64 位 Windows），{len(self.wheels)} 个 wheel，共 {size:.1f} MB，在 {self.folder / WHEELS}",
            f"  安装脚本：{'、'.join(str(self.folder / s) for s in SCRIPTS)}",
        ]
        if self.workbook:
            lines.append(f"  工作簿：{self.workbook}")
        if self.archive:
            lines.append(f"  压缩包：{self.archive}")
        lines.append(f"在内网电脑上：安装 Python {self.python_version}（64 位），把整个文件夹复制过去，双击 install.bat"
                     "（或在 PowerShell 中运行 install.ps1）。")
        return "\n".join(lines)


def windows_environment(python_version: str) -> dict[str, str]:
    """The PEP 508 marker environment of 64-bit CPython ``python_version`` on Windows."""
    return {
        "implementation_name": "cpython",
        "implementation_version": f"{python_version}.0",
        "os_name": "nt",
        "platform_machine": "AMD64",
        "platform_python_implementation": "CPython",
        "platform_release": "10",
        "platform_system": "Windows",
        "platform_version": "10.0.19045",
        "python_full_version": f"{python_version}.0",
        "python_version": python_version,
        "sys_platform": "win32",
        "extra": "",
    }


def wheel_metadata(path: Path) -> Metadata:
    """The core metadata (``*.dist-info/METADATA``) of a wheel file."""
    from packaging.metadata import Metadata

    with zipfile.ZipFile(path) as z:
        names = [n for n in z.namelist() if n.count("/") == 1 and n.endswith(".dist-info/METADATA")]
        if not names:
            raise BundleError(f"“{path.name}”中没有 METADATA，不是有效的 wheel")
        return Metadata.from_email(z.read(names[0]), validate=False)


def wheels_by_name(folder: Path) -> dict[str, Path]:
    """{canonical project name: wheel file} of the wheels in ``folder`` (the newest version of each)."""
    from packaging.utils import parse_wheel_filename

    found: dict[str, tuple] = {}
    for path in sorted(folder.glob("*.whl")):
        name, version, _build, _tags = parse_wheel_filename(path.name)
        if name not in found or version > found[name][0]:
            found[name] = (version, path)
    return {name: path for name, (_v, path) in found.items()}


def missing_requirements(folder: Path, root: str, python_version: str) -> list[Requirement]:
    """The requirements, from ``root`` down through every wheel's metadata with the markers evaluated
    for Windows, that no wheel in ``folder`` provides."""
    from packaging.utils import canonicalize_name

    env = windows_environment(python_version)
    wheels = wheels_by_name(folder)
    missing: dict[str, Requirement] = {}
    seen: set[tuple[str, frozenset]] = set()
    todo: list[tuple[str, frozenset]] = [(canonicalize_name(root), frozenset())]
    while todo:
        name, extras = todo.pop()
        if (name, extras) in seen:
            continue
        seen.add((name, extras))
        for req in wheel_metadata(wheels[name]).requires_dist or []:
            if req.marker is not None and not any(req.marker.evaluate({**env, "extra": e}) for e in ("", *extras)):
                continue
            dep = canonicalize_name(req.name)
            if dep in wheels:
                todo.append((dep, frozenset(canonicalize_name(e) for e in req.extras)))
            else:
                missing.setdefault(dep, req)
    return list(missing.values())


def _without_marker(req: Requirement) -> str:
    extras = f"[{','.join(sorted(req.extras))}]" if req.extras else ""
    return f"{req.name}{extras}{req.specifier}"


def source_root() -> Path:
    root = Path(__file__).resolve().parents[2]
    if not (root / "pyproject.toml").is_file():
        raise BundleError(f"离线安装包要在 xl-ecom 的源代码文件夹中生成：{root} 中没有 pyproject.toml")
    return root


def _pip(args: list[str], what: str) -> None:
    cmd = [sys.executable, "-m", "pip", "--disable-pip-version-check", *args]
    done = subprocess.run(cmd, check=False, capture_output=True, text=True, encoding="utf-8", errors="replace")
    if done.returncode != 0:
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-8:])
        raise BundleError(f"{what}失败（pip 退出码 {done.returncode}）：\n{tail}")


def _build_isolation() -> list[str]:
    """Build our wheel without a network round trip when this Python already has setuptools>=77."""
    import importlib.metadata

    from packaging.version import Version

    try:
        return ["--no-build-isolation"] if Version(importlib.metadata.version("setuptools")) >= Version("77") else []
    except importlib.metadata.PackageNotFoundError:
        return []


def _render(template: str, values: dict[str, str]) -> str:
    return re.sub(r"\{\{(\w+)\}\}", lambda m: values[m.group(1)], template)


def write_scripts(folder: Path, values: dict[str, str]) -> list[Path]:
    """install.bat (UTF-8, CRLF; it switches the console to code page 65001 first) and install.ps1
    (UTF-8 with BOM, which Windows PowerShell 5.1 needs to read Chinese text)."""
    written = []
    for name in SCRIPTS:
        text = _render((TEMPLATES_DIR / "bundle" / name).read_text(encoding="utf-8"), values)
        text = text.replace("\r\n", "\n").replace("\n", "\r\n")
        target = folder / name
        target.write_bytes(("\ufeff" if name.endswith(".ps1") else "").encode("utf-8") + text.encode("utf-8"))
        written.append(target)
    return written


#: What a wheel is built from (pyproject.toml's package data lives under these)
SOURCE_ITEMS = ("pyproject.toml", "README.md", "LICENSE", "xl_ecom", "templates")


def copy_source_tree(root: Path, target: Path) -> Path:
    """Copy the files a wheel is built from into ``target`` (no caches, no earlier build output)."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "build", "dist")
    target.mkdir(parents=True)
    for name in SOURCE_ITEMS:
        item = root / name
        if item.is_dir():
            shutil.copytree(item, target / name, ignore=ignore)
        elif item.is_file():
            shutil.copy2(item, target / name)
    return target


def make_bundle(out, python_version: str = "3.11", *, archive: bool = False, progress: Progress | None = None) -> BundleReport:
    """Write the offline bundle into folder ``out`` (and ``out.zip`` with ``archive``)."""
    if not re.fullmatch(r"3\.(\d+)", python_version or "") or int(python_version.split(".")[1]) < 11:
        raise BundleError(f"Python 版本“{python_version}”无效：请写 3.11、3.12 这样的版本号（xl-ecom 需要 3.11 或更高）")
    root = source_root()
    folder = Path(out)
    wheels = folder / WHEELS
    wheels.mkdir(parents=True, exist_ok=True)
    say = progress or (lambda message, done=None, total=None: None)

    say("生成 xl-ecom 的 wheel……")
    for old in wheels.glob("xl_ecom-*.whl"):
        old.unlink()
    with tempfile.TemporaryDirectory(prefix="xl-ecom-wheel-") as scratch:
        # built from a copy: the checkout gets no build/ folder, and two builds at once never share one
        source = copy_source_tree(root, Path(scratch) / "src")
        _pip(["wheel", str(source), "--no-deps", "--quiet", "-w", str(wheels), *_build_isolation()], "生成 xl-ecom 的 wheel")
    own = sorted(wheels.glob("xl_ecom-*.whl"))
    if not own:
        raise BundleError("pip wheel 没有生成 xl_ecom-*.whl")
    target = ["--platform", PLATFORM, "--only-binary=:all:", "--python-version", python_version,
              "--implementation", "cp", "--dest", str(wheels), "--quiet"]
    say("下载依赖（64 位 Windows）……")
    _pip(["download", str(own[-1]), *target], "下载依赖")
    report = BundleReport(folder, python_version, own_wheel=own[-1])
    for report.rounds in range(1, MAX_ROUNDS + 1):
        missing = missing_requirements(wheels, DISTRIBUTION, python_version)
        if not missing:
            break
        say(f"下载只在 Windows 上需要的依赖：{'、'.join(r.name for r in missing)}")
        _pip(["download", *(_without_marker(r) for r in missing), *target], "下载依赖")
    else:
        raise BundleError(f"下载{MAX_ROUNDS}轮后仍缺少：{'、'.join(r.name for r in missing)}")
    say("写入安装脚本……")
    write_scripts(folder, {"python_version": python_version, "wheel": own[-1].name})
    if (root / WORKBOOK).is_file():
        report.workbook = folder / WORKBOOK.name
        shutil.copy2(root / WORKBOOK, report.workbook)
    report.wheels = sorted(wheels.glob("*.whl"))
    if archive:
        say("压缩……")
        report.archive = Path(shutil.make_archive(str(folder), "zip", folder.parent, folder.name))
    return report


def cmd_bundle(args) -> int:
    from xl_ecom.frontends.cli import DONE, _progress

    progress = _progress(args)
    try:
        report = make_bundle(args.out, args.python, archive=args.zip, progress=progress)
    finally:
        progress.close()
    print(report.to_text())
    return DONE


def add_cli(subparsers) -> None:
    p = subparsers.add_parser(
        "bundle",
        help="生成离线安装包：64 位 Windows 的全部 wheel 和安装脚本，供不能上网的电脑安装",
        description="在能上网的电脑上，把 xl-ecom 和它的全部依赖（64 位 Windows 的 wheel）下载到 DIR\\wheels，"
        "并写入 install.bat 和 install.ps1：在内网电脑上建虚拟环境、离线安装、运行 xl-ecom setup-excel。",
    )
    p.add_argument("--out", metavar="DIR", required=True, help="安装包文件夹")
    p.add_argument("--python", metavar="版本", default="3.11", help="内网电脑上的 Python 版本（默认 3.11）")
    p.add_argument("--zip", action="store_true", help="另外压缩成 DIR.zip")
    p.set_defaults(func=cmd_bundle)
