"""发送邮件与台账（issue 9）：台账是发送记录，CSV 只是导出；旧 CSV 记录（含 GBK/UTF-8 混杂的乱码情形）
只导入一次，已发送的不再重发。用真实的 aiosmtpd 服务器、真实的 SQLite 文件和真实的 PostgreSQL。"""

from __future__ import annotations

import csv
import hashlib
import io
from collections import Counter

import pytest
from openpyxl import load_workbook

from xl_ecom.ledger import open_ledger
from xl_ecom.workflows import mail, settings
from xl_ecom.workflows.mail import RESULT_FAILED, SendRecord

from mail_helpers import (
    ALL_ADDRESSES,
    SENDER,
    SmtpServer,
    attempts,
    export_rows,
    make_city,
    run_cli,
)
from pg_server import ledger_url, pg_database_url, pg_url  # noqa: F401 - pytest fixtures

DOMAIN = SENDER.rpartition("@")[2]


@pytest.fixture
def server():
    srv = SmtpServer().start()
    yield srv
    srv.stop()


@pytest.fixture
def city(tmp_path, server):
    return make_city(tmp_path, server.port)


def planned(city):
    plan = mail.plan_messages(settings.read_settings(city.workbook), settings.read_contacts(city.workbook),
                              city.out_dir)
    return {(m.unit, m.address): m for m in plan.messages}


def old_record(message, result, reply="250 2.0.0 Ok: queued as Q1", when="2020-11-02 09:00:00"):
    """旧版 CsvLog 写的一行（随机的 Message-ID）。"""
    return SendRecord(when, message.unit, message.address, message.file_label, message.sha256, result, reply,
                      f"<{hashlib.md5(message.address.encode()).hexdigest()}@{DOMAIN}>")


def write_old_log(city, rows_first, rows_appended, encoding):
    """旧版的 CSV 发送记录。encoding="gbk+utf-8"：先由旧版写（UTF-8 带 BOM），在 Excel 里另存为 GBK，
    再由旧版以 UTF-8 追加新行——issue 9 里的乱码文件。"""
    if encoding == "gbk+utf-8":
        with mail.CsvLog(city.log) as log:
            for r in rows_first:
                log.append(r)
        text = city.log.read_text(encoding="utf-8-sig")
        city.log.write_bytes(text.encode("gbk"))  # Excel：另存为 CSV（逗号分隔），中文 Windows 下是 GBK
        with mail.CsvLog(city.log) as log:  # 旧版的追加写：不写 BOM，直接追加 UTF-8
            for r in rows_appended:
                log.append(r)
        return
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(mail.RECORD_HEADERS)
    for r in [*rows_first, *rows_appended]:
        writer.writerow(r.row())
    city.log.write_bytes(buffer.getvalue().encode(encoding))


@pytest.mark.parametrize("encoding", ["gbk+utf-8", "utf-8-sig", "utf-8", "gbk"])
def test_old_csv_is_imported_once_and_delivered_mail_is_never_resent(city, server, encoding):
    msgs = planned(city)
    sx = msgs[("寿县", "shouxian@sx.example.cn")]
    swj1 = msgs[("市商务局", "swj1@hn.example.cn")]
    swj2 = msgs[("市商务局", "swj2@hn.example.cn")]
    ft_a = msgs[("凤台县", "ft-a@ft.example.cn")]
    czj = msgs[("市财政局", "czj@hn.example.cn")]
    first = [old_record(swj1, "成功"), old_record(sx, "暂时失败", "451 4.7.1 Greylisted"), old_record(sx, "成功")]
    appended = [old_record(swj2, "成功", when="2020-11-03 10:00:00"),
                old_record(ft_a, "成功", when="2020-11-03 10:01:00"),
                old_record(czj, RESULT_FAILED, "550 5.1.1 User unknown", when="2020-11-03 10:02:00")]
    write_old_log(city, first, appended, encoding)
    original = city.log.read_bytes()
    if encoding == "gbk+utf-8":
        # 问题的原样：整份按一种编码读，追加的 UTF-8 行成了乱码，“成功”认不出来
        whole = list(csv.reader(io.StringIO(original.decode("gb18030", errors="replace"), newline="")))
        assert "成功" not in [row[5] for row in whole[-3:] if len(row) > 5]
        assert "凤台县" not in original.decode("gb18030", errors="replace")

    result = run_cli([str(city.workbook), "--resend-failed"])
    assert result.code == 0, result.stdout + result.stderr
    assert "已把旧发送记录（目标任务分解表_发送记录.csv）中的 6 条导入台账，其中已发送 4 条" in result.stdout
    # 只发了旧记录里没有送达的两封：失败的 czj 和从没发过的 ft-b
    assert server.by_recipient() == Counter({"czj@hn.example.cn": 1, "ft-b@ft.example.cn": 1})
    assert "此前已成功发送的 4 封没有重复发送" in result.stdout

    rows = attempts(city)
    imported = rows[:6]
    assert [a.unit for a in imported] == ["市商务局", "寿县", "寿县", "市商务局", "凤台县", "市财政局"]
    assert [a.status for a in imported] == ["已发送", "失败", "已发送", "已发送", "已发送", "失败"]
    assert imported[1].detail.startswith("暂时失败：451")
    assert imported[0].attempted_at.strftime("%Y-%m-%d %H:%M") == "2020-11-02 09:00"
    assert "原 Message-ID" in imported[0].detail
    # 旧 CSV 原样另存；同名 CSV 现在是台账的导出（UTF-8 带 BOM，整份重写）
    assert mail.legacy_backup_path(city.workbook).read_bytes() == original
    assert city.log.read_bytes().startswith(b"\xef\xbb\xbf")
    assert len(export_rows(city)) == len(rows) == 8

    # 之后不再导入（台账已有记录），也不会重发：什么都不发
    again = run_cli([str(city.workbook), "--resend-failed"])
    assert again.code == 0 and "导入" not in again.stdout
    assert "此前已成功发送的 6 封没有重复发送" in again.stdout
    assert len(server.received) == 2
    assert len(attempts(city)) == 8


