"""发送邮件（issue 5）：设置/通讯录读取、邮件编码、真实 aiosmtpd 服务器上的发送、故障与补发。"""

from __future__ import annotations

import datetime as dt
import email.header
import hashlib
import re
import ssl
import warnings
from collections import Counter
from email import message_from_bytes, policy
from pathlib import Path

import keyring
import pytest
from keyring.backend import KeyringBackend
from openpyxl import Workbook, load_workbook

from xl_ecom.workflows import mail, settings
from xl_ecom.workflows.mail import (
    RESULT_FAILED,
    RESULT_NOT_SENT,
    RESULT_RETRY,
    RESULT_SENT,
    RESULT_UNCERTAIN,
    MailError,
    OutgoingMessage,
    Sender,
)
from xl_ecom.workflows.settings import (
    Contact,
    ContactsError,
    PasswordInSettingsWarning,
    SettingsError,
)

from mail_helpers import (
    ALL_ADDRESSES,
    CONTACTS,
    PASSWORD,
    RETRY_DELAYS,
    SENDER,
    USER,
    FakeSleep,
    SmtpServer,
    attempts,
    expected_message_id,
    export_rows,
    free_port,
    log_rows,
    make_city,
    run_cli,
    self_signed_cert,
)


@pytest.fixture
def server():
    srv = SmtpServer().start()
    yield srv
    srv.stop()


@pytest.fixture
def city(tmp_path, server):
    return make_city(tmp_path, server.port)


def attachment_of(received):
    parts = list(received.message.iter_attachments())
    assert len(parts) == 1
    return parts[0]


def final_results(records):
    """每封邮件（单位、地址）最后一条记录的结果。"""
    last = {}
    for r in records:
        last[(r.unit, r.address)] = r.result
    return last


def assert_delivered_once(server, city, addresses=ALL_ADDRESSES):
    """每个地址正好收到一封，附件与生成文件逐字节相同。"""
    assert server.by_recipient() == Counter({a: 1 for a in addresses})
    unit_of = {}
    for unit, (_, _, cell) in CONTACTS.items():
        for a in settings.split_addresses(cell):
            unit_of[mail.normalize_address(a)] = unit
    for received in server.received:
        (rcpt,) = received.rcpt_tos
        unit = unit_of[rcpt]
        part = attachment_of(received)
        assert part.get_filename() == f"{unit}.xlsx"
        assert part.get_content() == city.files[unit]


# ---------------------------------------------------------------------------
# 设置表
# ---------------------------------------------------------------------------


def test_settings_layout_has_required_keys_and_no_password():
    keys = [k for k, _, _ in settings.SETTINGS_ROWS]
    for key in ["政策日期", "输出文件夹", "报送截止日期", "发件人", "发件人邮箱", "SMTP服务器",
                "SMTP端口", "SMTP用户名", "加密方式"]:
        assert key in keys
    assert len(keys) == len(set(keys))
    assert not [k for k in keys if re.search("密码|password", k, re.I)]
    assert settings.SETTINGS_HEADERS == ("项目", "值", "说明")
    assert settings.SETTINGS_SHEET == "设置"


def test_read_settings_defaults_without_sheet(tmp_path):
    wb = Workbook()
    wb.active.title = "别的表"
    path = tmp_path / "空.xlsx"
    wb.save(path)
    assert settings.read_settings(path) == settings.SETTINGS_DEFAULTS
    assert settings.read_settings(wb) == settings.SETTINGS_DEFAULTS


def test_read_settings_converts_types_and_keeps_defaults(tmp_path):
    wb = Workbook()
    ws = wb.active
    ws.title = "设置"
    ws.append(["项目", "值", "说明"])
    ws.append(["报送截止日期", dt.datetime(2020, 11, 30), ""])
    ws.append(["政策日期", "2020年6月1日", ""])
    ws.append(["SMTP端口", 587.0, ""])
    ws.append(["加密方式", "starttls", ""])
    ws.append(["SMTP用户名", 123456789, "QQ 号当用户名"])
    ws.append(["发件人", "  淮南市商务局电商科 ", ""])
    path = tmp_path / "city.xlsm"
    wb.save(path)
    got = settings.read_settings(path)
    assert got["报送截止日期"] == dt.date(2020, 11, 30)
    assert got["政策日期"] == dt.date(2020, 6, 1)
    assert got["SMTP端口"] == 587
    assert got["加密方式"] == "STARTTLS"
    assert got["SMTP用户名"] == "123456789"
    assert got["发件人"] == "淮南市商务局电商科"
    assert got["输出文件夹"] == "输出"  # 没写的取默认值
    assert settings.smtp_port(got) == 587
    assert settings.smtp_port({**got, "SMTP端口": None}) == 587
    assert settings.smtp_port({**got, "SMTP端口": None, "加密方式": "SSL"}) == 465


@pytest.mark.parametrize("key,value,fragment", [
    ("SMTP端口", "abc", "“abc”不是有效端口号"),
    ("SMTP端口", 70000, "“70000”不是有效端口号"),
    ("SMTP端口", 25.5, "“25.5”不是有效端口号"),
    ("报送截止日期", "下周五", "“下周五”不是有效日期"),
    ("报送截止日期", "2020-02-30", "“2020-02-30”不是有效日期"),
    ("加密方式", "TLS1.3", "“TLS1.3”无效"),
])
def test_bad_settings_values_name_key_and_value(key, value, fragment):
    with pytest.raises(SettingsError) as info:
        settings.settings_from_rows([("项目", "值"), (key, value)])
    assert key in str(info.value) and fragment in str(info.value)


def test_password_row_in_settings_is_ignored_with_warning():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = settings.settings_from_rows([("项目", "值"), ("SMTP密码", "hunter2"), ("Password", "x")])
    assert "hunter2" not in repr(got) and "SMTP密码" not in got and "Password" not in got
    assert len([w for w in caught if issubclass(w.category, PasswordInSettingsWarning)]) == 2
    assert all("hunter2" not in str(w.message) for w in caught)


def test_output_dir_relative_to_workbook(tmp_path):
    book = tmp_path / "a" / "city.xlsx"
    assert settings.output_dir({"输出文件夹": "输出"}, book) == (tmp_path / "a" / "输出").resolve()
    assert settings.output_dir({}, book) == (tmp_path / "a" / "输出").resolve()
    assert settings.output_dir({"输出文件夹": str(tmp_path / "x")}, book) == tmp_path / "x"
    assert settings.unit_file(tmp_path, "部门", "市商务局") == tmp_path / "部门任务表" / "市商务局.xlsx"
    assert settings.unit_file(tmp_path, "县区", "寿县") == tmp_path / "县区工作簿" / "寿县.xlsx"


# ---------------------------------------------------------------------------
# 通讯录
# ---------------------------------------------------------------------------


def test_split_addresses_all_separators():
    cell = "a@x.cn;b@x.cn；c@x.cn,d@x.cn，e@x.cn、f@x.cn g@x.cn\nh@x.cn\t i@x.cn"
    assert settings.split_addresses(cell) == tuple(f"{c}@x.cn" for c in "abcdefghi")
    assert settings.split_addresses(None) == ()
    assert settings.split_addresses("   ") == ()


def test_read_contacts_sheet_by_header_names(tmp_path):
    wb = Workbook()
    ws = wb.active
    ws.title = "通讯录"
    ws.append(["市农村电商工作通讯录"])
    ws.append(["邮箱", "单位", "电话", "联系人", "类别"])  # 列序不同
    ws.append(["a@x.cn；b@x.cn", "市商务局", 5541234567, "张三", "部门"])
    ws.append([None, "寿县", None, None, "县"])
    ws.append([None, None, None, None, None])
    path = tmp_path / "c.xlsx"
    wb.save(path)
    got = settings.read_contacts(path)
    assert got[0].unit == "市商务局" and got[0].addresses == ("a@x.cn", "b@x.cn")
    assert got[0].person == "张三" and got[0].category == "部门" and got[0].phone == "5541234567"
    assert got[1] == Contact("寿县", "县区", "", (), "", got[1].source)
    assert "第4行" in got[1].source
    assert len(got) == 2


