"""报送周期（issue 10）：轮次、报送情况、催报、退回。

两轮完整的周期，端到端：生成市级工作簿，下发县区工作簿（带下发凭证），发邮件，县区填报后汇总
（``xl-ecom collect``，台账记录每一份报送），再看报送情况、催报、退回，新建下一轮后再来一遍。
邮件由本机真实的 aiosmtpd 服务器接收，台账是工作簿旁真实的 SQLite 文件。每一步之后核对：
恰好该收到催报或退回的单位收到，各一次；报送情况正确。"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import zipfile
from collections import Counter
from pathlib import Path

import openpyxl
import pytest

from xl_ecom.frontends import cli
from xl_ecom.ledger import FAULTY, MERGED, open_ledger
from xl_ecom.ooxml import safeio, xlsm
from xl_ecom.workflows import build, cycle, layout
from xl_ecom.workflows.tables import table

from mail_helpers import SENDER, SmtpServer
from pg_server import pg_database_url, pg_url  # noqa: F401 - pytest fixtures

#: 通讯录里有邮箱的单位；其余 12 个部门和 4 个县区没有邮箱
EMAILS = {
    "市商务局": "swj@hn.example.cn",
    "寿县": "sx@sx.example.cn",
    "凤台县": "ft-a@ft.example.cn；ft-b@ft.example.cn",
    "大通区": "dt@dt.example.cn",
    "田家庵区": "tja@tja.example.cn",
}
ADDRESSES = {unit: [a.strip() for a in text.split("；")] for unit, text in EMAILS.items()}

GOOD = [["寿县", "寿县八公山豆制品电商", "91340422MA2N0A1234", 12_000_000, None, 800_000]]
FT_MIXED = [  # one good row, one with a text amount: merged with problems
    ["凤台县", "凤台县淮河农品", None, 11_000_000, None, None],
    ["凤台县", "凤台县农品二店", None, "很多", None, None],
]
DT_BAD = [["大通区", "大通区电商", None, "不知道", None, None]]  # every row bad: 有错


@pytest.fixture
def server():
    srv = SmtpServer().start()
    yield srv
    srv.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request) -> str | None:
    """None: the SQLite file beside the city workbook; else a fresh database on the real PostgreSQL server."""
    if request.param == "sqlite":
        return None
    return request.getfixturevalue("pg_database_url")


@pytest.fixture(scope="module")
def city_bytes() -> bytes:
    return build.build_bytes()


def configure(path: Path, port: int, deadline: str) -> None:
    """设置 (sender, SMTP, 报送截止日期) and 通讯录 (EMAILS), as a clerk fills them in."""
    wb = openpyxl.load_workbook(path, keep_vba=True)
    ws = wb[layout.SHEET_SETTINGS]
    values = {"发件人邮箱": SENDER, "SMTP服务器": "127.0.0.1", "SMTP端口": port, "加密方式": "无",
              "报送截止日期": deadline}
    for row in ws.iter_rows():
        if row[0].value in values:
            row[1].value = values[row[0].value]
    cs = wb[layout.SHEET_CONTACTS]
    header = [c.value for c in cs[3]]
    col = header.index("邮箱")
    for row in cs.iter_rows(min_row=4):
        if row[0].value in EMAILS:
            row[col].value = EMAILS[row[0].value]
    wb.save(path)


@pytest.fixture
def city(tmp_path, city_bytes, server) -> Path:
    path = tmp_path / "市级" / layout.WORKBOOK_NAME
    path.parent.mkdir()
    path.write_bytes(city_bytes)
    configure(path, server.port, "2020-09-25")
    return path


def run(capsys, *argv) -> tuple[int, str, str]:
    capsys.readouterr()
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err, out + err
    return code, out, err


def fill(src: Path, dst: Path, sales: list[list]) -> Path:
    wb = openpyxl.load_workbook(src)
    ws = wb[table("T_SALES").sheet]
    for i, row in enumerate(sales):
        for j, value in enumerate(row, start=1):
            safeio.write_cell_value(ws.cell(row=layout.INPUT_FIRST_ROW + i, column=j), value)
    dst.parent.mkdir(parents=True, exist_ok=True)
    wb.save(dst)
    return dst


def status(capsys, city: Path, today: str, *extra: str) -> tuple[int, dict]:
    code, out, _ = run(capsys, "status", city, "--json", "--today", today, *extra)
    data = json.loads(out)
    assert data["exit_code"] == code
    return code, {u["unit"]: u for u in data["units"]}


def new_mail(server, before: int) -> Counter:
    """recipients of the messages the server received since ``before``"""
    return Counter(a for r in server.received[before:] for a in r.rcpt_tos)


def recipients(*units: str) -> Counter:
    return Counter(a for u in units for a in ADDRESSES[u])


def attachments(message) -> dict[str, bytes]:
    return {part.get_filename(): part.get_content() for part in message.iter_attachments()}


def test_two_round_cycle_end_to_end(tmp_path, city, server, capsys, db):
    D = ["--db", db] if db else []
    out_dir = city.parent / "输出"
    returned = out_dir / cycle.RETURNED_SUBDIR
    issued = out_dir / "县区工作簿"

    # --- round 1: new round, issue, mail ----------------------------------------------------------------
    code, out, _ = run(capsys, "round", "new", "2020-09", "--workbook", city, *D)
    assert code == 0 and "2020-09" in out and "2020-09-25" in out  # the deadline defaults to 设置's
    assert run(capsys, "departments", "--workbook", city, *D)[0] == 0
    assert run(capsys, "counties", "--workbook", city, *D)[0] == 0
    code, out, _ = run(capsys, "mail", city, *D)
    assert code == 1  # units without an address are reported
    first = len(server.received)
    assert new_mail(server, 0) == recipients(*EMAILS)

    code, units = status(capsys, city, "2020-09-20", *D)
    assert len(units) == 25 and code == 0  # nothing overdue yet, nothing received
    assert [u for u, s in units.items() if not s["reports"]] == ["各县区人民政府", "市加快电子商务发展工作领导小组成员单位"]
    for name in ("各县区人民政府", "市加快电子商务发展工作领导小组成员单位"):
        assert units[name]["state"] == "只生成，不发送" and units[name]["file"].endswith(".xlsx")
        assert units[name]["mailed_at"] is None and not units[name]["overdue"]
    assert units["市加快电子商务发展工作领导小组成员单位"]["file"] == "领导小组成员单位.xlsx"
    assert units["寿县"]["issued_how"] == "台账登记" and units["寿县"]["file"] == "寿县.xlsx"
    assert sorted(units["凤台县"]["mailed_to"]) == sorted(ADDRESSES["凤台县"]) and units["凤台县"]["mail_status"] == "已发送"
    assert not units["谢家集区"]["has_contact"] and "无联系邮箱" in units["谢家集区"]["state"]
    assert units["市财政局"]["issued_how"] == "台账登记"  # department task sheets carry issue tokens too

    # --- collect: 寿县 clean, 凤台县 partly wrong, 大通区 all wrong --------------------------------------
    fill(issued / "寿县.xlsx", returned / "寿县.xlsx", GOOD)
    fill(issued / "凤台县.xlsx", returned / "凤台县.xlsx", FT_MIXED)
    fill(issued / "大通区.xlsx", returned / "大通区.xlsx", DT_BAD)
    run(capsys, "collect", returned, "--into", city, *D)
    with open_ledger(city, db) as ledger:
        subs = {s.unit: s for s in ledger.submissions()}
    assert subs["寿县"].status == MERGED and subs["寿县"].problem_count == 0
    assert subs["凤台县"].status == MERGED and subs["凤台县"].problem_count > 0
    assert subs["大通区"].status == FAULTY

    code, units = status(capsys, city, "2020-09-26", *D)
    assert code == 1
    assert units["寿县"]["valid"] and not units["寿县"]["overdue"] and units["寿县"]["version"] == 1
    assert units["凤台县"]["valid"] and units["凤台县"]["problem_count"] == subs["凤台县"].problem_count
    assert not units["大通区"]["valid"] and units["大通区"]["overdue"] and units["大通区"]["submission_status"] == FAULTY
    assert units["田家庵区"]["overdue"] and units["田家庵区"]["state"] == "逾期未报"
    assert units["市商务局"]["overdue"] and units["市财政局"]["overdue"]
    assert units["寿县"]["received_file"] == "寿县.xlsx" and units["寿县"]["received_at"]

    # --- 催报: exactly the units with an address and no valid submission, once each -----------------------
    dry = tmp_path / "催报预览"
    code, out, _ = run(capsys, "remind", city, "--dry-run", dry, "--today", "2020-09-26", *D)
    assert len(server.received) == first and len(list(dry.glob("*.eml"))) == 3
    before = len(server.received)
    code, out, _ = run(capsys, "remind", city, "--today", "2020-09-26", *D)
    assert code == 1 and "谢家集区" in out  # units without an address are named
    assert new_mail(server, before) == recipients("市商务局", "大通区", "田家庵区")
    for r in server.received[before:]:
        msg = r.message
        assert "催报" in msg["Subject"] and "2020-09" in msg["Subject"]
        unit = next(u for u, a in ADDRESSES.items() if r.rcpt_tos[0] in a)
        files = attachments(msg)
        stem = unit
        sub = "县区工作簿" if unit != "市商务局" else "部门任务表"
        assert files == {f"{stem}.xlsx": (out_dir / sub / f"{stem}.xlsx").read_bytes()}  # its own file again
        body = msg.get_body().get_content()
        assert "逾期1天" in body
    with open_ledger(city, db) as ledger:
        kinds = Counter(a.kind for a in ledger.mail_attempts() if a.status == "已发送")
    assert kinds["催报"] == 3

    code, units = status(capsys, city, "2020-09-26", *D)
    assert units["大通区"]["reminders"] == 1 and units["大通区"]["reminded_at"]
    assert units["寿县"]["reminders"] == 0

    # --- 退回: 凤台县 (both addresses) and 大通区, with the problems in the body and as .csv ----------------
    before = len(server.received)
    code, out, _ = run(capsys, "return", city, "--today", "2020-09-26", *D)
    assert code == 0, out
    assert new_mail(server, before) == recipients("凤台县", "大通区")
    with open_ledger(city, db) as ledger:
        problems = {u: ledger.problems(subs[u].id) for u in ("凤台县", "大通区")}
    for r in server.received[before:]:
        msg = r.message
        unit = "凤台县" if r.rcpt_tos[0] in ADDRESSES["凤台县"] else "大通区"
        body = msg.get_body().get_content()
        assert "退回" in msg["Subject"]
        files = attachments(msg)
        assert files[f"{unit}.xlsx"] == (returned / f"{unit}.xlsx").read_bytes()  # the file it sent
        table_name = f"{unit}_问题清单_第1版.csv"
        rows = list(csv.reader(io.StringIO(files[table_name].decode("utf-8-sig"))))
        assert rows[0] == list(cycle.PROBLEM_HEADERS)
        assert len(rows) - 1 == len(problems[unit]) == subs[unit].problem_count
        for p in problems[unit]:
            assert p.cell in body and p.sheet in body
            assert [f"{unit}.xlsx", p.sheet, p.cell, p.reason] in [row[:4] for row in rows]
    # a second run does not return the same submissions again
    before = len(server.received)
    code, out, _ = run(capsys, "return", city, "--today", "2020-09-26", *D)
    assert code == 0 and len(server.received) == before and "凤台县" in out and "不再发送" in out

    code, units = status(capsys, city, "2020-09-26", *D)
    assert units["凤台县"]["returned_at"] and units["大通区"]["returned_at"] and not units["寿县"]["returned_at"]

    # --- 报送情况 sheet in the city workbook --------------------------------------------------------------
    vba = zipfile.ZipFile(city).read(xlsm.VBA_PROJECT_PART)
    code, out, _ = run(capsys, "status", city, *D, "--write", "--today", "2020-09-26")
    assert code == 1 and "报送情况" in out
    assert zipfile.ZipFile(city).read(xlsm.VBA_PROJECT_PART) == vba
    wb = openpyxl.load_workbook(city, read_only=True)
    sheet = [list(r) for r in wb[cycle.SHEET_STATUS].iter_rows(values_only=True)]
    assert tuple(sheet[2][: len(cycle.STATUS_HEADERS)]) == cycle.STATUS_HEADERS
    body = {r[0]: dict(zip(cycle.STATUS_HEADERS, r)) for r in sheet[3:] if r[0]}
    assert len(body) == 25
    assert body["大通区"]["逾期"] == "是" and body["寿县"]["逾期"] == "否" and body["大通区"]["校验结果"] == FAULTY
    assert body["谢家集区"]["联系邮箱"] == "无联系邮箱" and body["各县区人民政府"]["联系邮箱"] == "不发送"
    assert body["大通区"]["催报次数"] == 1
    wb.close()

    # --- round 2: the previous round's data is the starting point ---------------------------------------
    code, out, _ = run(capsys, "round", "new", "2020-10", "--deadline", "2020-10-25", "--workbook", city, *D)
    assert code == 0 and "寿县" in out and "凤台县" in out
    with open_ledger(city, db) as ledger:
        rnd = ledger.current_round()
        assert rnd.label == "2020-10" and str(rnd.deadline) == "2020-10-25"
        assert set(cycle.carried_units(ledger, rnd.id)) == {"寿县", "凤台县"}
        rows = cycle.round_rows(ledger, "T_SALES")
        assert sorted(set(rows["_unit"])) == ["凤台县", "寿县"] and set(rows["_round"]) == {"2020-09"}
        assert len(ledger.current_rows("T_SALES")) == 0  # nothing submitted in the new round yet

    code, units = status(capsys, city, "2020-10-20", *D)
    assert code == 0  # not overdue yet
    assert not any(u["valid"] for u in units.values())
    assert units["寿县"]["carried_from"] == "2020-09" and units["大通区"]["carried_from"] is None
    assert units["寿县"]["issued_how"] == "沿用“2020-09”下发的文件"
    assert units["寿县"]["received_at"] is None and units["寿县"]["reminders"] == 0
    assert units["寿县"]["mail_status"] == "已发送（“2020-09”）" and units["寿县"]["mailed_to"] == ADDRESSES["寿县"]

    # 大通区 fixes its file, 寿县 sends one with an error (still merged: its good row counts)
    returned2 = tmp_path / "第二轮报回"
    fill(issued / "大通区.xlsx", returned2 / "大通区.xlsx", [["大通区", "大通区电商", None, 2_000_000, None, None]])
    fill(issued / "寿县.xlsx", returned2 / "寿县10月.xlsx", GOOD + [["寿县", "寿县新店", None, "-5", None, None]])
    run(capsys, "collect", returned2, "--into", city, *D)
    with open_ledger(city, db) as ledger:
        subs2 = {s.unit: s for s in ledger.submissions(round_id=rnd.id)}
        assert subs2["大通区"].status == MERGED and subs2["大通区"].problem_count == 0
        assert subs2["寿县"].status == MERGED and subs2["寿县"].problem_count > 0
        rows = cycle.round_rows(ledger, "T_SALES")
        assert dict(Counter(zip(rows["_unit"], rows["_round"]))) == {
            ("大通区", "2020-10"): 1, ("寿县", "2020-10"): 1, ("凤台县", "2020-09"): 1}

    code, units = status(capsys, city, "2020-10-26", *D)
    assert units["大通区"]["valid"] and units["寿县"]["valid"] and not units["凤台县"]["valid"]
    assert units["凤台县"]["overdue"] and units["凤台县"]["carried_from"] == "2020-09"

    before = len(server.received)
    code, out, _ = run(capsys, "remind", city, "--today", "2020-10-26", *D)
    assert new_mail(server, before) == recipients("市商务局", "凤台县", "田家庵区")
    for r in server.received[before:]:
        assert "2020-10" in r.message["Subject"]

    before = len(server.received)
    code, out, _ = run(capsys, "return", city, "--today", "2020-10-26", "--from", returned2, *D)
    assert code == 0 and new_mail(server, before) == recipients("寿县")
    msg = server.received[-1].message
    assert attachments(msg)["寿县10月.xlsx"] == (returned2 / "寿县10月.xlsx").read_bytes()  # from --from
    assert len(server.received) == before + 1
    code, out, _ = run(capsys, "return", city, "--today", "2020-10-26", *D)
    assert len(server.received) == before + 1

    # the Message-IDs never repeat: the first mail, each reminder and each return are different messages
    ids = [r.message["Message-ID"] for r in server.received]
    assert len(ids) == len(set(ids))

    code, out, _ = run(capsys, "round", "list", "--workbook", city, *D)
    assert code == 0 and "2020-09" in out and "2020-10（当前）" in out


def test_remind_never_mails_a_unit_with_a_valid_submission_and_is_once_per_unit_per_run(tmp_path, city, server, capsys):
    out_dir = city.parent / "输出"
    assert run(capsys, "departments", "--workbook", city)[0] == 0
    assert run(capsys, "counties", "--workbook", city)[0] == 0
    fill(out_dir / "县区工作簿" / "凤台县.xlsx", tmp_path / "报回" / "凤台县.xlsx",
         [["凤台县", "凤台县淮河农品", None, 11_000_000, None, None]])
    run(capsys, "collect", tmp_path / "报回", "--into", city)
    code, out, _ = run(capsys, "remind", city, "--only", "凤台县", "寿县", "--today", "2020-09-20")
    assert new_mail(server, 0) == recipients("寿县")
    body = server.received[0].message.get_body().get_content()
    assert "距截止还有5天" in body and "尚未收到" in body
    code, out, _ = run(capsys, "remind", city, "--only", "寿县", "--today", "2020-09-21")
    assert new_mail(server, 0) == recipients("寿县") + recipients("寿县")
    assert server.received[0].message["Message-ID"] != server.received[1].message["Message-ID"]
    code, units = status(capsys, city, "2020-09-21")
    assert units["寿县"]["reminders"] == 2


def test_status_json_and_errors(tmp_path, city, capsys):
    # no round yet: status lists every unit, remind says why it cannot run
    code, out, _ = run(capsys, "status", city, "--json", "--today", "2020-09-01")
    data = json.loads(out)
    assert data["round"] is None and data["deadline"] == "2020-09-25" and len(data["units"]) == 25
    assert list(data) == sorted(data)
    code, out, err = run(capsys, "remind", city)
    assert code == 2 and err.startswith("错误：") and "轮次" in err
    code, out, err = run(capsys, "round", "new", "2020-09", "--deadline", "9月底", "--workbook", city)
    assert code == 2 and "9月底" in err
    assert run(capsys, "round", "new", "2020-09", "--workbook", city)[0] == 0
    code, out, err = run(capsys, "round", "new", "2020-09", "--workbook", city)
    assert code == 2 and "已存在" in err
    code, out, err = run(capsys, "status", city, "--round", "2030-01")
    assert code == 2 and "2030-01" in err
    code, out, err = run(capsys, "status", tmp_path / "没有.xlsm")
    assert code == 2 and "没有.xlsm" in err


def test_new_round_from_settings(city, capsys):
    wb = openpyxl.load_workbook(city, keep_vba=True)
    ws = wb[layout.SHEET_SETTINGS]
    ws.append([cycle.ROUND_SETTING, "2020年第四季度", "本轮报送的名称"])
    wb.save(city)
    code, out, _ = run(capsys, "status", city, "--json")
    assert "round new" in json.loads(out)["notes"][0]  # 设置 names a round the ledger does not have yet
    created, carried = cycle.new_round_from_settings(city)
    assert created.label == "2020年第四季度" and str(created.deadline) == "2020-09-25" and carried == {}
    again, _ = cycle.new_round_from_settings(city)
    assert again.id == created.id  # the same entry twice is the same round
    code, out, err = run(capsys, "round", "new", "--workbook", city)  # the CLI's name defaults to 当前轮次
    assert code == 2 and "2020年第四季度" in err and "已存在" in err
    code, out, _ = run(capsys, "status", city, "--json")
    assert json.loads(out)["notes"] == [] and json.loads(out)["round"] == "2020年第四季度"


def test_a_return_whose_delivery_is_uncertain_is_not_sent_again(tmp_path, city, server, capsys):
    out_dir = city.parent / "输出"
    assert run(capsys, "counties", "--workbook", city)[0] == 0
    fill(out_dir / "县区工作簿" / "大通区.xlsx", out_dir / cycle.RETURNED_SUBDIR / "大通区.xlsx", DT_BAD)
    run(capsys, "collect", out_dir / cycle.RETURNED_SUBDIR, "--into", city)
    server.handler.drop_at_data = server.handler.data_count + 1  # the server keeps the mail, the 250 is lost
    server.handler.keep_dropped = True
    code, out, _ = run(capsys, "return", city, "--today", "2020-09-26")
    assert code == 1 and "不确定" in out
    assert new_mail(server, 0) == recipients("大通区")
    with open_ledger(city) as ledger:
        assert [(a.kind, a.status) for a in ledger.mail_attempts()] == [("退回", "不确定")]
    server.handler.drop_at_data = None
    code, out, _ = run(capsys, "return", city, "--today", "2020-09-26")
    assert code == 0 and new_mail(server, 0) == recipients("大通区")  # not sent a second time
    assert "大通区" in out and "不再发送" in out


def test_status_write_refuses_while_excel_has_the_workbook_open(city, capsys):
    assert run(capsys, "round", "new", "2020-09", "--workbook", city)[0] == 0
    before = city.read_bytes()
    lock = city.with_name("~$" + city.name)
    lock.write_bytes(b"clerk")
    code, out, err = run(capsys, "status", city, "--write")
    assert code == 2 and err.startswith("错误：") and city.name in err
    assert city.read_bytes() == before
    lock.unlink()
    code, out, err = run(capsys, "status", city, "--write", "--today", "2020-09-01")
    assert code == 0, err
    names = openpyxl.load_workbook(city, read_only=True).sheetnames
    assert names.index(cycle.SHEET_STATUS) == names.index(layout.SHEET_CONTACTS) + 1
    assert list(city.parent.glob("*.备份*"))  # the previous file is kept
    assert run(capsys, "status", city, "--write", "--today", "2020-09-01")[0] == 0  # replaced in place
    assert openpyxl.load_workbook(city, read_only=True).sheetnames == names


def test_ribbon_entry_takes_the_open_books_contacts_and_does_not_lock(city, server, capsys):
    from xl_ecom.ledger.lock import WorkbookBusyError
    from xl_ecom.workflows.settings import Contact

    assert run(capsys, "counties", "--workbook", city)[0] == 0
    city.with_name("~$" + city.name).write_bytes(b"clerk")  # Excel has the workbook open
    with pytest.raises(WorkbookBusyError):
        cycle.remind_workbook(city, only=["寿县"], today=dt.date(2020, 9, 26))
    typed = [Contact("寿县", "县区", "王五", ("new@sx.example.cn",))]  # typed into 通讯录, not saved yet
    result = cycle.remind_workbook(city, lock=False, contacts=typed, today=dt.date(2020, 9, 26), retry_delays=())
    assert result.units == ["寿县"] and result.result is not None and result.result.ok
    assert new_mail(server, 0) == Counter({"new@sx.example.cn": 1})
    assert "王五" in server.received[0].message.get_body().get_content()
    assert "有 22 个单位无法发送" in result.to_text()  # the other 15 departments and 7 counties: no address