def test_the_export_is_never_read_back(city, server):
    """CSV 被 Excel 另存为 GBK、被人改动，都不影响判断：台账才是记录，下一批整份重写 CSV。"""
    assert run_cli([str(city.workbook), "--only", "寿县"]).code == 0
    city.log.write_bytes("时间,单位,结果\r\n乱写,寿县,失败\r\n".encode("gbk"))
    again = run_cli([str(city.workbook), "--resend-failed"])
    assert again.code == 0
    assert "导入" not in again.stdout
    assert server.by_recipient() == Counter({a: 1 for a in ALL_ADDRESSES})
    exported = export_rows(city)
    assert len(exported) == 6 and {r["状态"] for r in exported} == {"已发送"}


def test_old_uncertain_failure_is_imported_as_uncertain_and_held(city, server):
    """旧版把“发送途中断开”记成失败并注明不确定：导入为“不确定”，补发时不重发，要明确 --resend-uncertain。"""
    czj = planned(city)[("市财政局", "czj@hn.example.cn")]
    write_old_log(city, [old_record(czj, RESULT_FAILED, "重试 1 次后仍失败：连接中断（此前发送中途断开，服务器是否已收到不确定）")],
                  [], "utf-8-sig")
    result = run_cli([str(city.workbook), "--resend-failed"])
    assert result.code == 1
    assert "czj@hn.example.cn" not in server.by_recipient() and len(server.received) == 5
    assert "不确定：市财政局 <czj@hn.example.cn>" in result.stdout
    assert attempts(city)[0].status == "不确定"
    assert run_cli([str(city.workbook), "--resend-uncertain"]).code == 0
    assert server.by_recipient()["czj@hn.example.cn"] == 1


def test_old_record_sheet_rows_are_imported_too(city, server):
    """功能区按钮以前写在工作簿“发送记录”表里的成功记录也导入一次（与 CSV 重复的行只算一次）。"""
    sx = planned(city)[("寿县", "shouxian@sx.example.cn")]
    swj1 = planned(city)[("市商务局", "swj1@hn.example.cn")]
    write_old_log(city, [old_record(swj1, "成功")], [], "utf-8-sig")
    wb = load_workbook(city.workbook)
    ws = wb.create_sheet(mail.RECORD_SHEET)
    ws.append(list(mail.RECORD_HEADERS))
    ws.append(old_record(swj1, "成功").row())  # 与 CSV 中的同一行
    ws.append(old_record(sx, "成功").row())
    wb.save(city.workbook)
    result = run_cli([str(city.workbook), "--resend-failed"])
    assert result.code == 0, result.stdout + result.stderr
    assert "中的 2 条导入台账" in result.stdout and "“发送记录”表" in result.stdout
    assert len(server.received) == 4
    assert not {"swj1@hn.example.cn", "shouxian@sx.example.cn"} & set(server.by_recipient())