def test_read_contacts_missing_sheet_is_clear(tmp_path):
    path = tmp_path / "c.xlsx"
    Workbook().save(path)
    with pytest.raises(ContactsError, match="没有“通讯录”表"):
        settings.read_contacts(path)


@pytest.mark.parametrize("encoding", ["utf-8-sig", "utf-8", "gbk", "utf-16"])
def test_read_contacts_csv_encodings(tmp_path, encoding):
    sep = "\t" if encoding == "utf-16" else ","
    text = sep.join(["单位", "联系人", "邮箱"]) + "\r\n" + sep.join(["市商务局", "张三", '"a@x.cn；b@x.cn"']) + \
        "\r\n" + sep.join(["凤台县", "李四", "c@x.cn"]) + "\r\n"
    path = tmp_path / "contacts.csv"
    path.write_bytes(text.encode(encoding))
    got = settings.read_contacts_csv(path)
    assert [(c.unit, c.person, c.addresses, c.category) for c in got] == [
        ("市商务局", "张三", ("a@x.cn", "b@x.cn"), ""),
        ("凤台县", "李四", ("c@x.cn",), ""),
    ]


def test_read_contacts_csv_errors_name_the_file(tmp_path):
    with pytest.raises(ContactsError, match="找不到通讯录文件"):
        settings.read_contacts_csv(tmp_path / "无.csv")
    path = tmp_path / "bad.csv"
    path.write_text("名称,电话\n市商务局,1\n", encoding="utf-8")
    with pytest.raises(ContactsError, match="bad.csv.*单位.*邮箱"):
        settings.read_contacts_csv(path)


# ---------------------------------------------------------------------------
# 地址、规划、邮件编码
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("raw,expected", [
    ("a@x.cn", "a@x.cn"),
    ("  zhang.san+task@mail.hn.gov.cn ", "zhang.san+task@mail.hn.gov.cn"),
    ("ａｂｃ＠ｘ．ｃｎ", "abc@x.cn"),  # 全角
])
def test_normalize_address_accepts(raw, expected):
    assert mail.normalize_address(raw) == expected


@pytest.mark.parametrize("raw", [
    "abc", "a@b", "a b@x.cn", "a@@x.cn", "a@x.cn>", "张三@x.cn", "a@x..cn", ".a@x.cn",
    "a@x.cn\r\nBcc: evil@e.cn", "a@[127.0.0.1]", "a@-x.cn", "",
])
def test_normalize_address_rejects(raw):
    with pytest.raises(ValueError):
        mail.normalize_address(raw)


def test_plan_reports_every_unsendable_unit(tmp_path, city):
    contacts = settings.read_contacts(city.workbook) + [
        Contact("市农业农村局", "部门", "", ("nyj@x.cn",), source="通讯录 第9行"),     # 没有生成文件
        Contact("市财政局", "部门", "赵六", ()),                                      # 没有地址
        Contact("寿县", "县区", "", ("not-an-address", "good@x.cn")),                 # 一个坏地址
        Contact("../../机密", "部门", "", ("x@x.cn",)),                               # 路径穿越
        Contact("八公山区", "企业", "", ("b@x.cn",)),                                 # 类别无效
        Contact("凤台县", "", "", ("ft-c@x.cn",)),                                    # 类别未填：按文件判断
        Contact("市商务局", "部门", "", ("SWJ1@hn.example.cn", "swj1@hn.example.cn")),  # 重复的地址
    ]
    plan = mail.plan_messages(settings.read_settings(city.workbook), contacts, city.out_dir)
    reasons = {(p.subject, p.address): p.message for p in plan.problems}
    assert "找不到附件" in reasons[("市农业农村局", "")]
    assert "没有邮箱地址" in reasons[("市财政局", "")]
    assert "不是有效邮箱地址" in reasons[("寿县", "not-an-address")]
    assert "不能用作文件名" in reasons[("../../机密", "")]
    assert "类别“企业”无效" in reasons[("八公山区", "")]
    assert len(plan.problems) == 5
    planned = [(m.unit, m.address) for m in plan.messages]
    assert ("寿县", "good@x.cn") in planned and ("凤台县", "ft-c@x.cn") in planned
    assert planned.count(("寿县", "shouxian@sx.example.cn")) == 1
    assert [a.casefold() for u, a in planned if u == "市商务局"] == ["swj1@hn.example.cn", "swj2@hn.example.cn"]
    ft = next(m for m in plan.messages if m.address == "ft-c@x.cn")
    assert ft.category == "县区" and ft.file == city.paths["凤台县"]
    assert ft.sha256 == hashlib.sha256(city.files["凤台县"]).hexdigest()


def test_plan_fills_templates_and_requires_deadline(city):
    conf = settings.read_settings(city.workbook)
    plan = mail.plan_messages(conf, settings.read_contacts(city.workbook), city.out_dir,
                              today=dt.date(2020, 11, 1))
    first = plan.messages[0]
    assert first.subject == "【请按期报送】农村电商提质增效工作任务表（市商务局）"
    assert "张科长：" in first.body and "2020年11月30日前" in first.body and "市商务局.xlsx" in first.body
    assert "2020年11月1日" in first.body
    county = next(m for m in plan.messages if m.unit == "凤台县")
    assert county.body.startswith("凤台县：")  # 没有联系人时称呼单位
    assert "县区工作簿" in county.subject
    with pytest.raises(MailError, match="报送截止日期.*为空"):
        mail.plan_messages({**conf, "报送截止日期": None}, settings.read_contacts(city.workbook), city.out_dir)
    with pytest.raises(MailError, match="发件人邮箱"):
        mail.plan_messages({**conf, "发件人邮箱": ""}, settings.read_contacts(city.workbook), city.out_dir)
    with pytest.raises(MailError, match="通讯录中没有这些单位：市不存在局"):
        mail.plan_messages(conf, settings.read_contacts(city.workbook), city.out_dir, only=["市不存在局"])


def test_template_with_unknown_placeholder_is_rejected(tmp_path, city):
    for name in ("部门.txt", "县区.txt"):
        (tmp_path / name).write_text("主题：${单位}\n${单位}，请于${截至日期}前报送。\n", encoding="utf-8")
    with pytest.raises(MailError, match=r"未知的占位符：\$\{截至日期\}"):
        mail.plan_messages(settings.read_settings(city.workbook), settings.read_contacts(city.workbook),
                           city.out_dir, template_dir=tmp_path)


def _message(unit="市商务局", person="张三", subject="农村电商任务表（市商务局）", name="市商务局.xlsx",
             address="a@x.cn", data=b"PK\x03\x04 binary \x00\xff"):
    return OutgoingMessage(unit, "部门", person, address, Path("/nonexistent") / name, name,
                           hashlib.sha256(data).hexdigest(), subject, "正文\n第二行", data)


def test_raw_bytes_use_rfc2047_subject_and_rfc2231_filename():
    msg = _message(name="市人力资源社会保障局.xlsx")
    raw = mail.message_bytes(mail.build_message(msg, Sender("淮南市商务局", SENDER)))
    assert raw.isascii()
    head = raw.split(b"\r\n\r\n", 1)[0]
    # RFC 2047 主题和显示名
    subject_line = re.search(rb"^Subject: (.*(?:\r\n .*)*)", head, re.M).group(1)
    assert subject_line.startswith(b"=?utf-8?b?")
    assert str(email.header.make_header(email.header.decode_header(subject_line.decode()))) == msg.subject
    assert re.search(rb"^From: =\?utf-8\?b\?[A-Za-z0-9+/=]+\?= <" + SENDER.encode() + b">", head, re.M)
    # RFC 2231 附件名（Content-Disposition）和 RFC 2047 name（Content-Type，给 Outlook/Foxmail）
    encoded = "%E5%B8%82%E4%BA%BA%E5%8A%9B%E8%B5%84%E6%BA%90%E7%A4%BE%E4%BC%9A%E4%BF%9D%E9%9A%9C%E5%B1%80.xlsx"
    assert b"filename*=utf-8''" + encoded.encode() in raw
    name_param = re.search(rb'name="(=\?utf-8\?b\?[^"]+)"', raw).group(1).decode()
    assert str(email.header.make_header(email.header.decode_header(name_param))) == "市人力资源社会保障局.xlsx"
    parsed = message_from_bytes(raw, policy=policy.default)
    assert parsed["Subject"] == msg.subject
    (part,) = parsed.iter_attachments()
    assert part.get_filename() == "市人力资源社会保障局.xlsx"
    assert part.get_content() == msg.data
    assert part.get_content_type() == "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    assert parsed.get_body(("plain",)).get_content().replace("\r\n", "\n") == "正文\n第二行\n"


