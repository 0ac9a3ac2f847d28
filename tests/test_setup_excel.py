"""`xl-ecom setup-excel`: the xlwings.conf sheet of a built workbook points at this Python, and every
other part of the package (the VBA project, the ribbon) is written back byte for byte."""

from __future__ import annotations

import shutil
import sys
import zipfile
from pathlib import Path

import openpyxl
import pytest
from cli_inproc import cli, cli_process

from xl_ecom.frontends import setup_excel

ROOT = Path(__file__).resolve().parents[1]


def run(*args, cwd=None):
    return cli(*args, cwd=cwd or ROOT)


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("setup") / "目标任务分解表.xlsm"
    r = run("build", "--out", str(path))
    assert r.returncode == 0, r.stderr
    return path


@pytest.fixture
def workbook(built, tmp_path) -> Path:
    path = tmp_path / built.name
    shutil.copy2(built, path)
    return path


def conf(path: Path) -> dict:
    ws = openpyxl.load_workbook(path, keep_vba=True)["xlwings.conf"]
    return {row[0].value: row[1].value for row in ws.iter_rows(max_col=2) if row[0].value}


def parts(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as z:
        return {n: z.read(n) for n in z.namelist()}


def test_writes_this_interpreter_and_keeps_every_other_part(workbook):
    before = parts(workbook)
    r = run("setup-excel", str(workbook), "--no-backup")
    assert r.returncode == 0, r.stderr
    assert "下一步" in r.stdout and "本机不是 Windows" in r.stdout and "pythonw.exe" in r.stdout
    values = conf(workbook)
    assert values["Interpreter_Win"] == sys.executable
    assert values["PYTHONPATH"] is None  # xl-ecom is installed (editable): not needed
    assert values["UDF Modules"] == "xl_ecom.frontends.udfs"
    after = parts(workbook)
    assert after["xl/vbaProject.bin"] == before["xl/vbaProject.bin"]
    assert after["customUI/customUI14.xml"] == before["customUI/customUI14.xml"]
    changed = sorted(n for n in before if before[n] != after.get(n))
    assert len(changed) == 1 and changed[0].startswith("xl/worksheets/sheet")
    assert set(after) == set(before)
    assert not list(workbook.parent.glob("*备份*"))


def test_explicit_values_then_cleared_and_a_backup_kept(workbook):
    r = run("setup-excel", str(workbook), "--interpreter", r"C:\xl-ecom\.venv\Scripts\pythonw.exe",
            "--pythonpath", r"D:\源代码\xl-ecom")
    assert r.returncode == 0, r.stderr
    values = conf(workbook)
    assert values["Interpreter_Win"] == r"C:\xl-ecom\.venv\Scripts\pythonw.exe"
    assert values["PYTHONPATH"] == r"D:\源代码\xl-ecom"
    assert len(list(workbook.parent.glob("*备份*.xlsm"))) == 1
    assert run("setup-excel", str(workbook), "--no-backup").returncode == 0
    assert conf(workbook)["PYTHONPATH"] is None


def test_dry_run_changes_nothing(workbook):
    before = workbook.read_bytes()
    r = run("setup-excel", str(workbook), "--dry-run")
    assert r.returncode == 0 and "将写入" in r.stdout and sys.executable in r.stdout
    assert workbook.read_bytes() == before


def test_default_workbook_is_found_beside_the_cwd(workbook, tmp_path):
    home = tmp_path / "home"
    (home / "workbook").mkdir(parents=True)
    target = home / "workbook" / workbook.name
    shutil.copy2(workbook, target)
    r = run("setup-excel", "--no-backup", cwd=home)
    assert r.returncode == 0, r.stderr
    assert conf(target)["Interpreter_Win"] == sys.executable


def test_not_installed_writes_the_source_folder(monkeypatch):
    monkeypatch.setattr(setup_excel, "installed", lambda: False)
    found = setup_excel.detect()
    assert found.pythonpath == str(ROOT) and (ROOT / "xl_ecom" / "__init__.py").is_file()


def test_windows_checks_report_what_is_missing():
    # on this Linux machine: no pythonw.exe beside the interpreter, no pywin32, no Excel in a registry
    found = setup_excel.detect(platform="win32")
    assert found.windows and found.interpreter == sys.executable
    text = "\n".join(found.problems)
    assert "pythonw.exe" in text and "pywin32" in text and "Excel" in text
    assert setup_excel.excel_bitness() is None


def test_windows_picks_pythonw_beside_python(tmp_path, monkeypatch):
    exe = tmp_path / "Scripts" / "python.exe"
    exe.parent.mkdir()
    exe.write_bytes(b"")
    (exe.parent / "pythonw.exe").write_bytes(b"")
    monkeypatch.setattr(sys, "executable", str(exe))
    found = setup_excel.detect(platform="win32")
    assert found.interpreter == str(exe.parent / "pythonw.exe")
    assert not any("没有找到 pythonw.exe" in p for p in found.problems)
    assert any(f'"{exe}" -m pip install pywin32' in p for p in found.problems)


def test_errors_exit_2(tmp_path, workbook):
    r = run("setup-excel", str(tmp_path / "无.xlsm"))
    assert r.returncode == 2 and r.stderr.startswith("错误：") and "无.xlsm" in r.stderr
    other = tmp_path / "无配置表.xlsx"
    book = openpyxl.Workbook()
    book.active.title = "表1"
    book.save(other)
    r = run("setup-excel", str(other))
    assert r.returncode == 2 and r.stderr.startswith("错误：") and "xlwings.conf" in r.stderr
    assert "Traceback" not in r.stderr


def test_readme_and_the_readme_sheet_give_one_set_of_instructions():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    windows = readme.split("## 在 Windows 的 Excel 中使用", 1)[1]
    sheet = (ROOT / "templates" / "sheets" / "说明.txt").read_text(encoding="utf-8")
    sheet = sheet.split("== 五、在 Windows 的 Excel 中启用", 1)[1].split("\n== ", 1)[0]
    for text in (windows.replace("`", ""), sheet):
        assert "setup-excel" in text and "pythonw.exe" in text and "Interpreter_Win" in text
        assert "PYTHONPATH 留空" in text and "不要手工改" in text
        assert "64 位" in text and "install.bat" in text and "pywin32" in text
        # the old, contradicting advice is gone
        assert "保持 python" not in text and "python.exe 的完整路径" not in text and "本项目目录”" not in text


def test_refused_while_another_command_holds_the_workbook(workbook):
    from xl_ecom.ledger.lock import workbook_lock

    before = workbook.read_bytes()
    with workbook_lock(workbook, "汇总县区报表"):
        r = cli_process("setup-excel", str(workbook), "--no-backup")
    assert r.returncode == 2 and r.stderr.startswith("错误：") and "汇总县区报表" in r.stderr, r.stderr
    assert workbook.read_bytes() == before


def test_a_rebuild_keeps_what_setup_excel_wrote(workbook):
    assert run("setup-excel", str(workbook), "--no-backup", "--interpreter", r"C:\xl-ecom\.venv\Scripts\pythonw.exe").returncode == 0
    r = run("build", "--out", str(workbook))
    assert r.returncode == 0, r.stderr
    assert conf(workbook)["Interpreter_Win"] == r"C:\xl-ecom\.venv\Scripts\pythonw.exe"