def test_ledger_beside_the_workbook_by_default_and_db_option(city, server, ledger_url):
    """默认台账是工作簿旁的 SQLite 文件；--db 指定（这里分别是另一个 SQLite 文件和真实的 PostgreSQL）时记在那里。"""
    beside = city.workbook.with_name(f"{city.workbook.stem}.台账.sqlite")
    result = run_cli([str(city.workbook), "--db", ledger_url, "--only", "寿县"])
    assert result.code == 0, result.stdout + result.stderr
    assert not beside.exists()
    with open_ledger(url=ledger_url) as ledger:
        (attempt,) = ledger.mail_attempts()
        assert (attempt.unit, attempt.status, attempt.kind) == ("寿县", "已发送", "县区")
        assert ledger.delivered("寿县", "shouxian@sx.example.cn", attempt.file_name)
        assert "邮件发送" in [c.action for c in ledger.changes()]
    assert "台账" in result.stdout and "s3cret" not in result.stdout
    again = run_cli([str(city.workbook), "--db", ledger_url, "--resend-failed"])
    assert again.code == 0 and "此前已成功发送的 1 封没有重复发送" in again.stdout
    assert server.by_recipient() == Counter({a: 1 for a in ALL_ADDRESSES})
    # 漏了 --db：工作簿旁的空台账里没有记录，CSV 导出却记着已发送——停下说明，不重发
    forgot = run_cli([str(city.workbook), "--resend-failed"])
    assert forgot.code == 2 and "记着 6 次已发送" in forgot.stderr and "--db" in forgot.stderr
    assert len(server.received) == 6
    # 确认要在新台账里从头记录：把导出移走
    city.log.rename(city.log.with_name("旧导出.csv"))
    plain = run_cli([str(city.workbook), "--resend-failed", "--only", "寿县"])
    assert plain.code == 0 and beside.exists()
    assert server.by_recipient()["shouxian@sx.example.cn"] == 2


def test_bad_db_url_is_a_chinese_error(city, server):
    result = run_cli([str(city.workbook), "--db", "mysql-ish:nonsense"])
    assert result.code == 2 and result.stderr.startswith("错误：") and "台账" in result.stderr
    assert "Traceback" not in result.stderr and server.received == []


def test_new_round_has_new_message_ids_and_sends_again(city, server):
    assert run_cli([str(city.workbook)]).code == 0
    first_ids = {r.message["Message-ID"] for r in server.received}
    with open_ledger(city.workbook) as ledger:
        ledger.new_round("2020-12")
    result = run_cli([str(city.workbook), "--resend-failed"])
    assert result.code == 0
    assert server.by_recipient() == Counter({a: 2 for a in ALL_ADDRESSES})
    second_ids = {r.message["Message-ID"] for r in server.received[6:]}
    assert len(second_ids) == 6 and not first_ids & second_ids
    with open_ledger(city.workbook) as ledger:
        rounds = {r.id: r.label for r in ledger.rounds()}
        assert Counter(rounds[a.round_id] for a in ledger.mail_attempts()) == Counter({"首轮": 6, "2020-12": 6})
    assert {r["轮次"] for r in export_rows(city)} == {"首轮", "2020-12"}


def test_dry_run_writes_nothing_to_the_ledger(tmp_path, city, server):
    assert run_cli([str(city.workbook), "--only", "寿县"]).code == 0
    before = len(attempts(city))
    eml = tmp_path / "eml"
    result = run_cli([str(city.workbook), "--dry-run", str(eml), "--resend-failed"])
    assert result.code == 0 and "已成功发送过的 1 封不再生成" in result.stdout
    assert len(list(eml.glob("*.eml"))) == 5
    assert len(attempts(city)) == before
    # 试运行写出的 Message-ID 与真正发送时相同
    ids = {load_message_id(p.read_bytes()) for p in eml.glob("*.eml")}
    assert run_cli([str(city.workbook), "--resend-failed"]).code == 0
    assert ids == {r.message["Message-ID"] for r in server.received[1:]}


def load_message_id(raw: bytes) -> str:
    from email import message_from_bytes, policy

    return message_from_bytes(raw, policy=policy.default)["Message-ID"]