def test_names_and_subjects_cannot_inject_headers():
    msg = _message(
        unit="市商务局\r\nBcc: evil@attacker.cn",
        person='x" <evil@attacker.cn>, "y\r\nCc: evil2@attacker.cn',
        subject="任务表\r\nBcc: evil3@attacker.cn\nX-Injected: yes",
    )
    raw = mail.message_bytes(mail.build_message(msg, Sender("商务局\nReply-To: evil@attacker.cn", SENDER)))
    parsed = message_from_bytes(raw, policy=policy.default)
    for header in ("Bcc", "Cc", "X-Injected", "Reply-To"):
        assert parsed[header] is None
    assert [a.addr_spec for a in parsed["To"].addresses] == ["a@x.cn"]
    assert [a.addr_spec for a in parsed["From"].addresses] == [SENDER]
    assert "\n" not in parsed["Subject"] and "Bcc: evil3@attacker.cn" in parsed["Subject"]
    assert not re.search(rb"^(Bcc|Cc|X-Injected|Reply-To):", raw, re.M | re.I)


def test_injection_through_a_real_server(tmp_path, server):
    contacts = dict(CONTACTS)
    contacts["市商务局"] = ("部门", "张三\r\nBcc: evil@attacker.cn", "swj1@hn.example.cn")
    city = make_city(tmp_path, server.port, contacts={"市商务局": contacts["市商务局"]})
    result = run_cli([str(city.workbook)])
    assert result.code == 0, result.stdout + result.stderr
    (received,) = server.received
    assert received.rcpt_tos == ["swj1@hn.example.cn"]
    assert received.message["Bcc"] is None
    assert "evil@attacker.cn" not in [a.addr_spec for a in received.message["To"].addresses]


# ---------------------------------------------------------------------------
# 真实服务器：正常发送
# ---------------------------------------------------------------------------


def test_all_messages_arrive_byte_identical_and_are_logged(city, server):
    result = run_cli([str(city.workbook)])
    assert result.code == 0, result.stdout + result.stderr
    assert "成功 6，失败 0，未发送 0" in result.stdout
    assert_delivered_once(server, city)
    for received in server.received:
        assert received.mail_from == SENDER
        msg = received.message
        assert [a.addr_spec for a in msg["To"].addresses] == received.rcpt_tos
        assert msg["From"].addresses[0].display_name == "淮南市商务局"
        assert "农村电商提质增效" in msg["Subject"]
    # 台账记录：每封一行“已发送”，带文件、类别、服务器回复和固定的 Message-ID
    records = log_rows(city)
    assert [r.result for r in records] == [RESULT_SENT] * 6
    for r in records:
        unit_file = city.paths[r.unit]
        assert r.file == str(unit_file.relative_to(city.out_dir))
        assert r.kind == CONTACTS[r.unit][0]
        assert r.reply.startswith("250 2.0.0 Ok: queued as Q")
        assert r.message_id == expected_message_id(city, r.unit, r.address)
        assert r.message_id.startswith("<") and r.message_id.endswith("@hn.example.cn>")
        dt.datetime.strptime(r.time, "%Y-%m-%d %H:%M:%S")
    ids = {m.message["Message-ID"] for m in server.received}
    assert ids == {r.message_id for r in records} and len(ids) == 6
    # 进度条在 stderr（Progress 协议：第几封 / 共几封）
    assert "6/6 完成" in result.stderr and "1/6 市商务局 <swj1@hn.example.cn>" in result.stderr
    # CSV 是台账的导出：UTF-8 带 BOM，一个 BOM
    raw_log = city.log.read_bytes()
    assert raw_log.startswith(b"\xef\xbb\xbf") and raw_log.count(b"\xef\xbb\xbf") == 1
    exported = export_rows(city)
    assert [row["状态"] for row in exported] == ["已发送"] * 6
    assert {row["Message-ID"] for row in exported} == ids
    assert "台账" in result.stdout


def test_resend_failed_after_full_success_sends_nothing_and_plain_run_warns(city, server):
    assert run_cli([str(city.workbook)]).code == 0
    again = run_cli([str(city.workbook), "--resend-failed"])
    assert again.code == 0
    assert "此前已成功发送的 6 封没有重复发送" in again.stdout
    assert len(server.received) == 6
    # 明确不带 --resend-failed 再发一次：会重发，并提示
    plain = run_cli([str(city.workbook), "--only", "寿县"])
    assert plain.code == 0
    assert "此前已成功发送过同一文件" in plain.stdout
    assert server.by_recipient()["shouxian@sx.example.cn"] == 2
    # 重新生成的文件（SHA-256 不同）不算已发送
    from mail_helpers import make_xlsx
    make_xlsx(city.paths["市财政局"], "市财政局", 99)
    regen = run_cli([str(city.workbook), "--resend-failed"])
    assert regen.code == 0
    assert server.by_recipient()["czj@hn.example.cn"] == 2
    assert len(server.received) == 8
    # CSV 每批后由台账整份重写：仍然只有一个 BOM、一行表头，行数等于台账里的记录数
    raw = city.log.read_bytes()
    assert raw.count(b"\xef\xbb\xbf") == 1 and raw.count("时间,轮次,单位".encode()) == 1
    assert len(export_rows(city)) == len(attempts(city)) == 8


def test_contacts_csv_and_only_option(tmp_path, city, server):
    csv_path = tmp_path / "通讯录.csv"
    csv_path.write_bytes("单位,联系人,邮箱\r\n寿县,王五,csv-sx@sx.example.cn\r\n市财政局,李四,csv-cz@hn.example.cn\r\n"
                         .encode("gbk"))
    result = run_cli([str(city.workbook), "--contacts", str(csv_path), "--only", "寿县"])
    assert result.code == 0, result.stdout + result.stderr
    (received,) = server.received
    assert received.rcpt_tos == ["csv-sx@sx.example.cn"]
    assert attachment_of(received).get_content() == city.files["寿县"]


def test_out_option_and_missing_output_folder(tmp_path, city, server):
    moved = tmp_path / "别处"
    city.out_dir.rename(moved)
    missing = run_cli([str(city.workbook)])
    assert missing.code == 2 and "找不到输出文件夹" in missing.stderr
    result = run_cli([str(city.workbook), "--out", str(moved), "--only", "市财政局"])
    assert result.code == 0, result.stdout + result.stderr
    assert server.by_recipient() == Counter({"czj@hn.example.cn": 1})


def test_unit_without_address_is_reported_and_recorded(tmp_path, server):
    contacts = {"市商务局": ("部门", "张三", "swj1@hn.example.cn"), "市财政局": ("部门", "李四", "")}
    city = make_city(tmp_path, server.port, contacts=contacts)
    result = run_cli([str(city.workbook)])
    assert result.code == 1
    assert "“市财政局”没有邮箱地址" in result.stdout
    assert server.by_recipient() == Counter({"swj1@hn.example.cn": 1})
    records = log_rows(city)
    assert (records[0].unit, records[0].result) == ("市财政局", RESULT_NOT_SENT)
    assert "没有邮箱地址" in records[0].reply
    assert attempts(city)[0].status == "失败" and attempts(city)[0].detail.startswith("未发送：")


# ---------------------------------------------------------------------------
# 真实服务器：故障
# ---------------------------------------------------------------------------


