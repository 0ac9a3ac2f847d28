"""Upgrade in place: `xl-ecom build --out` and `xl-ecom run --out` on a city workbook a clerk has
filled rebuild its structure and keep every entered value; a dated backup is written first; a full
disk leaves neither a truncated backup nor a partial workbook."""

from __future__ import annotations

import datetime as dt
import io
import os
import random
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import openpyxl
import pytest

from xl_ecom.frontends import cli
from xl_ecom.frontends.addin import XLWINGS_ADDIN, XLWINGS_CONF_SHEET
from xl_ecom.ledger.lock import lock_path
from xl_ecom.ooxml import xlsm
from xl_ecom.workflows import build, layout, settings, upgrade
from xl_ecom.workflows.tables import TABLES

NAME = layout.WORKBOOK_NAME
SALES = [
    ["寿县", "寿县甲电商公司", "91340400MA2N0001X1", 1_200_000, 300_000],
    ["凤台县", "=HYPERLINK(\"http://x\")", "91340400MA2N0002X2", 50_000.5, None],  # text that looks like a formula
    ["大通区", "大通乙公司", None, 0, 10],
]
FORMULA_ROW = ["潘集区", "潘集丙公司", "91340400MA2N0004X4", "=1000*3", None]  # a formula the clerk typed
MAIL_LOG = [
    ["时间", "单位", "邮箱", "结果"],
    ["2020-07-01 09:00", "寿县", "shou@example.cn", "已发送"],
    ["2020-07-01 09:01", "凤台县", "ft@example.cn", "失败"],
]


@pytest.fixture(scope="module")
def fresh() -> bytes:
    return build.build_bytes(addin=XLWINGS_ADDIN)


def filled(fresh: bytes, *, big_generated_rows: int = 0) -> bytes:
    """The city workbook after a clerk's work: contacts, settings, input rows, 完成数, the interpreter
    path, a send log, a sheet of their own, and a sheet 刷新 generated."""
    with zipfile.ZipFile(io.BytesIO(fresh)) as z:
        ribbon = xlsm.ribbon_parts(z)
    wb = openpyxl.load_workbook(io.BytesIO(fresh), keep_vba=True)
    ws = wb[settings.CONTACTS_SHEET]
    for row in range(4, ws.max_row + 1):
        if ws.cell(row, 1).value == "寿县":
            ws.cell(row, 3, "张三")
            ws.cell(row, 4, "shou@example.cn; zhang@example.cn")
            ws.cell(row, 5, "0554-1234567")
    extra = ws.max_row + 1
    ws.cell(3, 7, "备注")  # a column of the clerk's own: not in the new 通讯录, said so
    ws.cell(4, 7, "周一联系")
    ws.cell(extra, 1, "市委督查室")
    ws.cell(extra, 2, "部门")
    ws.cell(extra, 4, "dc@example.cn")
    ws = wb[settings.SETTINGS_SHEET]
    for row in range(2, ws.max_row + 1):
        key = ws.cell(row, 1).value
        if key == "SMTP服务器":
            ws.cell(row, 2, "smtp.huainan.gov.cn")
        elif key == "报送截止日期":
            ws.cell(row, 2, dt.date(2020, 7, 15))
        elif key == "加密方式":
            ws.cell(row, 2, "STARTTLS")
    ws.cell(ws.max_row + 1, 1, "我的备注")
    ws.cell(ws.max_row, 2, "第二季度起用")
    ws.cell(ws.max_row + 1, 1, "SMTP密码")
    ws.cell(ws.max_row, 2, "secret")
    ws = wb["企业销售"]
    for i, row in enumerate([*SALES, FORMULA_ROW]):
        for c, value in enumerate(row, start=1):
            ws.cell(layout.INPUT_FIRST_ROW + i, c, value)
    ws.cell(layout.INPUT_FIRST_ROW + 1, 2).data_type = "s"  # typed with Excel's quote prefix: text
    ws.cell(layout.INPUT_FIRST_ROW, 30, "旁注")  # beside the table, under no header
    ws = wb["示范创建"]
    ws.cell(layout.INPUT_FIRST_ROW, 1, "寿县")
    ws.cell(layout.INPUT_FIRST_ROW, 2, "正阳关镇")
    ws.cell(layout.INPUT_FIRST_ROW, 3, "省级电商示范镇")
    ws = wb[layout.SHEET_ANNEX]
    ws.cell(layout.ANNEX_FIRST_ROW, layout.annex_col(0, "完成数"), 2)
    ws.cell(layout.ANNEX_FIRST_ROW + 1, layout.annex_col(1, "完成数"), 5)
    ws = wb[XLWINGS_CONF_SHEET]
    ws["B1"] = r"C:\Python311\pythonw.exe"
    ws["B6"] = "somebody.elses.udfs"  # UDF Modules is the build's: reset
    log = wb.create_sheet(layout.SHEET_MAIL_LOG)
    for row in MAIL_LOG:
        log.append(row)
    own = wb.create_sheet("我的台账")
    own.append(["事项", "日期"])
    own.append(["调度会", dt.datetime(2020, 6, 30, 0, 0)])
    generated = wb.create_sheet(layout.SHEET_SUMMARY)
    rng = random.Random(7)
    generated.append(["县区", "奖补"])
    for _ in range(big_generated_rows):
        generated.append(["".join(rng.choice("甲乙丙丁戊己庚辛壬癸") for _ in range(30)), rng.random()])
    out = io.BytesIO()
    wb.save(out)
    return xlsm.restore_ribbon(out.getvalue(), ribbon)