def test_stable_message_id():
    sha = "ab" * 32
    one = mail.stable_message_id("首轮", "寿县", "A@x.cn", sha, "hn.example.cn")
    assert one == mail.stable_message_id("首轮", "寿县", "a@X.CN", sha.upper(), "hn.example.cn")
    assert one.startswith("<") and one.endswith("@hn.example.cn>")
    others = {
        mail.stable_message_id("2020-12", "寿县", "a@x.cn", sha, "hn.example.cn"),
        mail.stable_message_id("首轮", "凤台县", "a@x.cn", sha, "hn.example.cn"),
        mail.stable_message_id("首轮", "寿县", "b@x.cn", sha, "hn.example.cn"),
        mail.stable_message_id("首轮", "寿县", "a@x.cn", "cd" * 32, "hn.example.cn"),
    }
    assert one not in others and len(others) == 4
    # 发件人的域名换了，仍认得是同一封
    assert mail.message_key(one) == mail.message_key(mail.stable_message_id("首轮", "寿县", "a@x.cn", sha, "y.cn"))


def test_decode_lines_mixed_encodings():
    data = "\ufeff时间,单位\r\n".encode() + "寿县,成功\r\n".encode("gbk") + "凤台县,成功\r\n".encode()
    assert mail.decode_lines(data) == "时间,单位\r\n寿县,成功\r\n凤台县,成功\r\n"


def test_ledger_that_cannot_be_written_stops_the_batch_with_a_clear_message(city, server, monkeypatch):
    """台账写不进去（另一个程序锁住了 SQLite 文件）：停下，不在没有记录的情况下继续发，并说明情况。"""
    import sqlite3

    from xl_ecom.ledger import store

    monkeypatch.setattr(store, "BUSY_TIMEOUT_MS", 300)
    assert run_cli([str(city.workbook), "--only", "寿县"]).code == 0  # 台账已建好，有一条记录
    path = city.workbook.with_name(f"{city.workbook.stem}.台账.sqlite")
    blocker = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    original = server.handler.handle_DATA

    async def lock_then_accept(srv, session, envelope):
        reply = await original(srv, session, envelope)
        if server.handler.data_count == 3:  # 本批第 2 封（swj2）收下之后、回复 250 之前锁住台账
            blocker.execute("BEGIN EXCLUSIVE")
        return reply

    server.handler.handle_DATA = lock_then_accept
    try:
        result = run_cli([str(city.workbook), "--resend-failed"])
    finally:
        if blocker.in_transaction:
            blocker.execute("ROLLBACK")
        blocker.close()
    assert result.code == 2
    (error,) = [line for line in result.stderr.splitlines() if line.startswith("错误：")]
    assert error.startswith("错误：市商务局 <swj2@hn.example.cn> 的发送结果“已发送”无法记入台账")
    assert "其余邮件已停止发送" in result.stderr and "Message-ID 相同" in result.stderr
    assert "Traceback" not in result.stderr
    # 本批第 3 封起没有发
    assert server.by_recipient() == Counter({"shouxian@sx.example.cn": 1, "swj1@hn.example.cn": 1,
                                             "swj2@hn.example.cn": 1})
    statuses = [(a.address, a.status) for a in attempts(city)]
    assert statuses == [("shouxian@sx.example.cn", "已发送"), ("swj1@hn.example.cn", "已发送")]


def test_first_dry_run_has_the_message_ids_of_the_real_send(tmp_path, city, server):
    eml = tmp_path / "eml"
    assert run_cli([str(city.workbook), "--dry-run", str(eml)]).code == 0
    with open_ledger(city.workbook) as ledger:
        assert ledger.mail_attempts() == [] and ledger.rounds() == []  # 试运行什么也不写
    ids = {load_message_id(p.read_bytes()) for p in eml.glob("*.eml")}
    assert run_cli([str(city.workbook)]).code == 0
    assert ids == {r.message["Message-ID"] for r in server.received} and len(ids) == 6


def test_ledger_from_the_settings_sheet(tmp_path, city, server):
    """设置表“台账数据库”一项指定台账（命令行和按钮都用它；--db 优先）。"""
    elsewhere = tmp_path / "共享" / "市台账.sqlite"
    elsewhere.parent.mkdir()
    wb = load_workbook(city.workbook)
    wb[settings.SETTINGS_SHEET].append([mail.LEDGER_SETTING, str(elsewhere), "台账位置"])
    wb.save(city.workbook)
    assert run_cli([str(city.workbook), "--only", "寿县"]).code == 0
    assert elsewhere.exists() and not city.workbook.with_name(f"{city.workbook.stem}.台账.sqlite").exists()
    with open_ledger(url=str(elsewhere)) as ledger:
        assert [a.unit for a in ledger.mail_attempts()] == ["寿县"]