def test_server_down_records_nothing_sent_then_resend_completes(tmp_path):
    port = free_port()  # 没有服务器在监听
    city = make_city(tmp_path, port)
    result = run_cli([str(city.workbook)])
    assert result.code == 1
    assert "未发送 6" in result.stdout and "--resend-failed" in result.stdout
    assert result.sleep.delays == list(RETRY_DELAYS)  # 连不上：按退避重试
    records = log_rows(city)
    assert [r.result for r in records] == [RESULT_RETRY] * 3 + [RESULT_NOT_SENT] * 6
    assert all(f"无法连接 SMTP 服务器 127.0.0.1:{port}" in r.reply for r in records)
    assert set(final_results(records).values()) == {RESULT_NOT_SENT}

    server = SmtpServer(port=port).start()
    try:
        resend = run_cli([str(city.workbook), "--resend-failed"])
        assert resend.code == 0, resend.stdout + resend.stderr
        assert_delivered_once(server, city)
        assert set(final_results(log_rows(city)).values()) == {RESULT_SENT}
    finally:
        server.stop()


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
def test_auth_rejected_then_resend_with_keyring_password(tmp_path):
    server = SmtpServer(auth=True).start()
    previous = keyring.get_keyring()
    try:
        city = make_city(tmp_path, server.port, user=USER)
        # 没有密码：明确提示，不连接
        none = run_cli([str(city.workbook)])
        assert none.code == 2 and "找不到密码" in none.stderr and "XL_ECOM_SMTP_PASSWORD" in none.stderr
        assert server.auth_attempts == [] and not city.log.exists()
        # 错误密码：服务器拒绝，整批未发送，不重试
        wrong = run_cli([str(city.workbook)], env={"XL_ECOM_SMTP_PASSWORD": "wrong-password"})
        assert wrong.code == 1
        # smtplib 会把服务器提供的各种登录方式都试一遍，但整批只连接一次、不按退避重试
        assert set(server.auth_attempts) == {(USER, "wrong-password")}
        assert server.handler.connections == 1
        assert wrong.sleep.delays == []
        assert server.received == []
        records = log_rows(city)
        assert [r.result for r in records] == [RESULT_NOT_SENT] * 6
        assert all("SMTP 登录被拒绝（535" in r.reply for r in records)
        assert "wrong-password" not in city.log.read_text(encoding="utf-8-sig") + wrong.stdout + wrong.stderr
        # 密码放进系统钥匙串（keyring）后补发
        store = MemoryKeyring()
        keyring.set_keyring(store)
        store.set_password(mail.KEYRING_SERVICE, USER, PASSWORD)
        ok = run_cli([str(city.workbook), "--resend-failed"])
        assert ok.code == 0, ok.stdout + ok.stderr
        assert_delivered_once(server, city)
        everything = city.log.read_text(encoding="utf-8-sig") + ok.stdout + ok.stderr
        assert PASSWORD not in everything
    finally:
        keyring.set_keyring(previous)
        server.stop()


class MemoryKeyring(KeyringBackend):
    """内存中的 keyring 后端（测试机没有系统钥匙串）。"""

    priority = 1

    def __init__(self):
        super().__init__()
        self.store = {}

    def get_password(self, service, username):
        return self.store.get((service, username))

    def set_password(self, service, username, password):
        self.store[(service, username)] = password

    def delete_password(self, service, username):
        self.store.pop((service, username), None)


def test_env_password_takes_precedence_over_keyring(monkeypatch):
    previous = keyring.get_keyring()
    try:
        store = MemoryKeyring()
        keyring.set_keyring(store)
        store.set_password("xl-ecom", "u", "from-keyring")
        assert mail.get_password("u", env={}) == "from-keyring"
        assert mail.get_password("u", env={"XL_ECOM_SMTP_PASSWORD": "from-env"}) == "from-env"
        assert mail.get_password("other", env={}) is None
    finally:
        keyring.set_keyring(previous)


def test_one_bad_address_among_good_ones(tmp_path, server):
    contacts = dict(CONTACTS)
    contacts["市财政局"] = ("部门", "李四", "czj@hn.example.cn；lisi.hn.example.cn；unknown@hn.example.cn")
    city = make_city(tmp_path, server.port, contacts=contacts)
    server.handler.rcpt_permanent.add("unknown@hn.example.cn")  # 服务器拒收的地址
    result = run_cli([str(city.workbook)])
    assert result.code == 1
    # 格式错误的地址在发送前报告；服务器 550 拒收的记“失败”、不重试；其余照常送达
    assert "不是有效邮箱地址" in result.stdout and "lisi.hn.example.cn" in result.stdout
    assert result.sleep.delays == []
    assert server.handler.rcpt_attempts["unknown@hn.example.cn"] == 1
    assert_delivered_once(server, city)
    finals = final_results(log_rows(city))
    assert finals[("市财政局", "unknown@hn.example.cn")] == RESULT_FAILED
    assert finals[("市财政局", "lisi.hn.example.cn")] == RESULT_NOT_SENT
    assert [v for v in finals.values() if v == RESULT_SENT].__len__() == 6
    failed = [r for r in log_rows(city) if r.result == RESULT_FAILED]
    assert len(failed) == 1 and failed[0].reply.startswith("550 5.1.1")
    # 收件人的邮箱修好后补发：只发这一封
    server.handler.rcpt_permanent.clear()
    resend = run_cli([str(city.workbook), "--resend-failed"])
    assert resend.code == 1  # 格式错误的地址仍然在通讯录里，继续报告
    assert server.by_recipient() == Counter({**{a: 1 for a in ALL_ADDRESSES}, "unknown@hn.example.cn": 1})


def test_drop_after_data_is_uncertain_not_resent_blindly(city, server):
    """连接在邮件内容（含结尾的“.”）发完之后、250 之前断开：记“不确定”，不自动重发。"""
    server.handler.drop_at_data = 3
    server.handler.keep_dropped = True  # 服务器其实已收下，只是 250 没送到
    result = run_cli([str(city.workbook)])
    assert result.code == 1
    assert result.sleep.delays == []  # 不按临时错误重试
    assert server.handler.connections == 2  # 断开后重连，继续发其余各封
    assert server.by_recipient() == Counter({a: 1 for a in ALL_ADDRESSES})
    finals = final_results(log_rows(city))
    assert finals[("市财政局", "czj@hn.example.cn")] == RESULT_UNCERTAIN
    assert [v for v in finals.values()].count(RESULT_SENT) == 5
    (uncertain,) = [a for a in attempts(city) if a.status == "不确定"]
    assert uncertain.message_id == expected_message_id(city, "市财政局", "czj@hn.example.cn")
    assert "服务器确认收到之前连接中断" in uncertain.detail
    assert "不确定 1" in result.stdout and "不确定：市财政局 <czj@hn.example.cn>" in result.stdout
    assert "--resend-uncertain" in result.stdout and "Message-ID" in result.stdout

    # --resend-failed：不重发不确定的，列出来并用中文说明
    again = run_cli([str(city.workbook), "--resend-failed"])
    assert again.code == 1
    assert len(server.received) == 6
    assert "有 1 封邮件上次发送结果不确定，本次没有重发" in again.stdout
    assert "不确定：市财政局 <czj@hn.example.cn>" in again.stdout
    assert "服务器可能已经收下" in again.stdout and "--resend-uncertain" in again.stdout
    # 不带参数的普通发送也不会悄悄重发它
    plain = run_cli([str(city.workbook), "--only", "市财政局"])
    assert plain.code == 1 and len(server.received) == 6
    assert "本次没有重发" in plain.stdout

    # 明确要求 --resend-uncertain：重发，Message-ID 与上次相同（对方客户端可据此去重）；已发送的不重复
    resend = run_cli([str(city.workbook), "--resend-uncertain"])
    assert resend.code == 0, resend.stdout + resend.stderr
    assert "此前已成功发送的 5 封没有重复发送" in resend.stdout
    copies = [r for r in server.received if r.rcpt_tos == ["czj@hn.example.cn"]]
    assert len(copies) == 2
    assert copies[0].message["Message-ID"] == copies[1].message["Message-ID"] == uncertain.message_id
    assert attachment_of(copies[1]).get_content() == city.files["市财政局"]
    # 之后就是“已发送”：再补发什么也不发
    assert run_cli([str(city.workbook), "--resend-failed"]).code == 0
    assert len(server.received) == 7