def check_kept(path: Path) -> None:
    wb = openpyxl.load_workbook(path)
    assert wb.sheetnames[: len(build.sheet_names(XLWINGS_ADDIN))] == build.sheet_names(XLWINGS_ADDIN)
    assert wb.sheetnames[-2:] == [layout.SHEET_MAIL_LOG, "我的台账"]
    assert layout.SHEET_SUMMARY not in wb.sheetnames  # 刷新 writes it again
    ws = wb[settings.CONTACTS_SHEET]
    contacts = {ws.cell(r, 1).value: [ws.cell(r, c).value for c in range(1, 6)] for r in range(4, ws.max_row + 1)}
    assert contacts["寿县"] == ["寿县", "县区", "张三", "shou@example.cn; zhang@example.cn", "0554-1234567"]
    assert contacts["市委督查室"] == ["市委督查室", "部门", None, "dc@example.cn", None]
    assert [u for u, _ in build.contact_units(build.load_plan())] == list(contacts)[:-1]
    values = settings.read_settings(path)
    assert values["SMTP服务器"] == "smtp.huainan.gov.cn"
    assert values["报送截止日期"] == dt.date(2020, 7, 15)
    assert values["加密方式"] == "STARTTLS"
    assert values["我的备注"] == "第二季度起用"
    assert "SMTP密码" not in values
    ws = wb["企业销售"]
    first = layout.INPUT_FIRST_ROW
    got = [[ws.cell(first + i, c).value for c in range(1, 6)] for i in range(4)]
    assert got[0] == SALES[0] and got[2] == SALES[2]
    assert got[1] == SALES[1] and ws.cell(first + 1, 2).data_type == "s"  # still text
    assert got[3] == FORMULA_ROW and ws.cell(first + 3, 4).data_type == "f"  # still a formula
    awards = len(next(t for t in TABLES if t.sheet == "企业销售").columns) + 1
    assert str(ws.cell(first, awards).value).startswith("=")  # the award columns are the build's formulas
    assert ws.cell(first + 4, 1).value is None
    ws = wb["示范创建"]
    assert [ws.cell(first, c).value for c in range(1, 4)] == ["寿县", "正阳关镇", "省级电商示范镇"]
    ws = wb[layout.SHEET_ANNEX]
    assert ws.cell(layout.ANNEX_FIRST_ROW, layout.annex_col(0, "完成数")).value == 2
    assert ws.cell(layout.ANNEX_FIRST_ROW + 1, layout.annex_col(1, "完成数")).value == 5
    ws = wb[XLWINGS_CONF_SHEET]
    assert ws["B1"].value == r"C:\Python311\pythonw.exe" and ws["B6"].value == "xl_ecom.frontends.udfs"
    log = wb[layout.SHEET_MAIL_LOG]
    assert [[c.value for c in row] for row in log.iter_rows()] == MAIL_LOG
    assert wb["我的台账"]["B2"].value == dt.datetime(2020, 6, 30)
    with zipfile.ZipFile(path) as z:  # still the macro workbook, with its ribbon
        assert xlsm.VBA_PROJECT_PART in z.namelist() and xlsm.CUSTOM_UI_PART in z.namelist()


def backups(folder: Path) -> list[Path]:
    return sorted(folder.glob("目标任务分解表.备份*.xlsm"))


def test_build_out_on_a_filled_workbook_keeps_its_data_and_writes_a_backup(tmp_path, fresh, capsys):
    city = tmp_path / NAME
    before = filled(fresh)
    city.write_bytes(before)
    assert cli.main(["build", "--out", str(city)]) == 0
    out = capsys.readouterr().out
    check_kept(city)
    (backup,) = backups(tmp_path)
    assert backup.read_bytes() == before
    assert str(backup) in out
    assert "通讯录：" in out and "企业销售：4 行" in out and "示范创建：1 行" in out and "发送记录：2 行" in out
    assert "设置：" in out and "目标任务分解表：2 个完成数" in out and "我的台账：2 行" in out
    assert "奖补汇总" in out and "刷新" in out
    assert "SMTP密码" in out  # said to be left out
    assert "通讯录：“备注”在新版中没有这一列，1 个值未复制" in out
    assert "企业销售：“AD 列（无表头）”在新版中没有这一列，1 个值未复制" in out
    assert not lock_path(city).exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([NAME, backup.name])


