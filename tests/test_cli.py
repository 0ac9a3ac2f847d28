"""The command line: argparse speaks Chinese, one exit-code convention, generated files follow the umask."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ENGLISH = re.compile(
    r"usage:|positional arguments|options:|show this help|the following arguments are required|"
    r"invalid choice|unrecognized arguments|expected one argument|error:"
)


def run(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "xl_ecom", *args], capture_output=True, text=True,
                          encoding="utf-8", cwd=cwd or ROOT)


@pytest.mark.parametrize("args", [("--help",), ("calc", "--help"), ("refresh", "--help"), ("mail", "--help")])
def test_help_is_chinese(args):
    r = run(*args)
    assert r.returncode == 0
    assert "用法：" in r.stdout and "选项" in r.stdout and "显示本帮助并退出" in r.stdout
    assert not ENGLISH.search(r.stdout), r.stdout


@pytest.mark.parametrize("args, words", [
    (("calc",), "缺少必填参数"),
    (("nope",), "无效的选项值 'nope'"),
    (("check", "--bogus"), "无法识别的参数：--bogus"),
    (("refresh", "x.xlsm", "--date"), "参数 --date：需要一个值"),
])
def test_usage_errors_are_chinese_and_exit_2(args, words):
    r = run(*args)
    assert r.returncode == 2
    assert "错误：" in r.stderr and words in r.stderr, r.stderr
    assert not ENGLISH.search(r.stderr), r.stderr


def test_missing_file_is_an_error_with_code_2(tmp_path):
    r = run("refresh", str(tmp_path / "无.xlsm"))
    assert r.returncode == 2
    assert r.stderr.startswith("错误：") and "无.xlsm" in r.stderr and "Traceback" not in r.stderr
    r = run("check", "--source", str(tmp_path / "无.txt"))
    assert r.returncode == 2 and r.stderr.startswith("错误：") and "无.txt" in r.stderr


def test_done_with_problems_is_1():
    assert run("check").returncode == 0
    assert run("check", "--strict").returncode == 1


def test_generated_files_follow_the_umask(tmp_path):
    from xl_ecom.workflows import departments
    from xl_ecom.ooxml import safeio

    old = os.umask(0o022)
    try:
        target = tmp_path / "a.bin"
        safeio.write_atomically(target, b"x", backup=False)
        assert target.stat().st_mode & 0o777 == 0o644
        files = departments.make_department_sheets(tmp_path / "out")
        assert files and all(Path(f).stat().st_mode & 0o777 == 0o644 for f in files)
        os.umask(0o002)
        safeio.write_atomically(tmp_path / "b.bin", b"y", backup=False)
        assert (tmp_path / "b.bin").stat().st_mode & 0o777 == 0o664
    finally:
        os.umask(old)


def test_license_metadata():
    import tomllib

    meta = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert meta["project"]["license"] == "MIT" and meta["project"]["license-files"] == ["LICENSE"]
    assert "MIT License" in (ROOT / "LICENSE").read_text(encoding="utf-8")


def test_readme_test_command_is_the_ci_command():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    ci_line = ci.split("# --- README test command ---\n", 1)[1].strip().splitlines()[0]
    block = readme.split("## 快速开始", 1)[1].split("```bash\n", 1)[1].split("```", 1)[0].splitlines()
    assert len(block) == 2 and "python3 -m venv .venv" in block[0] and block[1] == ci_line