def test_no_reply_after_the_final_dot_within_the_timeout_is_uncertain(city, server):
    """慢服务器：内容发完后超时还没回复 250（服务器其实收下了）。记“不确定”，不重试，不重复。"""
    server.handler.data_delay["czj@hn.example.cn"] = 2.5
    result = run_cli([str(city.workbook)], timeout=1)
    assert result.code == 1
    assert result.sleep.delays == []
    assert final_results(log_rows(city))[("市财政局", "czj@hn.example.cn")] == RESULT_UNCERTAIN
    assert server.by_recipient() == Counter({a: 1 for a in ALL_ADDRESSES})
    resend = run_cli([str(city.workbook), "--resend-failed"], timeout=1)
    assert resend.code == 1 and len(server.received) == 6 and "本次没有重发" in resend.stdout


def test_connection_dropped_midway_and_server_gone(city, server):
    server.handler.drop_at_data = 3
    server.handler.refuse_after_drop = True
    result = run_cli([str(city.workbook)])
    assert result.code == 1
    finals = final_results(log_rows(city))
    assert finals == {
        ("市商务局", "swj1@hn.example.cn"): RESULT_SENT,
        ("市商务局", "swj2@hn.example.cn"): RESULT_SENT,
        ("市财政局", "czj@hn.example.cn"): RESULT_UNCERTAIN,  # 内容发完后断开：不确定
        ("寿县", "shouxian@sx.example.cn"): RESULT_NOT_SENT,
        ("凤台县", "ft-a@ft.example.cn"): RESULT_NOT_SENT,
        ("凤台县", "ft-b@ft.example.cn"): RESULT_NOT_SENT,
    }
    assert server.by_recipient() == Counter({"swj1@hn.example.cn": 1, "swj2@hn.example.cn": 1})
    # 服务器恢复后补发：补上没发出的三封；不确定的那封列出来、不重发
    server.handler.refusing = False
    server.handler.drop_at_data = None
    resend = run_cli([str(city.workbook), "--resend-failed"])
    assert resend.code == 1, resend.stdout + resend.stderr
    assert "此前已成功发送的 2 封没有重复发送" in resend.stdout
    assert "不确定：市财政局 <czj@hn.example.cn>" in resend.stdout
    assert "czj@hn.example.cn" not in server.by_recipient()
    assert len(server.received) == 5
    # 确认对方没有收到后明确重发
    last = run_cli([str(city.workbook), "--resend-uncertain"])
    assert last.code == 0, last.stdout + last.stderr
    assert_delivered_once(server, city)


def test_drop_before_the_final_dot_is_retried(city, server):
    """内容还没发完连接就断了（服务器不可能已收下）：按临时错误重试，不算不确定。"""
    import smtplib

    real_send = smtplib.SMTP.send
    state = {"dropped": False}

    def send(self, data):
        if (isinstance(data, bytes) and not state["dropped"] and data.endswith(b"\r\n.\r\n")
                and b"czj@hn.example.cn" in data):
            state["dropped"] = True
            real_send(self, data[: len(data) // 2])
            self.sock.shutdown(2)  # 真实的半截断开：服务器只收到一半内容
        return real_send(self, data)

    smtplib.SMTP.send = send
    try:
        result = run_cli([str(city.workbook)])
    finally:
        smtplib.SMTP.send = real_send
    assert result.code == 0, result.stdout + result.stderr
    assert state["dropped"]
    assert result.sleep.delays == [RETRY_DELAYS[0]]
    assert_delivered_once(server, city)
    retry = [r for r in log_rows(city) if r.result == RESULT_RETRY]
    assert len(retry) == 1 and retry[0].address == "czj@hn.example.cn" and "连接中断" in retry[0].reply
    assert RESULT_UNCERTAIN not in {r.result for r in log_rows(city)}


@pytest.mark.parametrize("fault", ["ehlo", "helo"])
def test_4xx_to_ehlo_or_helo_is_retried_like_any_4xx(city, server, fault):
    if fault == "ehlo":
        server.handler.ehlo_temporary = 2      # 前两次 EHLO 回复 421
    else:
        server.handler.ehlo_unsupported = True  # 不支持 EHLO（502），改用 HELO
        server.handler.helo_temporary = 2       # 前两次 HELO 回复 421
    result = run_cli([str(city.workbook)])
    assert result.code == 0, result.stdout + result.stderr
    assert result.sleep.delays == [RETRY_DELAYS[0], RETRY_DELAYS[1]]
    assert_delivered_once(server, city)
    retries = [r for r in log_rows(city) if r.result == RESULT_RETRY]
    assert len(retries) == 2 and all("421" in r.reply and fault.upper() in r.reply for r in retries)
    if fault == "helo":
        assert server.handler.helo_count == 3


def test_4xx_to_ehlo_forever_stops_the_batch_as_not_sent(city, server):
    server.handler.ehlo_temporary = 100
    result = run_cli([str(city.workbook)])
    assert result.code == 1
    assert result.sleep.delays == list(RETRY_DELAYS)
    assert server.received == []
    assert set(final_results(log_rows(city)).values()) == {RESULT_NOT_SENT}
    assert "重试 3 次后仍失败" in result.stdout and "EHLO：421" in result.stdout
    server.handler.ehlo_temporary = 0
    assert run_cli([str(city.workbook), "--resend-failed"]).code == 0
    assert_delivered_once(server, city)


def test_temporary_4xx_is_retried_with_increasing_backoff(city, server):
    server.handler.rcpt_temporary["czj@hn.example.cn"] = 2     # 451 两次
    server.handler.data_temporary["shouxian@sx.example.cn"] = 1  # DATA 后 451 一次
    result = run_cli([str(city.workbook)])
    assert result.code == 0, result.stdout + result.stderr
    assert result.sleep.delays == [RETRY_DELAYS[0], RETRY_DELAYS[1], RETRY_DELAYS[0]]
    assert server.handler.rcpt_attempts["czj@hn.example.cn"] == 3
    assert_delivered_once(server, city)
    rows = [(r.address, r.result) for r in log_rows(city) if r.address in ("czj@hn.example.cn",
                                                                          "shouxian@sx.example.cn")]
    assert rows == [("czj@hn.example.cn", RESULT_RETRY), ("czj@hn.example.cn", RESULT_RETRY),
                    ("czj@hn.example.cn", RESULT_SENT), ("shouxian@sx.example.cn", RESULT_RETRY),
                    ("shouxian@sx.example.cn", RESULT_SENT)]
    assert all(r.reply.startswith("451") for r in log_rows(city) if r.result == RESULT_RETRY)


def test_temporary_4xx_forever_fails_after_retries_and_batch_continues(city, server):
    server.handler.rcpt_temporary["czj@hn.example.cn"] = 100
    result = run_cli([str(city.workbook)])
    assert result.code == 1
    assert result.sleep.delays == list(RETRY_DELAYS)
    assert server.handler.rcpt_attempts["czj@hn.example.cn"] == len(RETRY_DELAYS) + 1
    others = [a for a in ALL_ADDRESSES if a != "czj@hn.example.cn"]
    assert server.by_recipient() == Counter({a: 1 for a in others})
    finals = final_results(log_rows(city))
    assert finals[("市财政局", "czj@hn.example.cn")] == RESULT_FAILED
    assert "重试 3 次后仍失败：451" in result.stdout
    server.handler.rcpt_temporary.clear()
    assert run_cli([str(city.workbook), "--resend-failed"]).code == 0
    assert_delivered_once(server, city)


def test_permanent_5xx_after_data_is_recorded_not_retried(city, server):
    server.handler.data_permanent.add("ft-a@ft.example.cn")
    result = run_cli([str(city.workbook)])
    assert result.code == 1
    assert result.sleep.delays == []
    assert server.handler.data_count == 6
    records = log_rows(city)
    failed = [r for r in records if r.result != RESULT_SENT]
    assert [(r.address, r.result) for r in failed] == [("ft-a@ft.example.cn", RESULT_FAILED)]
    assert failed[0].reply == "554 5.6.0 Message content rejected"
    assert "失败：凤台县 <ft-a@ft.example.cn>：554" in result.stdout
    server.handler.data_permanent.clear()
    assert run_cli([str(city.workbook), "--resend-failed"]).code == 0
    assert_delivered_once(server, city)


# ---------------------------------------------------------------------------
# 加密连接
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory):
    return self_signed_cert(tmp_path_factory.mktemp("tls"))


def _contexts(tls_files):
    cert, key = tls_files
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)
    client_ctx = ssl.create_default_context(cafile=str(cert))
    return server_ctx, client_ctx