def test_run_out_dir_on_a_filled_workbook_keeps_its_data(tmp_path, fresh, capsys):
    """`xl-ecom run --out DIR` used to replace the working workbook silently."""
    city = tmp_path / NAME
    before = filled(fresh)
    city.write_bytes(before)
    assert cli.main(["run", "--out", str(tmp_path)]) == 0
    capsys.readouterr()
    check_kept(city)
    (backup,) = backups(tmp_path)
    assert backup.read_bytes() == before
    assert not lock_path(city).exists()


def test_upgrading_an_upgraded_workbook_changes_nothing(tmp_path, fresh):
    """The kept data goes back in exactly as it came out: the second rebuild gives the same bytes."""
    city = tmp_path / NAME
    city.write_bytes(filled(fresh))
    first = upgrade.write_city_workbook(city, addin=XLWINGS_ADDIN)
    upgraded = city.read_bytes()
    again = upgrade.write_city_workbook(city, addin=XLWINGS_ADDIN)
    assert again.unchanged and city.read_bytes() == upgraded and backups(tmp_path) == [first.backup]
    check_kept(city)
    assert again.kept_count("企业销售") == 4 and again.kept_count(settings.CONTACTS_SHEET) == first.kept_count(settings.CONTACTS_SHEET)


def test_a_new_workbook_is_a_plain_build(tmp_path, fresh):
    report = upgrade.write_city_workbook(tmp_path / NAME, addin=XLWINGS_ADDIN)
    assert report.created and report.backup is None and (tmp_path / NAME).read_bytes() == fresh
    assert report.to_text() == f"已生成 {tmp_path / NAME}"


def test_an_untouched_current_workbook_is_left_as_it_is(tmp_path, fresh):
    """Rebuilding a workbook nobody filled gives the fresh build's bytes: nothing to write, no backup."""
    city = tmp_path / NAME
    city.write_bytes(fresh)
    report = upgrade.write_city_workbook(city, addin=XLWINGS_ADDIN)
    assert report.unchanged and report.backup is None and "未改动" in report.to_text()
    assert city.read_bytes() == fresh and sorted(p.name for p in tmp_path.iterdir()) == [NAME]


def test_an_older_unfilled_workbook_becomes_the_fresh_build(tmp_path, fresh):
    with zipfile.ZipFile(io.BytesIO(fresh)) as z:
        ribbon = xlsm.ribbon_parts(z)
    wb = openpyxl.load_workbook(io.BytesIO(fresh), keep_vba=True)
    wb[layout.SHEET_README]["A3"] = "旧版说明"  # structure of an older version, no clerk data
    out = io.BytesIO()
    wb.save(out)
    city = tmp_path / NAME
    city.write_bytes(xlsm.restore_ribbon(out.getvalue(), ribbon))
    before = city.read_bytes()
    report = upgrade.write_city_workbook(city, addin=XLWINGS_ADDIN)
    assert city.read_bytes() == fresh  # the same bytes as `xl-ecom build` into an empty folder
    assert report.backup.read_bytes() == before and report.kept_count("企业销售") == 0


def test_a_file_that_is_not_a_city_workbook_is_left_alone(tmp_path):
    city = tmp_path / NAME
    other = openpyxl.Workbook()
    other.active.title = "别的表"
    other.save(city)
    before = city.read_bytes()
    assert cli.main(["build", "--out", str(city)]) == 2
    assert city.read_bytes() == before and backups(tmp_path) == [] and not lock_path(city).exists()
    city.write_bytes(b"not a zip at all")
    with pytest.raises(upgrade.UpgradeError, match="无法作为工作簿读取"):
        upgrade.write_city_workbook(city, addin=XLWINGS_ADDIN)
    assert city.read_bytes() == b"not a zip at all" and backups(tmp_path) == []


DISK_FULL_CHILD = textwrap.dedent(
    """
    import resource, signal, sys
    from pathlib import Path
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG, as on a full disk
    limit = int(sys.argv[2])
    from xl_ecom.frontends import cli
    from xl_ecom.frontends.addin import XLWINGS_ADDIN
    XLWINGS_ADDIN.vba_modules()  # imports done before the limit
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    sys.exit(cli.main(["build", "--out", sys.argv[1]]))
    """
)


def test_a_full_disk_leaves_no_truncated_backup_and_the_workbook_as_it_was(tmp_path, fresh):
    """The backup is the largest file written: with writes capped below its size (RLIMIT_FSIZE, as
    a full disk) the build itself still fits, the backup cannot be written, and nothing is left."""
    city = tmp_path / NAME
    before = filled(fresh, big_generated_rows=6000)  # a large 奖补汇总 that the rebuild leaves to 刷新
    city.write_bytes(before)
    limit = len(before) - 1
    assert limit > 2 * len(fresh)  # room for the build's own temporary files
    done = subprocess.run(
        [sys.executable, "-c", DISK_FULL_CHILD, str(city), str(limit)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        env={**os.environ, "PYTHONIOENCODING": "utf-8"},
    )
    assert done.returncode == 2, done.stderr
    assert "磁盘空间不足" in done.stderr and "原工作簿未改动" in done.stderr and "Traceback" not in done.stderr
    assert city.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [NAME]  # no backup, no temporary file, no lock
