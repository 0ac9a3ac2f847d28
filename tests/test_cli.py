"""The command line: argparse speaks Chinese, one exit-code convention, generated files follow the umask."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import cli_inproc
import pytest

ROOT = Path(__file__).resolve().parents[1]
ENGLISH = re.compile(
    r"usage:|positional arguments|options:|show this help|the following arguments are required|"
    r"invalid choice|unrecognized arguments|expected one argument|error:"
)


def run(*args, cwd=None):
    """The CLI's main() in this process (tests/cli_inproc.py); :func:`shell` runs ``python -m xl_ecom``."""
    return cli_inproc.cli(*args, cwd=cwd or ROOT)


def shell(*args, cwd=None):
    """``python -m xl_ecom ARGS`` as a shell runs it: the exit code and output a script sees."""
    return subprocess.run([sys.executable, "-m", "xl_ecom", *args], check=False, capture_output=True, text=True,
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
    r = shell("refresh", str(tmp_path / "无.xlsm"))
    assert r.returncode == 2
    assert r.stderr.startswith("错误：") and "无.xlsm" in r.stderr and "Traceback" not in r.stderr
    r = run("check", "--source", str(tmp_path / "无.txt"))
    assert r.returncode == 2 and r.stderr.startswith("错误：") and "无.txt" in r.stderr


def test_done_with_problems_is_1():
    assert run("check").returncode == 0
    assert run("check", "--strict").returncode == 1


def test_generated_files_follow_the_umask(tmp_path):
    from xl_ecom.ooxml import safeio
    from xl_ecom.workflows import departments

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


# --- one exit-code convention, enforced in main() -------------------------------------------------

def _main(argv, capsys):
    from xl_ecom.frontends import cli

    code = cli.main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def _missing_input_cases(tmp: Path):
    a_file = tmp / "一个文件.txt"
    if tmp.is_dir():
        a_file.write_text("x", encoding="utf-8")
    gone = tmp / "无"
    return {
        "calc": ["calc", "AWARD_LIVESTREAM", "800000", "--workbook", str(gone / "市.xlsm")],
        "clauses": ["clauses", "九（九）"],
        "check": ["check", "--source", str(gone / "方案.txt")],
        "run": ["run", "--out", str(a_file / "子目录")],
        "build": ["build", "--out", str(a_file / "目标任务分解表.xlsm")],
        "departments": ["departments", "--workbook", str(gone / "市.xlsm")],
        "counties": ["counties", "--workbook", str(gone / "市.xlsm")],
        "collect": ["collect", str(gone / "县区报表")],
        "collect --into": ["collect", str(tmp), "--into", str(gone / "市.xlsm")],
        "validate": ["validate", str(gone / "市.xlsm")],
        "refresh": ["refresh", str(gone / "市.xlsm")],
        "mail": ["mail", str(gone / "市.xlsm"), "--dry-run", str(tmp / "eml")],
        "setup-excel": ["setup-excel", str(gone / "市.xlsm")],
        "round": ["round", "list", "--workbook", str(gone / "市.xlsm")],
        "status": ["status", str(gone / "市.xlsm")],
        "status --json": ["status", str(gone / "市.xlsm"), "--json"],
        "remind": ["remind", str(gone / "市.xlsm"), "--dry-run", str(tmp / "eml")],
        "return": ["return", str(gone / "市.xlsm"), "--dry-run", str(tmp / "eml")],
        "report": ["report", str(gone / "市.xlsm"), "--out", str(tmp / "通报")],
        "history": ["history", "寿县", "--workbook", str(gone / "市.xlsm")],
        "export": ["export", "--csv", "--out", str(tmp / "导出"), "--workbook", str(gone / "市.xlsm")],
        "bundle": ["bundle", "--out", str(a_file / "包")],
    }


def test_every_subcommand_covered_by_the_missing_input_test(tmp_path):
    from xl_ecom.frontends import cli

    sub = next(a for a in cli.build_parser()._actions if isinstance(a, __import__("argparse")._SubParsersAction))
    covered = {k.split()[0] for k in _missing_input_cases(tmp_path)}
    assert set(sub.choices) <= covered, set(sub.choices) - covered


@pytest.mark.parametrize("case", list(_missing_input_cases(Path("/nonexistent"))))
def test_every_subcommand_with_a_missing_input_exits_2(case, tmp_path, capsys):
    code, out, err = _main(_missing_input_cases(tmp_path)[case], capsys)
    assert code == 2, (out, err)
    assert err.startswith("错误：") or "\n错误：" in err, err
    assert "Traceback" not in err and "错误：" not in out


def test_internal_errors_are_chinese_and_the_traceback_only_under_v(capsys):
    import argparse

    from xl_ecom.frontends import cli

    def broken(args):
        raise RuntimeError("坏了")

    assert cli.run_command(broken, argparse.Namespace(log_level=0)) == 2
    err = capsys.readouterr().err
    assert err.startswith("错误：程序内部错误") and "坏了" in err and "-v" in err and "Traceback" not in err
    assert cli.run_command(broken, argparse.Namespace(log_level=1)) == 2
    assert "Traceback" in capsys.readouterr().err

    def interrupted(args):
        raise KeyboardInterrupt

    assert cli.run_command(interrupted, argparse.Namespace(log_level=0)) == 2
    err = capsys.readouterr().err
    assert err.startswith("错误：") and "中断" in err
    assert cli.run_command(lambda a: 1, argparse.Namespace()) == 1
    assert cli.run_command(lambda a: None, argparse.Namespace()) == 0
    assert cli.run_command(lambda a: 130, argparse.Namespace()) == 2


def test_no_command_is_an_error():
    r = shell()
    assert r.returncode == 2 and "错误：请指定一个命令" in r.stderr and "用法：" in r.stderr


def test_help_epilog_documents_the_exit_codes():
    r = run("--help")
    assert "退出码" in r.stdout
    for line in ("0  完成", "1  完成，但有问题", "2  出错，未完成"):
        assert line in r.stdout
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "`0` 完成" in readme and "`1` 完成但有问题" in readme and "`2` 出错" in readme and "--json" in readme


# --- calc: the workbook's policy date, 未达到门槛 ---------------------------------------------------

@pytest.fixture(scope="module")
def city_workbook(tmp_path_factory) -> Path:
    import datetime as dt

    import openpyxl

    path = tmp_path_factory.mktemp("calc") / "目标任务分解表.xlsm"
    assert run("build", "--out", str(path)).returncode == 0
    book = openpyxl.load_workbook(path, keep_vba=True)
    ws = book["设置"]
    row = next(r for r in ws.iter_rows() if r[0].value == "政策日期")
    row[1].value = dt.date(2021, 6, 30)
    book.save(path)
    return path


def test_calc_takes_the_policy_date_from_the_workbook(city_workbook, capsys):
    import json

    code, out, _ = _main(["calc", "AWARD_LIVESTREAM", "800000", "--workbook", str(city_workbook), "--json"], capsys)
    data = json.loads(out)
    assert code == 0 and data["date"] == "2021-06-30" and city_workbook.name in data["date_source"]
    assert data["result"] == "50000.00" and data["threshold_not_met"] is False
    # the default workbook beside the cwd is used without --workbook
    home = city_workbook.parent / "家"
    (home / "workbook").mkdir(parents=True, exist_ok=True)
    import shutil

    shutil.copy2(city_workbook, home / "workbook" / city_workbook.name)
    r = run("calc", "AWARD_LIVESTREAM", "800000", cwd=home)
    assert r.returncode == 0 and "2021-06-30" in r.stdout
    # --date wins
    code, out, _ = _main(["calc", "AWARD_LIVESTREAM", "800000", "--workbook", str(city_workbook), "--date", "2020-12-31", "--json"], capsys)
    assert json.loads(out)["date"] == "2020-12-31"


def test_calc_without_a_workbook_takes_the_plan_default(monkeypatch, capsys):
    import json

    from xl_ecom.frontends import cli
    from xl_ecom.workflows.settings import SETTINGS_DEFAULTS

    monkeypatch.setattr(cli, "default_workbook", lambda: None)
    code, out, _ = _main(["calc", "AWARD_LIVESTREAM", "800000", "--json"], capsys)
    data = json.loads(out)
    assert code == 0
    assert data["date"] == SETTINGS_DEFAULTS["政策日期"].isoformat() and data["date_source"] == "方案默认"


@pytest.mark.parametrize("args, words", [
    (("AWARD_LIVESTREAM", "400000"), "须≥500,000.00元（原文“达到50万元”）"),
    (("AWARD_UPLINK", "1000万"), "须>10,000,000.00元（原文“上行超1000万元”）"),
    (("AWARD_POOR_SITE", "99999.99"), "须≥100,000.00元"),
])
def test_calc_says_the_threshold_was_not_met(args, words, capsys):
    import json

    code, out, _ = _main(["calc", *args], capsys)
    assert code == 0 and "= 0.00 元" in out and "未达到门槛：" in out and words in out, out
    code, out, _ = _main(["calc", *args, "--json"], capsys)
    data = json.loads(out)
    assert data["result"] == "0.00" and data["threshold_not_met"] is True and words in data["threshold"]


def test_calc_zero_without_a_threshold_says_nothing_about_one(capsys):
    code, out, _ = _main(["calc", "SUBSIDY_FACILITY", "0"], capsys)
    assert code == 0 and "= 0.00 元" in out and "门槛" not in out
    code, out, _ = _main(["calc", "AWARD_LIVESTREAM", "500000"], capsys)  # 达到 includes the threshold
    assert "50,000.00" in out and "未达到门槛" not in out


# --- --json ----------------------------------------------------------------------------------------

def test_check_json_is_utf8_with_stable_keys():
    import json

    r = subprocess.run([sys.executable, "-m", "xl_ecom", "check", "--json", "--strict"], check=False,
                       capture_output=True, cwd=ROOT)
    assert r.returncode == 1
    assert "示范村".encode() in r.stdout and b"\\u" not in r.stdout  # ensure_ascii=False, UTF-8
    data = json.loads(r.stdout.decode("utf-8"))
    assert list(data) == sorted(data) == ["exit_code", "findings", "notices", "source", "warnings"]
    assert data["exit_code"] == 1 and data["warnings"] >= 1
    assert all(list(f) == ["message", "severity", "subject"] for f in data["findings"])
    assert any("示范村" in f["message"] and f["severity"] == "警告" for f in data["findings"])
    text = run("check")
    assert f"共{len(data['findings'])}条：警告{data['warnings']}条" in text.stdout


def test_calc_json_keys():
    import json

    r = run("calc", "AWARD_LIVESTREAM", "80万", "--json", "--explain")
    data = json.loads(r.stdout)
    assert sorted(data) == ["clause", "date", "date_source", "explanation", "inputs", "name", "result", "rule",
                            "threshold", "threshold_not_met", "unit"]
    assert data["inputs"] == ["80万"] and data["result"] == "50000.00" and data["clause"] == "二（六）"
    assert any(line.startswith("结果：") for line in data["explanation"])


# --- progress and logging --------------------------------------------------------------------------

def test_terminal_progress_draws_on_a_tty_only():
    import io

    from xl_ecom.frontends.cli import TerminalProgress

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    tty = Terminal()
    progress = TerminalProgress(tty)
    progress("寿县", 2, 8)
    progress("保存……")
    progress.close()
    text = tty.getvalue()
    assert "\r[#####---------------] 2/8 寿县" in text and "\r保存……" in text and text.endswith("\n")
    quiet = io.StringIO()
    progress = TerminalProgress(quiet)
    progress("寿县", 2, 8)
    progress.close()
    assert quiet.getvalue() == ""


def test_departments_show_a_progress_bar_on_a_real_terminal(tmp_path):
    import pty

    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "xl_ecom", "departments", "--out", str(tmp_path)],
                            stdout=subprocess.PIPE, stderr=slave, cwd=ROOT)
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    out = proc.stdout.read().decode("utf-8")
    assert proc.wait() == 0
    os.close(master)
    bar = b"".join(chunks).decode("utf-8", "replace")
    n = len(list((tmp_path / "部门任务表").glob("*.xlsx")))
    assert n > 5 and f"{n}/{n}" in bar and "[####" in bar, bar[-300:]
    assert f"已生成部门任务表{n}个" in out and "\r" not in out