@pytest.mark.parametrize("mode", ["--ssl", "--starttls"])
def test_ssl_and_starttls(tmp_path, tls_files, mode):
    server_ctx, client_ctx = _contexts(tls_files)
    kwargs = {"ssl_context": server_ctx} if mode == "--ssl" else {"tls_context": server_ctx}
    server = SmtpServer(**kwargs).start()
    try:
        city = make_city(tmp_path, server.port, security="无")
        result = run_cli([str(city.workbook), mode, "--only", "寿县"], ssl_context=client_ctx)
        assert result.code == 0, result.stdout + result.stderr
        assert server.by_recipient() == Counter({"shouxian@sx.example.cn": 1})
        # 不信任的证书：拒绝连接（不会退回明文）
        bad = run_cli([str(city.workbook), mode, "--only", "寿县"])
        assert bad.code == 1 and "加密连接失败" in bad.stdout
        assert len(server.received) == 1
    finally:
        server.stop()


def test_starttls_not_supported_is_reported(city, server):
    result = run_cli([str(city.workbook), "--starttls", "--only", "寿县"])
    assert result.code == 1
    assert "不支持STARTTLS" in result.stdout
    assert server.received == []


# ---------------------------------------------------------------------------
# 试运行与命令行输入
# ---------------------------------------------------------------------------


def test_dry_run_writes_eml_and_sends_nothing(tmp_path, city, server):
    eml_dir = tmp_path / "eml"
    result = run_cli([str(city.workbook), "--dry-run", str(eml_dir)])
    assert result.code == 0, result.stdout + result.stderr
    assert "没有发送任何邮件" in result.stdout
    assert server.received == [] and server.handler.connections == 0
    assert not city.log.exists()
    files = sorted(eml_dir.glob("*.eml"))
    assert len(files) == 6
    seen = Counter()
    for path in files:
        parsed = message_from_bytes(path.read_bytes(), policy=policy.default)
        (to,) = parsed["To"].addresses
        seen[to.addr_spec] += 1
        (part,) = parsed.iter_attachments()
        unit = part.get_filename()[:-5]
        assert part.get_content() == city.files[unit]
        assert unit in parsed["Subject"]
    assert seen == Counter({a: 1 for a in ALL_ADDRESSES})


def test_dry_run_needs_no_server_or_password(tmp_path):
    city = make_city(tmp_path, 1, user=USER, settings_overrides={"SMTP服务器": ""})
    result = run_cli([str(city.workbook), "--dry-run", str(tmp_path / "eml")])
    assert result.code == 0, result.stderr
    assert len(list((tmp_path / "eml").glob("*.eml"))) == 6


@pytest.mark.parametrize("argv_tail,fragment", [
    (["--smtp-port", "abc"], "SMTP 端口“abc”无效"),
    (["--smtp-port", "0"], "SMTP 端口“0”无效"),
    (["--only", "市不存在局"], "通讯录中没有这些单位：市不存在局"),
    (["--contacts", "不存在.csv"], "找不到通讯录文件：不存在.csv"),
    (["--smtp-host", ""], "没有 SMTP 服务器"),
])
def test_bad_cli_input_is_a_clear_chinese_message(city, argv_tail, fragment):
    result = run_cli([str(city.workbook), *argv_tail])
    assert result.code == 2
    assert result.stderr.startswith("错误：") and fragment in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_os_errors_are_messages_not_tracebacks(tmp_path, city):
    blocker = tmp_path / "是文件"
    blocker.write_text("x", encoding="utf-8")
    result = run_cli([str(city.workbook), "--dry-run", str(blocker)])
    assert result.code == 2 and result.stderr.startswith("错误：文件操作失败") and "是文件" in result.stderr


def test_bad_workbook_inputs(tmp_path):
    missing = run_cli([str(tmp_path / "没有.xlsx")])
    assert missing.code == 2 and "找不到工作簿" in missing.stderr and "没有.xlsx" in missing.stderr
    garbage = tmp_path / "坏.xlsx"
    garbage.write_bytes(b"not a zip")
    bad = run_cli([str(garbage)])
    assert bad.code == 2 and "不是有效的 Excel 文件" in bad.stderr
    city = make_city(tmp_path / "c", 25, settings_overrides={"SMTP端口": "二十五"})
    port = run_cli([str(city.workbook)])
    assert port.code == 2 and "“SMTP端口”的值“二十五”不是有效端口号" in port.stderr


def test_password_row_in_workbook_is_warned_and_never_used(tmp_path, server):
    city = make_city(tmp_path, server.port)
    wb = load_workbook(city.workbook)
    wb["设置"].append(["SMTP密码", "leaked-secret", ""])
    wb.save(city.workbook)
    result = run_cli([str(city.workbook), "--only", "寿县"])
    assert result.code == 0
    assert "“SMTP密码”一行已忽略" in result.stderr
    assert "leaked-secret" not in result.stdout + result.stderr + city.log.read_text(encoding="utf-8-sig")


def test_unreadable_old_log_stops_before_sending(city, server):
    """台账还没有发送记录、旧 CSV 记录却读不了：不知道发过什么就不发。"""
    city.log.mkdir()  # 占住 CSV 的路径：无法读取
    result = run_cli([str(city.workbook)])
    assert result.code == 2 and "发送记录" in result.stderr and "请先关闭" in result.stderr
    assert server.received == []


def test_export_that_cannot_be_written_is_a_note_not_a_loss(city, server):
    """CSV 只是导出：写不了（如在 Excel 中打开着）时照常发送、记进台账，并提示重新导出。"""
    assert run_cli([str(city.workbook), "--only", "寿县"]).code == 0
    city.log.unlink()
    city.log.mkdir()
    result = run_cli([str(city.workbook), "--resend-failed"])
    assert result.code == 0, result.stdout + result.stderr
    assert "发送记录已存入台账，但无法导出" in result.stdout and "请关闭后重新运行" in result.stdout
    assert server.by_recipient() == Counter({a: 1 for a in ALL_ADDRESSES})
    assert len(log_rows(city)) == 6
    city.log.rmdir()
    assert run_cli([str(city.workbook), "--resend-failed"]).code == 0
    assert len(export_rows(city)) == 6 and len(server.received) == 6


def test_export_resaved_as_gbk_is_rewritten_and_formula_like_text_neutralised(city, server):
    assert run_cli([str(city.workbook), "--only", "寿县"]).code == 0
    text = city.log.read_text(encoding="utf-8-sig")
    city.log.write_bytes(text.encode("gbk"))  # 在 Excel 里另存为 CSV（GBK）
    again = run_cli([str(city.workbook), "--only", "寿县", "--resend-failed"])
    assert again.code == 0 and "此前已成功发送的 1 封没有重复发送" in again.stdout
    assert server.by_recipient() == Counter({"shouxian@sx.example.cn": 1})
    assert city.log.read_bytes().startswith(b"\xef\xbb\xbf")  # 台账整份重写：又是 UTF-8 带 BOM
    assert export_rows(city)[0]["单位"] == "寿县"
    # 旧格式的读写工具（导入旧记录用）仍然中和公式样文本
    record = mail.SendRecord("t", "=HYPERLINK(\"x\")", "a@x.cn", "f", "0" * 64, RESULT_FAILED, "-ERR", "")
    with mail.CsvLog(city.out_dir / "l.csv") as log:
        log.append(record)
    raw = (city.out_dir / "l.csv").read_text(encoding="utf-8-sig")
    assert "'=HYPERLINK" in raw and "'-ERR" in raw
    assert mail.read_log(city.out_dir / "l.csv") == [record]


def test_mail_refuses_while_another_command_or_excel_holds_the_workbook(tmp_path, city, server):
    import subprocess
    import sys
    import time

    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time\nfrom xl_ecom.ledger.lock import workbook_lock\n"
         "with workbook_lock(sys.argv[1], '汇总县区报表'):\n    print('held', flush=True)\n    time.sleep(60)\n",
         str(city.workbook)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        busy = run_cli([str(city.workbook)])
        assert busy.code == 2 and "汇总县区报表" in busy.stderr and "发送邮件" in busy.stderr
        assert server.received == []
        # 试运行什么也不写，不受影响
        assert run_cli([str(city.workbook), "--dry-run", str(tmp_path / "eml")]).code == 0
    finally:
        holder.kill()
        holder.wait()
    time.sleep(0.1)
    office = city.workbook.with_name("~$" + city.workbook.name)  # Excel 打开着这本工作簿
    office.write_bytes(b"\x00" * 162)
    opened = run_cli([str(city.workbook)])
    assert opened.code == 2 and opened.stderr.startswith("错误：") and server.received == []
    office.unlink()
    assert run_cli([str(city.workbook)]).code == 0
    assert_delivered_once(server, city)


def test_resend_failed_also_honours_the_workbook_record_sheet(city, server):
    """功能区按钮写在“发送记录”表里的成功记录，命令行补发时同样不重复。"""
    plan = mail.plan_messages(settings.read_settings(city.workbook), settings.read_contacts(city.workbook),
                              city.out_dir)
    sx = next(m for m in plan.messages if m.unit == "寿县")
    wb = load_workbook(city.workbook)
    ws = wb.create_sheet(mail.RECORD_SHEET)
    ws.append(list(mail.RECORD_HEADERS))
    ws.append(["2020-11-01 09:00:00", "寿县", sx.address, sx.file_label, sx.sha256, RESULT_SENT, "250 OK", "<x@y>"])
    wb.save(city.workbook)
    result = run_cli([str(city.workbook), "--resend-failed"])
    assert result.code == 0
    assert "shouxian@sx.example.cn" not in server.by_recipient()
    assert len(server.received) == 5


# ---------------------------------------------------------------------------
# Excel 功能区层（xlwings）
# ---------------------------------------------------------------------------
# 这里没有 Excel；下面的替身只实现 send_mail_from_book 用到的那几个 xlwings 接口，
# 并先检查这些接口在真实的 xlwings 类上存在、签名一致，替身不会悄悄偏离真实 API。


def test_xlwings_api_used_by_the_ribbon_layer_exists():
    import inspect

    from xlwings import main as xw

    for cls, names in [(xw.Book, ["fullname", "sheets", "app"]), (xw.App, ["status_bar", "alert"]),
                       (xw.Sheet, ["used_range", "range", "name"]),
                       (xw.Range, ["last_cell", "options", "value", "number_format", "row", "column"])]:
        for name in names:
            assert hasattr(cls, name), (cls, name)
    assert list(inspect.signature(xw.Sheets.add).parameters)[:4] == ["self", "name", "before", "after"]
    assert "title" in inspect.signature(xw.App.alert).parameters
    assert list(inspect.signature(xw.Sheet.range).parameters)[:3] == ["self", "cell1", "cell2"]


class FakeRange:
    def __init__(self, sheet, first, last=None):
        self.sheet, self.first, self.last = sheet, first, last or first
        self.ndim = None

    @property
    def row(self):
        return self.first[0]

    @property
    def column(self):
        return self.first[1]

    def options(self, ndim=None):
        self.ndim = ndim
        return self

    @property
    def last_cell(self):
        return FakeRange(self.sheet, self.last)

    @property
    def value(self):
        (r1, c1), (r2, c2) = self.first, self.last
        rows = [[self.sheet.cells.get((r, c)) for c in range(c1, c2 + 1)] for r in range(r1, r2 + 1)]
        if self.ndim == 2:
            return rows
        if (r1, c1) == (r2, c2):
            return rows[0][0]  # 与 xlwings 一样：单个单元格是标量
        return rows if r1 != r2 else rows[0]

    @value.setter
    def value(self, values):
        r, c = self.first
        if not isinstance(values, list):
            values = [values]
        for offset, v in enumerate(values):
            assert not (isinstance(v, str) and v.startswith("=")), "会被 Excel 当成公式"
            self.sheet.cells[(r, c + offset)] = v

    @property
    def number_format(self):
        return self.sheet.formats.get(self.first)

    @number_format.setter
    def number_format(self, fmt):
        self.sheet.formats[self.first] = fmt


class FakeSheet:
    def __init__(self, name, rows=()):
        self.name = name
        self.cells = {}
        self.formats = {}
        for r, row in enumerate(rows, start=1):
            for c, v in enumerate(row, start=1):
                if v is not None:
                    self.cells[(r, c)] = v

    def range(self, cell1, cell2=None):
        return FakeRange(self, cell1, cell2)

    @property
    def used_range(self):
        if not self.cells:
            return FakeRange(self, (1, 1))
        return FakeRange(self, (1, 1), (max(r for r, _ in self.cells), max(c for _, c in self.cells)))


class FakeSheets(list):
    def __getitem__(self, key):
        if isinstance(key, str):
            for sheet in self:
                if sheet.name == key:
                    return sheet
            raise KeyError(key)
        return list.__getitem__(self, key)

    def add(self, name=None, before=None, after=None):
        sheet = FakeSheet(name)
        self.insert(self.index(after) + 1 if after is not None else 0, sheet)
        return sheet


class FakeApp:
    def __init__(self):
        self.status_history = []
        self.alerts = []
        self._status = False

    @property
    def status_bar(self):
        return self._status

    @status_bar.setter
    def status_bar(self, value):
        self._status = value
        self.status_history.append(value)

    def alert(self, prompt, title=None, buttons="ok", mode=None, callback=None):
        self.alerts.append((title, prompt))


class FakeBook:
    def __init__(self, path, sheets):
        self.fullname = str(path)
        self.sheets = FakeSheets(sheets)
        self.app = FakeApp()


def _fake_book_from(city):
    wb = load_workbook(city.workbook)
    sheets = [FakeSheet(ws.title, list(ws.iter_rows(values_only=True))) for ws in wb.worksheets]
    # 像 xlwings 读 Excel 那样：数字是 float
    for sheet in sheets:
        for k, v in list(sheet.cells.items()):
            if isinstance(v, int):
                sheet.cells[k] = float(v)
    return FakeBook(city.workbook, sheets)


def test_ribbon_layer_sends_records_and_shows_progress(city, server):
    server.handler.rcpt_permanent.add("ft-b@ft.example.cn")
    book = _fake_book_from(city)
    sleep = FakeSleep()
    result = mail.send_mail_from_book(book, env={}, sleep=sleep, retry_delays=RETRY_DELAYS)
    assert result is not None and not result.ok
    assert len(server.received) == 5
    sheet = book.sheets["发送记录"]
    assert book.sheets[-1] is sheet  # 新建在最后
    rows = sheet.used_range.value
    assert tuple(rows[0]) == mail.RECORD_HEADERS
    records = mail.records_from_rows(rows)
    assert [r.result for r in records].count(RESULT_SENT) == 5
    assert final_results(records)[("凤台县", "ft-b@ft.example.cn")] == RESULT_FAILED
    assert sheet.formats[(1, 1)] == "@"  # 时间、SHA-256 按文本
    # 记录在台账里（关闭工作簿不保存也不丢）；表是副本，CSV 是台账的导出
    assert [(r.unit, r.address, r.result, r.message_id) for r in log_rows(city)] == \
        [(r.unit, r.address, r.result, r.message_id) for r in records]
    assert len(export_rows(city)) == len(records)
    # 状态栏：逐封显示进度（common.progress.status_text），最后还给 Excel
    assert book.app.status_history[0] == "正在发送邮件：市商务局 <swj1@hn.example.cn>（1/6）"
    assert book.app.status_history[-2] == "正在发送邮件：凤台县 <ft-b@ft.example.cn>（6/6）"
    assert book.app.status_history[-1] is False
    (title, text), = book.app.alerts
    assert title == "发送邮件" and "失败 1" in text and "再次点击“发送邮件”" in text
    # 再按一次：只补发失败的那封，记录追加在后面
    server.handler.rcpt_permanent.clear()
    again = mail.send_mail_from_book(book, env={}, sleep=sleep, retry_delays=RETRY_DELAYS)
    assert again.ok and len(again.skipped) == 5
    assert_delivered_once(server, city)
    assert len(mail.records_from_rows(sheet.used_range.value)) == len(records) + 1