def test_progress_is_silent_without_a_terminal_and_logged_with_v(tmp_path):
    r = run("counties", "--out", str(tmp_path / "a"))
    assert r.returncode == 0, r.stderr
    assert "\r" not in r.stderr and "[#" not in r.stderr and "（8/8）" not in r.stderr and "信息" not in r.stderr
    r = run("-v", "counties", "--out", str(tmp_path / "b"))
    assert r.returncode == 0 and "信息 xl_ecom.cli：" in r.stderr and "（8/8）" in r.stderr, r.stderr
    assert "调试" not in r.stderr
    r = run("-vv", "calc", "AWARD_LIVESTREAM", "1")
    assert r.returncode == 0 and "调试 xl_ecom.cli：命令：calc" in r.stderr


def test_refresh_runs_under_main_with_progress_lines(city_workbook, tmp_path):
    import shutil

    target = tmp_path / city_workbook.name
    shutil.copy2(city_workbook, target)
    r = run("refresh", str(target), "--no-backup", "-v")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("已刷新：") and "打开工作簿" in r.stderr and "\r" not in r.stderr


def test_a_handler_reporting_its_error_on_stdout_is_moved_to_stderr(tmp_path, capsys):
    bad = tmp_path / "坏.xlsm"
    bad.write_bytes(b"not a zip")
    code, out, err = _main(["validate", str(bad)], capsys)
    assert code == 2 and err.startswith("错误：") and "错误：" not in out and "坏.xlsm" in err
    code, out, err = _main(["build", "--out", str(tmp_path / "工作簿.xlsx")], capsys)
    assert code == 2 and err.startswith("错误：") and "生成失败" not in err and ".xlsm" in err