def test_ribbon_layer_imports_old_records_and_holds_uncertain(city, server):
    """按钮：旧的 CSV 和“发送记录”表里的成功记录导入台账、不重发；发出后结果不确定的不自动重发。"""
    plan = mail.plan_messages(settings.read_settings(city.workbook), settings.read_contacts(city.workbook),
                              city.out_dir)
    by_address = {m.address: m for m in plan.messages}

    def old(m):
        return mail.SendRecord("2020-11-01 09:00:00", m.unit, m.address, m.file_label, m.sha256, "成功",
                               "250 OK", "<old@hn.example.cn>")

    with mail.CsvLog(city.log) as log:
        log.append(old(by_address["swj1@hn.example.cn"]))
    book = _fake_book_from(city)
    sheet = book.sheets.add(mail.RECORD_SHEET, after=book.sheets[len(book.sheets) - 1])
    sheet.range((1, 1)).value = list(mail.RECORD_HEADERS)
    sheet.range((2, 1)).value = old(by_address["shouxian@sx.example.cn"]).row()
    server.handler.drop_at_data = 2  # 本批第 2 封（czj）发完内容后断开
    server.handler.keep_dropped = True
    result = mail.send_mail_from_book(book, env={}, sleep=FakeSleep(), retry_delays=RETRY_DELAYS)
    assert result is not None and not result.ok
    assert server.by_recipient() == Counter({"swj2@hn.example.cn": 1, "czj@hn.example.cn": 1,
                                             "ft-a@ft.example.cn": 1, "ft-b@ft.example.cn": 1})
    (_, text), = book.app.alerts
    assert "中的 2 条导入台账，其中已发送 2 条" in text
    assert "不确定：市财政局 <czj@hn.example.cn>" in text
    assert "xl-ecom mail 工作簿 --resend-uncertain" in text
    rows = mail.records_from_rows(sheet.used_range.value)
    assert [r.result for r in rows[1:]].count(RESULT_UNCERTAIN) == 1
    # 再按一次：不重发那封不确定的，对话框说明
    again = mail.send_mail_from_book(book, env={}, sleep=FakeSleep(), retry_delays=RETRY_DELAYS)
    assert again is not None and not again.ok and [m.address for m, _ in again.held] == ["czj@hn.example.cn"]
    assert len(server.received) == 4
    assert "上次发送结果不确定，本次没有重发" in book.app.alerts[-1][1]
    # 明确要求时才重发
    final = mail.send_mail_from_book(book, env={}, resend_uncertain=True, sleep=FakeSleep(),
                                     retry_delays=RETRY_DELAYS)
    assert final.ok and server.by_recipient()["czj@hn.example.cn"] == 2


def test_ribbon_layer_reports_bad_input_in_a_dialog(city, server):
    book = _fake_book_from(city)
    book.sheets.remove(book.sheets["通讯录"])
    assert mail.send_mail_from_book(book, env={}) is None
    (title, text), = book.app.alerts
    assert "没有“通讯录”表" in text
    unsaved = _fake_book_from(city)
    unsaved.fullname = "工作簿1"
    assert mail.send_mail_from_book(unsaved, env={}) is None
    assert "请先保存工作簿" in unsaved.app.alerts[0][1]
    user = _fake_book_from(city)
    user.sheets["设置"].cells[(9, 2)] = USER
    assert user.sheets["设置"].cells[(9, 1)] == "SMTP用户名"
    assert mail.send_mail_from_book(user, env={}) is None
    assert "找不到密码" in user.app.alerts[0][1]
    assert server.received == []


# ---------------------------------------------------------------------------
# 与工作簿生成器、部门任务表生成器和 xl-ecom 命令行连起来
# ---------------------------------------------------------------------------


def test_end_to_end_with_the_real_workbook_builder_and_cli(tmp_path, server, capsys):
    """生成器写出的“设置”“通讯录”按本模块的布局读回；经 xl-ecom 命令行把真实的部门任务表发出去。"""
    from xl_ecom.frontends import cli
    from xl_ecom.workflows import build, departments

    from mail_helpers import make_xlsx

    wb = build.build_openpyxl()
    assert settings.read_settings(wb) == settings.SETTINGS_DEFAULTS
    units = [(c.unit, c.category) for c in settings.read_contacts(wb)]
    assert units == build.contact_units(load_plan())
    # 职员填写通讯录和设置
    ws = wb[settings.CONTACTS_SHEET]
    header_row = next(r for r in ws.iter_rows() if [c.value for c in r][:1] == ["单位"])
    email_col = [c.value for c in header_row].index("邮箱")
    expected = {}
    for number, row in enumerate(ws.iter_rows(min_row=header_row[0].row + 1), start=1):
        if row[0].value:
            row[email_col].value = f"unit{number}@hn.example.cn"
            expected[f"unit{number}@hn.example.cn"] = (row[0].value, row[1].value)
    values = {"SMTP服务器": "127.0.0.1", "SMTP端口": server.port, "加密方式": "无",
              "发件人邮箱": SENDER, "报送截止日期": dt.date(2020, 12, 15)}
    for row in wb[settings.SETTINGS_SHEET].iter_rows(min_row=2):
        if row[0].value in values:
            row[1].value = values[row[0].value]
    path = tmp_path / "目标任务分解表.xlsx"
    wb.save(path)
    out = tmp_path / "输出"
    departments.make_department_sheets(out)
    for unit, category in units:
        if category == settings.COUNTY:
            make_xlsx(out / settings.COUNTY_SUBDIR / f"{unit}.xlsx", unit)

    assert cli.main(["mail", str(path)]) == 0
    printed = capsys.readouterr()
    assert f"成功 {len(expected)}，失败 0" in printed.out
    assert server.by_recipient() == Counter({a: 1 for a in expected})
    for received in server.received:
        unit, category = expected[received.rcpt_tos[0]]
        sub = settings.DEPARTMENT_SUBDIR if category == settings.DEPARTMENT else settings.COUNTY_SUBDIR
        part = attachment_of(received)
        assert part.get_filename() == f"{unit}.xlsx"
        assert part.get_content() == (out / sub / f"{unit}.xlsx").read_bytes()
        assert "2020年12月15日" in received.message.get_body(("plain",)).get_content()
    assert cli.main(["mail", str(path), "--resend-failed"]) == 0
    assert len(server.received) == len(expected)


def load_plan():
    from xl_ecom.policy import load_plan as _load

    return _load()


def test_csv_log_that_cannot_be_created_is_a_clear_error(tmp_path):
    with pytest.raises(MailError, match="无法写入发送记录.*请先关闭"):
        mail.CsvLog(tmp_path / "没有这个文件夹" / "x_发送记录.csv")


def test_lines_starting_with_a_dot_survive_data(server):
    """DATA 分步发送时自己做“.”加倍（RFC 5321 4.5.2）：单独一个“.”的行不会提前结束邮件。"""
    raw = (b"From: a@x.cn\r\nTo: dots@x.cn\r\nSubject: dots\r\n\r\n"
           b"first\r\n.\r\n..two\r\n.last")
    config = mail.SmtpConfig("127.0.0.1", server.port, "无", "", 5)
    smtp = mail.connect_smtp(config, None)
    try:
        reply = mail._transmit(smtp, "a@x.cn", "dots@x.cn", raw)
    finally:
        smtp.quit()
    assert reply.startswith("250")
    (received,) = server.received
    assert received.data.replace(b"\r\n", b"\n") == raw.replace(b"\r\n", b"\n") + b"\n"
