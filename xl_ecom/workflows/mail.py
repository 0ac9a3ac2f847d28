"""发送邮件：把生成的部门任务表和县区工作簿发给各单位，并记录每一次发送。

分三层：

* 纯函数层（不依赖 Excel）：``plan_messages`` 按通讯录和输出文件夹规划邮件，
  ``build_message`` 生成 MIME 邮件（Message-ID 由轮次、单位、地址和附件 SHA-256 固定算出），
  ``send_batch`` 逐封发送（临时错误按退避重试，永久错误记录不重试，服务器确认前断开记“不确定”、
  不重试），``select_messages`` 按已有记录分出待发、已发送和不确定的邮件。
* 发送记录：台账（``xl_ecom.ledger``，工作簿旁的 SQLite 或 ``--db`` 指定的数据库）是唯一的记录；
  工作簿旁的 CSV 每批之后由台账整份导出，从不读回来做判断；“发送记录”表是给人看的副本。
  旧版的 CSV / “发送记录”表在台账还没有发送记录时导入一次（``import_legacy``）。
* 命令行：``add_cli(subparsers)`` 注册 ``xl-ecom mail``。
* Excel 功能区：``send_mail_from_book(book)``（xlwings），只做读表、状态栏和写“发送记录”表。

密码只来自环境变量 ``XL_ECOM_SMTP_PASSWORD`` 或系统钥匙串（keyring，服务名 ``xl-ecom``），
从不写入工作簿、日志或输出。
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import datetime as _dt
import hashlib
import io
import mimetypes
import os
import re
import shutil
import smtplib
import socket
import ssl
import string
import sys
import time
import unicodedata
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from email.generator import BytesGenerator
from email.header import Header
from email.headerregistry import Address
from email.mime.application import MIMEApplication
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.policy import compat32
from email.utils import formataddr, formatdate, make_msgid
from pathlib import Path
from typing import Any

from xl_ecom.common import resources, textsafe
from xl_ecom.common.errors import XlEcomError
from xl_ecom.common.problems import Problem
from xl_ecom.common.progress import Progress, status_text
from xl_ecom.ledger import open_ledger
from xl_ecom.ledger import schema as ledger_schema
from xl_ecom.ledger import store as ledger_store
from xl_ecom.ledger.lock import workbook_lock
from xl_ecom.workflows import layout
from xl_ecom.workflows.settings import (
    CONTACT_CATEGORIES,
    CONTACTS_SHEET,
    COUNTY,
    DEPARTMENT,
    SECURITY_CHOICES,
    SETTINGS_SHEET,
    Contact,
    PasswordInSettingsWarning,
    contacts_from_rows,
    format_date,
    output_dir,
    read_contacts,
    read_contacts_csv,
    read_settings,
    settings_from_rows,
    smtp_port,
    unit_file,
)

__all__ = [
    "TEMPLATE_DIR",
    "RECORD_SHEET",
    "RECORD_HEADERS",
    "PASSWORD_ENV",
    "KEYRING_SERVICE",
    "RESULT_SENT",
    "RESULT_RETRY",
    "RESULT_FAILED",
    "RESULT_NOT_SENT",
    "RESULT_UNCERTAIN",
    "UNCERTAIN_EXPLANATION",
    "LEDGER_SETTING",
    "DEFAULT_RETRY_DELAYS",
    "MailError",
    "SmtpConfig",
    "Sender",
    "OutgoingMessage",
    "Problem",
    "MailPlan",
    "SendRecord",
    "BatchResult",
    "smtp_config",
    "sender_from_settings",
    "normalize_address",
    "load_templates",
    "load_template",
    "plan_messages",
    "build_message",
    "message_bytes",
    "write_eml",
    "get_password",
    "connect_smtp",
    "send_batch",
    "problem_records",
    "stable_message_id",
    "message_id_for",
    "message_key",
    "Selection",
    "select_messages",
    "execute_plan",
    "log_path",
    "legacy_backup_path",
    "record_mail",
    "record_from_attempt",
    "ledger_records",
    "LegacyImport",
    "legacy_records",
    "import_legacy",
    "CsvLog",
    "decode_lines",
    "read_log",
    "records_from_rows",
    "read_records_sheet",
    "add_cli",
    "run_mail_cli",
    "send_mail_from_book",
]

#: 邮件模板文件夹（仓库中的 templates/mail）
TEMPLATE_DIR = resources.TEMPLATES_DIR / "mail"
TEMPLATE_FILES = {DEPARTMENT: "部门.txt", COUNTY: "县区.txt"}

RECORD_SHEET = layout.SHEET_MAIL_LOG
RECORD_HEADERS = ("时间", "单位", "地址", "文件", "SHA-256", "结果", "服务器回复", "Message-ID")

PASSWORD_ENV = "XL_ECOM_SMTP_PASSWORD"
KEYRING_SERVICE = "xl-ecom"

RESULT_SENT = "已发送"        # 服务器已接收（250）
RESULT_RETRY = "暂时失败"     # 临时错误（4xx、连接中断），随后重试
RESULT_FAILED = "失败"        # 永久错误（5xx），或重试用尽
RESULT_NOT_SENT = "未发送"    # 没有交给服务器：缺地址、地址无效、缺附件、无法连接或登录
RESULT_UNCERTAIN = "不确定"   # 邮件已全部发出，服务器确认前连接中断：可能已收下，不自动重发

#: “设置”表中台账数据库地址的项目名（空 = 工作簿旁的 SQLite 文件）
LEDGER_SETTING = "台账数据库"

#: 临时错误后的等待秒数；共尝试 len + 1 次
DEFAULT_RETRY_DELAYS = (2.0, 8.0, 30.0)
DEFAULT_TIMEOUT = 30.0

_XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
_TEMPLATE_REQUIRED = {"截止日期": "报送截止日期", "发件人": "发件人", "发件人邮箱": "发件人邮箱"}
_TEMPLATE_KEYS = ("单位", "联系人", "称呼", "类别", "截止日期", "发件人", "发件人邮箱", "附件名", "发送日期")
_BAD_FILENAME_CHARS = re.compile(r'[\\/:*?"<>|]')
_DOMAIN_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?")


class MailError(XlEcomError):
    """输入或配置有误，无法开始发送；消息是给用户看的中文。"""


# ---------------------------------------------------------------------------
# 数据
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class SmtpConfig:
    host: str
    port: int
    security: str = "SSL"  # 无 / SSL / STARTTLS
    user: str = ""
    timeout: float = DEFAULT_TIMEOUT


@dataclass(frozen=True)
class Sender:
    name: str
    address: str


@dataclass(frozen=True)
class OutgoingMessage:
    """一封待发邮件：一个单位的一个地址，附件是该单位的生成文件。"""

    unit: str
    category: str
    person: str
    address: str
    file: Path
    file_label: str
    sha256: str
    subject: str
    body: str
    data: bytes = field(repr=False, compare=False)
    #: 邮件的用途（催报、退回等，含轮内编号）：空 = 下发文件的邮件；非空时算进 Message-ID，同一文件的催报不会被当成已发过的下发邮件
    purpose: str = ""
    #: 主附件之后的其他附件：(文件名, 字节)
    extra: tuple[tuple[str, bytes], ...] = field(default=(), repr=False, compare=False)

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.unit, self.address.casefold(), self.sha256)


@dataclass
class MailPlan:
    messages: list[OutgoingMessage]
    problems: list[Problem]
    sender: Sender


@dataclass(frozen=True)
class SendRecord:
    """发送记录的一行（CSV 和“发送记录”表共用）。"""

    time: str
    unit: str
    address: str
    file: str
    sha256: str
    result: str
    reply: str = ""
    message_id: str = ""
    kind: str = ""  # 部门 / 县区（台账里的“类别”；不在表格列中）

    def row(self) -> list[str]:
        return [self.time, self.unit, self.address, self.file, self.sha256, self.result,
                self.reply, self.message_id]

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.unit, self.address.casefold(), self.sha256)

    @classmethod
    def from_mapping(cls, values: dict[str, Any]) -> SendRecord:
        def get(name: str) -> str:
            return _unneutralize(_text(values.get(name)))

        return cls(get("时间"), get("单位"), get("地址"), get("文件"), get("SHA-256").lower(),
                   get("结果"), get("服务器回复"), get("Message-ID"))


@dataclass
class BatchResult:
    """一批发送的结果：records 是全部尝试记录，其余按邮件的最终结果分组。"""

    records: list[SendRecord] = field(default_factory=list)
    sent: list[OutgoingMessage] = field(default_factory=list)
    failed: list[tuple[OutgoingMessage, str]] = field(default_factory=list)
    not_sent: list[tuple[OutgoingMessage, str]] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    uncertain: list[tuple[OutgoingMessage, str]] = field(default_factory=list)  # 本次发出后结果不确定
    skipped: list[OutgoingMessage] = field(default_factory=list)  # 此前已成功、本次跳过
    held: list[tuple[OutgoingMessage, SendRecord]] = field(default_factory=list)  # 此前不确定、本次没重发

    @property
    def ok(self) -> bool:
        return not (self.failed or self.not_sent or self.problems or self.uncertain or self.held)


# ---------------------------------------------------------------------------
# 配置
# ---------------------------------------------------------------------------


def smtp_config(
    settings: dict[str, Any],
    *,
    host: str | None = None,
    port: Any = None,
    user: str | None = None,
    security: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> SmtpConfig:
    """由“设置”和命令行覆盖值得到 SMTP 配置；值无效时抛出 MailError。"""
    merged = dict(settings)
    if security is not None:
        merged["加密方式"] = security
    if merged.get("加密方式") not in SECURITY_CHOICES:
        raise MailError(f"加密方式“{merged.get('加密方式')}”无效，应为 {' / '.join(SECURITY_CHOICES)} 之一。")
    if port is not None and str(port).strip() != "":
        text = str(port).strip()
        if not text.isdigit() or not 1 <= int(text) <= 65535:
            raise MailError(f"SMTP 端口“{text}”无效，应为 1 到 65535 之间的整数。")
        merged["SMTP端口"] = int(text)
    final_host = (host if host is not None else _text(merged.get("SMTP服务器"))).strip()
    if not final_host:
        raise MailError(f"没有 SMTP 服务器：请在“{SETTINGS_SHEET}”表填写“SMTP服务器”，或用 --smtp-host 指定。")
    if any(ch.isspace() or not ch.isprintable() for ch in final_host):
        raise MailError(f"SMTP 服务器“{final_host}”无效。")
    final_user = (user if user is not None else _text(merged.get("SMTP用户名"))).strip()
    return SmtpConfig(final_host, smtp_port(merged), merged["加密方式"], final_user, timeout)


def sender_from_settings(settings: dict[str, Any]) -> Sender:
    name = _one_line(_text(settings.get("发件人")))
    raw = _text(settings.get("发件人邮箱"))
    if not raw:
        raise MailError(f"“{SETTINGS_SHEET}”表中“发件人邮箱”为空，请填写发件邮箱地址。")
    try:
        address = normalize_address(raw)
    except ValueError as exc:
        raise MailError(f"“{SETTINGS_SHEET}”表中“发件人邮箱”{exc}") from None
    return Sender(name, address)


def normalize_address(text: str) -> str:
    """校验并规范一个邮箱地址，返回 addr-spec；无效时抛出 ValueError（中文说明）。

    全角字符（如“＠”）按 NFKC 转成半角。解析用标准库 email.headerregistry.Address。
    """
    original = text
    text = unicodedata.normalize("NFKC", str(text)).strip()
    if not text:
        raise ValueError("地址为空。")
    if not text.isascii():
        raise ValueError(f"“{original}”不是有效邮箱地址：含有中文或全角字符。")
    if any(not ch.isprintable() for ch in text):
        raise ValueError(f"“{_one_line(original)}”不是有效邮箱地址：含有控制字符。")
    try:
        address = Address(addr_spec=text)
    except Exception:  # email 包对无效地址抛出 ValueError、HeaderParseError 或各种 Defect
        raise ValueError(f"“{original}”不是有效邮箱地址。") from None
    domain = address.domain
    labels = domain.split(".")
    if not address.username or len(labels) < 2 or not all(_DOMAIN_LABEL.fullmatch(x) for x in labels):
        raise ValueError(f"“{original}”不是有效邮箱地址：域名不完整。")
    return address.addr_spec


def get_password(user: str, env: dict[str, str] | None = None) -> str | None:
    """SMTP 密码：先取环境变量 XL_ECOM_SMTP_PASSWORD，再取系统钥匙串（服务名 xl-ecom）。"""
    source: Mapping[str, str] = os.environ if env is None else env
    password = source.get(PASSWORD_ENV)
    if password:
        return password
    if not user:
        return None
    try:
        import keyring

        return keyring.get_password(KEYRING_SERVICE, user)
    except Exception:  # 没有可用的钥匙串（NoKeyringError）或后端出错：当作没有保存密码
        return None


def _require_password(config: SmtpConfig, env: dict[str, str] | None = None) -> str | None:
    if not config.user:
        return None
    password = get_password(config.user, env)
    if not password:
        raise MailError(
            f"已设置 SMTP 用户名“{config.user}”，但找不到密码：请设置环境变量 {PASSWORD_ENV}，"
            f"或用命令 keyring set {KEYRING_SERVICE} {config.user} 把密码保存到系统钥匙串。"
        )
    return password


# ---------------------------------------------------------------------------
# 模板与规划
# ---------------------------------------------------------------------------


class _MailTemplate(string.Template):
    # 占位符可以是中文：${单位}
    idpattern = r"[^\W\d]\w*"
    flags = re.UNICODE


@dataclass(frozen=True)
class _LoadedTemplate:
    path: Path
    subject: _MailTemplate
    body: _MailTemplate
    identifiers: frozenset[str]


def load_templates(template_dir: Any = None) -> dict[str, _LoadedTemplate]:
    """读取 部门.txt 和 县区.txt；第一行“主题：……”，其余为正文。"""
    directory = Path(template_dir) if template_dir is not None else TEMPLATE_DIR
    return {category: load_template(directory / name) for category, name in TEMPLATE_FILES.items()}


def load_template(path: Any, keys: Sequence[str] = _TEMPLATE_KEYS) -> _LoadedTemplate:
    """读取一个邮件模板：第一行“主题：……”，其余为正文；占位符 ${名称} 只能用 ``keys`` 中的名称。"""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise MailError(f"找不到邮件模板：{path}") from None
    except UnicodeDecodeError:
        raise MailError(f"邮件模板 {path} 不是 UTF-8 编码，请用 UTF-8 保存。") from None
    first, _, rest = text.replace("\r\n", "\n").partition("\n")
    m = re.match(r"\s*主题\s*[：:]\s*(.*)$", first)
    if not m:
        raise MailError(f"邮件模板 {path} 的第一行应以“主题：”开头。")
    subject = _MailTemplate(m.group(1).strip())
    body = _MailTemplate(rest.lstrip("\n"))
    identifiers: set[str] = set()
    for part in (subject, body):
        if not part.is_valid():
            raise MailError(f"邮件模板 {path} 中有无效的占位符（$ 后应为 {{名称}}，写 $$ 表示 $ 字符）。")
        identifiers.update(part.get_identifiers())
    unknown = sorted(identifiers - set(keys))
    if unknown:
        raise MailError(
            f"邮件模板 {path} 中有未知的占位符：{'、'.join('${' + u + '}' for u in unknown)}；"
            f"可用的有：{'、'.join('${' + k + '}' for k in keys)}。"
        )
    return _LoadedTemplate(path, subject, body, frozenset(identifiers))


def plan_messages(
    settings: dict[str, Any],
    contacts: Sequence[Contact],
    out_dir: Any,
    *,
    only: Iterable[str] | None = None,
    template_dir: Any = None,
    today: _dt.date | None = None,
) -> MailPlan:
    """规划要发的邮件：每个单位的每个有效地址一封，附件是该单位的生成文件。

    无法发送的情况（没有地址、地址无效、找不到附件、类别无效）收进 ``problems``，不会被悄悄跳过。
    配置错误（发件人、模板、--only 中的未知单位）抛出 MailError。
    """
    sender = sender_from_settings(settings)
    templates = load_templates(template_dir)
    out_dir = Path(out_dir)
    today = today or _dt.date.today()
    contacts = list(contacts)
    if only:
        wanted = list(dict.fromkeys(_one_line(u) for u in only))
        known = {c.unit for c in contacts}
        missing = [u for u in wanted if u not in known]
        if missing:
            raise MailError(f"通讯录中没有这些单位：{'、'.join(missing)}。")
        contacts = [c for c in contacts if c.unit in set(wanted)]
    deadline = format_date(settings.get("报送截止日期"))

    messages: list[OutgoingMessage] = []
    problems: list[Problem] = []
    seen: set[tuple[str, str]] = set()
    file_cache: dict[Path, tuple[bytes, str]] = {}
    for contact in contacts:
        unit = contact.unit
        where = f"（{contact.source}）" if contact.source else ""
        if _BAD_FILENAME_CHARS.search(unit) or unit.startswith(".") or not unit.isprintable():
            problems.append(Problem(subject=unit, message=f"单位名称“{unit}”含有不能用作文件名的字符{where}，无法对应生成的文件。"))
            continue
        category, reason = _resolve_category(contact, out_dir)
        if reason:
            problems.append(Problem(subject=unit, message=reason + where))
            continue
        path = unit_file(out_dir, category, unit)
        label = _file_label(path, out_dir)
        if not path.is_file():
            problems.append(Problem(subject=unit, message=f"找不到附件 {path}，请先生成{_kind(category)}。", file=label))
            continue
        if path not in file_cache:
            data = path.read_bytes()
            file_cache[path] = (data, hashlib.sha256(data).hexdigest())
        data, digest = file_cache[path]
        if not contact.addresses:
            problems.append(Problem(subject=unit, message=f"“{unit}”没有邮箱地址{where}，请在通讯录中填写。",
                                    file=label, sha256=digest))
            continue
        template = templates[category]
        values = {
            "单位": unit,
            "联系人": contact.person,
            "称呼": contact.person or unit,
            "类别": category,
            "截止日期": deadline,
            "发件人": sender.name,
            "发件人邮箱": sender.address,
            "附件名": path.name,
            "发送日期": format_date(today),
        }
        for key in sorted(template.identifiers):
            if key in _TEMPLATE_REQUIRED and not values[key]:
                raise MailError(
                    f"邮件模板 {template.path.name} 用到了 ${{{key}}}，但“{SETTINGS_SHEET}”表中"
                    f"“{_TEMPLATE_REQUIRED[key]}”为空，请先填写。"
                )
        subject = _one_line(template.subject.substitute(values))
        body = template.body.substitute(values)
        for raw in contact.addresses:
            try:
                address = normalize_address(raw)
            except ValueError as exc:
                problems.append(Problem(subject=unit, message=f"{exc}{where}", address=_one_line(raw),
                                        file=label, sha256=digest))
                continue
            if (unit, address.casefold()) in seen:
                continue
            seen.add((unit, address.casefold()))
            messages.append(OutgoingMessage(unit, category, contact.person, address, path, label,
                                            digest, subject, body, data))
    return MailPlan(messages, problems, sender)


def _resolve_category(contact: Contact, out_dir: Path) -> tuple[str, str]:
    category = contact.category
    if category in CONTACT_CATEGORIES:
        return category, ""
    if category:
        return "", f"类别“{category}”无效，应为 {' 或 '.join(CONTACT_CATEGORIES)}"
    found = [c for c in CONTACT_CATEGORIES if unit_file(out_dir, c, contact.unit).is_file()]
    if len(found) == 1:
        return found[0], ""
    if not found:
        return "", (f"没有填写类别，且在 {out_dir} 的部门任务表和县区工作簿中都找不到“{contact.unit}.xlsx”，"
                    "请先生成文件或在通讯录中填写类别")
    return "", f"没有填写类别，且部门任务表和县区工作簿中都有“{contact.unit}.xlsx”，请在通讯录中填写类别"


def _kind(category: str) -> str:
    return "部门任务表" if category == DEPARTMENT else "县区工作簿"


def _file_label(path: Path, out_dir: Path) -> str:
    try:
        return str(path.relative_to(out_dir))
    except ValueError:
        return str(path)


# ---------------------------------------------------------------------------
# 邮件
# ---------------------------------------------------------------------------


def build_message(message: OutgoingMessage, sender: Sender, *, message_id: str | None = None,
                  date: str | None = None) -> MIMEMultipart:
    """生成 MIME 邮件。

    主题和显示名用 RFC 2047 编码；附件名在 Content-Disposition 中用 RFC 2231（filename*），
    在 Content-Type 中另给 RFC 2047 形式的 name（Outlook、Foxmail 和网页邮箱都能正确显示）。
    显示名和主题中的换行、控制字符先换成空格，地址先经 normalize_address 校验，因此不能注入邮件头。
    """
    to_address = normalize_address(message.address)
    from_address = normalize_address(sender.address)
    outer = MIMEMultipart()
    outer["From"] = _format_address(sender.name, from_address)
    outer["To"] = _format_address(message.person or message.unit, to_address)
    outer["Subject"] = Header(_one_line(message.subject), "utf-8")  # type: ignore[assignment]
    outer["Date"] = date or formatdate(localtime=True)
    outer["Message-ID"] = message_id or make_msgid(domain=from_address.rpartition("@")[2])
    body = "\r\n".join(message.body.splitlines()) + "\r\n"  # 文本的规范形式是 CRLF
    outer.attach(MIMEText(body, "plain", "utf-8"))

    filename = _one_line(message.file.name)
    ctype = mimetypes.guess_type(filename)[0] or _XLSX_TYPE
    maintype, _, subtype = ctype.partition("/")
    if maintype != "application":
        subtype = "octet-stream"
    part = MIMEApplication(message.data, _subtype=subtype)
    part.set_param("name", " ".join(Header(filename, "utf-8").encode().split()))
    part.add_header("Content-Disposition", "attachment", filename=("utf-8", "", filename))
    outer.attach(part)
    for extra_name, extra_data in message.extra:
        outer.attach(_attachment(_one_line(extra_name), extra_data))
    return outer


def _attachment(filename: str, data: bytes) -> MIMEApplication:
    ctype = mimetypes.guess_type(filename)[0] or _XLSX_TYPE
    maintype, _, subtype = ctype.partition("/")
    if maintype != "application":
        subtype = "octet-stream"
    part = MIMEApplication(data, _subtype=subtype)
    part.set_param("name", " ".join(Header(filename, "utf-8").encode().split()))
    part.add_header("Content-Disposition", "attachment", filename=("utf-8", "", filename))
    return part


def message_bytes(mime: MIMEMultipart) -> bytes:
    buffer = io.BytesIO()
    BytesGenerator(buffer, mangle_from_=False, policy=compat32.clone(linesep="\r\n")).flatten(mime)
    return buffer.getvalue()


def _format_address(name: str, address: str) -> str:
    name = _one_line(name)
    return formataddr((name, address), charset="utf-8") if name else address


def write_eml(messages: Sequence[OutgoingMessage], sender: Sender, directory: Any, *,
              round_label: str = "") -> list[Path]:
    """试运行：每封邮件写一个 .eml 文件（Message-ID 与真正发送时相同），不发送。"""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for number, message in enumerate(messages, start=1):
        name = _BAD_FILENAME_CHARS.sub("_", f"{number:03d}_{message.unit}_{message.address}") + ".eml"
        path = directory / name
        message_id = message_id_for(message, sender, round_label)
        path.write_bytes(message_bytes(build_message(message, sender, message_id=message_id)))
        written.append(path)
    return written


# ---------------------------------------------------------------------------
# 发送
# ---------------------------------------------------------------------------


def stable_message_id(round_label: str, unit: str, address: str, sha256: str, domain: str) -> str:
    """一封邮件固定的 Message-ID：由报送轮次、单位、地址和附件的 SHA-256 算出。

    同一轮次把同一文件再发给同一地址，Message-ID 不变，收件人的邮件客户端可据此去重；
    发送记录也按它判断一封邮件是否已发送或结果不确定（文件重新生成后 SHA-256 变了，就是另一封）。
    """
    text = "\x1f".join(("xl-ecom", str(round_label), str(unit), str(address).casefold(), str(sha256).lower()))
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]
    return f"<{digest}.xl-ecom@{domain or 'localhost'}>"


def message_id_for(message: OutgoingMessage, sender: Sender, round_label: str) -> str:
    label = f"{round_label}\x1f{message.purpose}" if message.purpose else round_label
    return stable_message_id(label, message.unit, message.address, message.sha256,
                             sender.address.rpartition("@")[2])


def message_key(message_id: str) -> str:
    """比较用的 Message-ID：只取 @ 前的部分（发件人邮箱的域名换了，仍认得是同一封）。"""
    return str(message_id or "").strip().strip("<>").rpartition("@")[0].casefold()


class _Failure(Exception):
    """一次尝试失败。

    kind：transient（可重试）、permanent（本封失败，不重试）、fatal（整批停止）、
    uncertain（邮件已全部发出、服务器确认前连接中断：不重试，记“不确定”）；
    stage：connect（连接或登录时失败，邮件还没有交给服务器）或 send（发送这封邮件时失败）。
    """

    def __init__(self, kind: str, reply: str, *, stage: str = "send"):
        super().__init__(reply)
        self.kind = kind
        self.reply = reply
        self.stage = stage


def _reply_text(code: Any, message: Any) -> str:
    if isinstance(message, bytes):
        message = message.decode("utf-8", errors="replace")
    message = " ".join(str(message or "").split())
    return f"{code} {message}".strip()


def _kind_for_code(code: Any) -> str:
    try:
        return "transient" if 400 <= int(code) < 500 else "permanent"
    except (TypeError, ValueError):
        return "permanent"


def _greet(smtp: smtplib.SMTP, where: str) -> None:
    """EHLO；服务器不支持 EHLO（5xx）时改用 HELO。4xx 回复（如 421 暂时不可用）按临时错误重试。

    smtplib 的 ehlo()/helo() 把非 250 回复当返回值而不抛出，所以这里逐个检查。
    """
    code, reply = smtp.ehlo()
    if 200 <= code < 300:
        return
    if _kind_for_code(code) == "transient":
        raise _Failure("transient", f"服务器 {where} 暂时拒绝 EHLO：{_reply_text(code, reply)}", stage="connect")
    code, reply = smtp.helo()
    if 200 <= code < 300:
        return
    kind = "transient" if _kind_for_code(code) == "transient" else "fatal"
    raise _Failure(kind, f"服务器 {where} 拒绝 HELO：{_reply_text(code, reply)}", stage="connect")


def connect_smtp(config: SmtpConfig, password: str | None, *,
                 ssl_context: ssl.SSLContext | None = None) -> smtplib.SMTP:
    """连接、问候（EHLO，必要时 HELO）并（如设置了用户名）登录。

    失败时抛出 _Failure，reply 是中文说明加服务器回复；4xx 回复和连接中断是临时错误。
    """
    context = ssl_context or ssl.create_default_context()
    where = f"{config.host}:{config.port}"
    smtp: smtplib.SMTP | None = None
    try:
        if config.security == "SSL":
            smtp = smtplib.SMTP_SSL(config.host, config.port, timeout=config.timeout, context=context)
        else:
            smtp = smtplib.SMTP(config.host, config.port, timeout=config.timeout)
        _greet(smtp, where)
        if config.security == "STARTTLS":
            smtp.starttls(context=context)
            _greet(smtp, where)
        if config.user:
            smtp.login(config.user, password or "")
        return smtp
    except _Failure:
        _close(smtp)
        raise
    except smtplib.SMTPAuthenticationError as exc:
        _close(smtp)
        kind = "transient" if _kind_for_code(exc.smtp_code) == "transient" else "fatal"
        raise _Failure(kind, f"SMTP 登录被拒绝（{_reply_text(exc.smtp_code, exc.smtp_error)}），"
                             "请检查 SMTP用户名 和密码", stage="connect") from None
    except smtplib.SMTPNotSupportedError as exc:
        _close(smtp)
        what = "STARTTLS 加密" if config.security == "STARTTLS" and "STARTTLS" in str(exc).upper() else "登录（AUTH）"
        raise _Failure("fatal", f"服务器 {where} 不支持{what}：{exc}", stage="connect") from None
    except smtplib.SMTPServerDisconnected as exc:
        _close(smtp)
        raise _Failure("transient", f"服务器 {where} 断开了连接：{exc}", stage="connect") from None
    except smtplib.SMTPResponseException as exc:  # 问候语或 STARTTLS 被拒
        _close(smtp)
        kind = "transient" if _kind_for_code(exc.smtp_code) == "transient" else "fatal"
        raise _Failure(kind, f"服务器 {where} 拒绝连接：{_reply_text(exc.smtp_code, exc.smtp_error)}",
                       stage="connect") from None
    except ssl.SSLError as exc:
        _close(smtp)
        raise _Failure("fatal", f"与 {where} 的加密连接失败（请检查加密方式和端口）：{exc.reason or exc}",
                       stage="connect") from None
    except socket.gaierror:
        _close(smtp)
        raise _Failure("fatal", f"找不到 SMTP 服务器“{config.host}”，请检查服务器地址。", stage="connect") from None
    except UnicodeEncodeError:
        _close(smtp)
        raise _Failure("fatal", "SMTP 用户名或密码含有不能发送的字符（只能用英文字母、数字和符号）。",
                       stage="connect") from None
    except (OSError, smtplib.SMTPException) as exc:
        _close(smtp)
        detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else (str(exc) or type(exc).__name__)
        raise _Failure("transient", f"无法连接 SMTP 服务器 {where}：{detail}", stage="connect") from None


def _close(smtp: smtplib.SMTP | None) -> None:
    if smtp is not None:
        try:
            smtp.close()
        except Exception:
            pass


def _quit(smtp: smtplib.SMTP | None) -> None:
    if smtp is not None:
        try:
            smtp.quit()
        except Exception:
            _close(smtp)


def _dot_stuffed(raw: bytes) -> bytes:
    """DATA 的内容：行首的“.”加倍，以 CRLF.CRLF 结束（RFC 5321 4.5.2）。"""
    data = re.sub(rb"(?m)^\.", b"..", raw)
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    return data + b".\r\n"


def _transmit(smtp: smtplib.SMTP, from_address: str, to_address: str, raw: bytes) -> str:
    """MAIL / RCPT / DATA，返回服务器对邮件内容的回复；非成功回复抛出 _Failure。

    DATA 分步进行（smtplib.data() 不区分断在哪里）：内容还没发完就断开，服务器不可能已收下，
    可以重试；内容（含结尾的“.”）已全部发出、还没收到回复就断开或超时，服务器可能已经收下，
    抛出 kind="uncertain"，不重试。
    """
    stage = "envelope"
    try:
        code, reply = smtp.mail(from_address)
        if code != 250:
            raise _Failure(_kind_for_code(code), _reply_text(code, reply))
        code, reply = smtp.rcpt(to_address)
        if code not in (250, 251):
            raise _Failure(_kind_for_code(code), _reply_text(code, reply))
        smtp.putcmd("data")
        code, reply = smtp.getreply()
        if code != 354:
            raise _Failure(_kind_for_code(code), _reply_text(code, reply))
        stage = "content"
        smtp.send(_dot_stuffed(raw))
        stage = "reply"
        code, reply = smtp.getreply()
        if code != 250:
            raise _Failure(_kind_for_code(code), _reply_text(code, reply))
        return _reply_text(code, reply)
    except smtplib.SMTPResponseException as exc:
        raise _Failure(_kind_for_code(exc.smtp_code), _reply_text(exc.smtp_code, exc.smtp_error)) from None
    except (OSError, smtplib.SMTPException) as exc:  # 含 SMTPServerDisconnected 和超时
        detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else (str(exc) or type(exc).__name__)
        if stage == "reply":
            raise _Failure("uncertain", f"邮件已全部发出，但在服务器确认收到之前连接中断（{detail}），"
                                        "服务器可能已经收下") from None
        raise _Failure("transient", f"连接中断：{detail}") from None


def _now() -> str:
    return _dt.datetime.now().strftime("%Y-%m-%d %H:%M:%S")


def send_batch(
    messages: Sequence[OutgoingMessage],
    sender: Sender,
    config: SmtpConfig,
    password: str | None,
    *,
    round_label: str = "",
    on_record: Callable[[SendRecord], None] | None = None,
    on_progress: Progress | None = None,
    sleep: Callable[[float], None] = time.sleep,
    retry_delays: Sequence[float] = DEFAULT_RETRY_DELAYS,
    ssl_context: ssl.SSLContext | None = None,
    connect: Callable[..., smtplib.SMTP] | None = None,
) -> BatchResult:
    """逐封发送，每次尝试都交给 on_record（先记录、再继续）。

    * 4xx 回复（含对 EHLO/HELO 的）、连接中断、连不上：按 retry_delays 等待后重连重试（每次等待前
      记一行“暂时失败”）；重试用尽记“失败”，继续下一封；
    * 5xx 回复：记“失败”，不重试，继续下一封；
    * 邮件已全部发出、服务器确认前连接中断：记“不确定”，不重试（服务器可能已收下），重连后继续下一封；
    * 登录被拒、加密方式不对等整批问题，或重试后仍连不上：本封和其余各封记“未发送”，停止。

    每封邮件的 Message-ID 由 round_label、单位、地址和附件 SHA-256 固定算出（stable_message_id）。
    进度按 Progress 协议报告：progress(“单位 <地址>”, 第几封, 共几封)，最后 progress("完成", n, n)。
    """
    connect = connect or connect_smtp
    result = BatchResult()

    def record(message: OutgoingMessage, outcome: str, reply: str, message_id: str = "") -> None:
        entry = SendRecord(_now(), message.unit, message.address, message.file_label, message.sha256,
                           outcome, reply, message_id, message.category)
        result.records.append(entry)
        if on_record is not None:
            on_record(entry)

    smtp: smtplib.SMTP | None = None
    total = len(messages)
    try:
        for index, message in enumerate(messages):
            if on_progress is not None:
                on_progress(f"{message.unit} <{message.address}>", index + 1, total)
            message_id = message_id_for(message, sender, round_label)
            raw = message_bytes(build_message(message, sender, message_id=message_id))
            attempt = 0
            while True:
                try:
                    if smtp is None:
                        smtp = connect(config, password, ssl_context=ssl_context)
                    reply = _transmit(smtp, sender.address, message.address, raw)
                except _Failure as failure:
                    if failure.kind == "permanent" and failure.stage == "send" and smtp is not None:
                        try:  # 连接还可用：复位后发下一封
                            smtp.rset()
                        except Exception:
                            _close(smtp)
                            smtp = None
                    else:  # 连接断了、被拒，或回复了临时错误：丢掉连接，下次重连
                        _close(smtp)
                        smtp = None
                    if failure.kind == "uncertain":
                        record(message, RESULT_UNCERTAIN, failure.reply, message_id)
                        result.uncertain.append((message, failure.reply))
                        break
                    if failure.kind == "fatal" or (failure.stage == "connect" and attempt >= len(retry_delays)):
                        # 整批停止：登录被拒、加密方式不对，或重试后仍连不上
                        reason = failure.reply
                        if failure.kind != "fatal" and attempt:
                            reason = f"重试 {attempt} 次后仍失败：{reason}"
                        _abort(messages[index:], reason, record, result)
                        return result
                    if failure.kind == "transient" and attempt < len(retry_delays):
                        record(message, RESULT_RETRY, failure.reply, message_id)
                        sleep(retry_delays[attempt])
                        attempt += 1
                        continue
                    final = failure.reply if failure.kind == "permanent" else f"重试 {attempt} 次后仍失败：{failure.reply}"
                    record(message, RESULT_FAILED, final, message_id)
                    result.failed.append((message, final))
                    break
                else:
                    record(message, RESULT_SENT, reply, message_id)
                    result.sent.append(message)
                    break
        if on_progress is not None and total:
            on_progress("完成", total, total)
    finally:
        _quit(smtp)
    return result


def _abort(remaining: Sequence[OutgoingMessage], reason: str,
           record: Callable[..., None], result: BatchResult) -> None:
    for message in remaining:
        record(message, RESULT_NOT_SENT, reason)
        result.not_sent.append((message, reason))


def problem_records(problems: Iterable[Problem]) -> list[SendRecord]:
    now = _now()
    return [SendRecord(now, p.subject, p.address, p.file, p.sha256, RESULT_NOT_SENT, p.message)
            for p in problems]


@dataclass
class Selection:
    """按已有记录把规划的邮件分成三组。"""

    pending: list[OutgoingMessage] = field(default_factory=list)    # 没有“已发送”也没有“不确定”记录
    delivered: list[OutgoingMessage] = field(default_factory=list)  # 有“已发送”记录
    uncertain: list[tuple[OutgoingMessage, SendRecord]] = field(default_factory=list)  # 最近一次“不确定”


def select_messages(messages: Iterable[OutgoingMessage], records: Iterable[SendRecord], sender: Sender,
                    round_label: str) -> Selection:
    """按 Message-ID（见 stable_message_id）对照记录：有“已发送”的算已发送；没有“已发送”、
    但有过“不确定”的算不确定（服务器可能已收下）；其余待发。"""
    sent: set[str] = set()
    uncertain: dict[str, SendRecord] = {}
    for r in records:
        key = message_key(r.message_id)
        if not key:
            continue
        if r.result in _SENT_RESULTS:
            sent.add(key)
        elif r.result == RESULT_UNCERTAIN:
            uncertain[key] = r
    selection = Selection()
    for message in messages:
        key = message_key(message_id_for(message, sender, round_label))
        if key in sent:
            selection.delivered.append(message)
        elif key in uncertain:
            selection.uncertain.append((message, uncertain[key]))
        else:
            selection.pending.append(message)
    return selection


def execute_plan(
    plan: MailPlan,
    config: SmtpConfig,
    password: str | None,
    *,
    prior_records: Iterable[SendRecord] = (),
    round_label: str = "",
    resend_failed: bool = False,
    resend_uncertain: bool = False,
    on_record: Callable[[SendRecord], None] | None = None,
    on_progress: Progress | None = None,
    sleep: Callable[[float], None] = time.sleep,
    retry_delays: Sequence[float] = DEFAULT_RETRY_DELAYS,
    ssl_context: ssl.SSLContext | None = None,
) -> BatchResult:
    """两个入口共用：先记录规划中发现的问题，再发送。

    * resend_failed：跳过已有“已发送”记录的邮件；
    * 结果“不确定”的邮件（服务器可能已收下）只有 resend_uncertain 时才重发（它也跳过已发送的），
      否则列在 result.held 里；
    * 都不给：全部发送（不确定的除外）。
    """
    problem_rows = problem_records(plan.problems)
    for entry in problem_rows:
        if on_record is not None:
            on_record(entry)
    selection = select_messages(plan.messages, prior_records, plan.sender, round_label)
    held: list[tuple[OutgoingMessage, SendRecord]] = []
    skipped: list[OutgoingMessage] = []
    if resend_failed or resend_uncertain:
        messages = list(selection.pending)
        skipped = list(selection.delivered)
    else:
        messages = list(selection.pending) + list(selection.delivered)
    if resend_uncertain:
        messages += [m for m, _ in selection.uncertain]
    else:
        held = list(selection.uncertain)
    order = {id(m): i for i, m in enumerate(plan.messages)}
    messages.sort(key=lambda m: order[id(m)])
    if messages:
        result = send_batch(messages, plan.sender, config, password, round_label=round_label,
                            on_record=on_record, on_progress=on_progress, sleep=sleep,
                            retry_delays=retry_delays, ssl_context=ssl_context)
    else:
        result = BatchResult()
    result.records[:0] = problem_rows
    result.problems = list(plan.problems)
    result.skipped = skipped
    result.held = held
    return result


# ---------------------------------------------------------------------------
# 发送记录：台账（xl_ecom.ledger）是记录，CSV 只是导出
# ---------------------------------------------------------------------------

#: 本模块的结果 -> 台账的发送状态；台账只分 已发送/失败/不确定/跳过，更细的结果写在“说明”开头
_LEDGER_STATUS = {
    RESULT_SENT: ledger_schema.SENT,
    RESULT_FAILED: ledger_schema.FAILED,
    RESULT_UNCERTAIN: ledger_schema.UNCERTAIN,
    RESULT_RETRY: ledger_schema.FAILED,
    RESULT_NOT_SENT: ledger_schema.FAILED,
}
_DETAIL_PREFIX = {RESULT_RETRY: f"{RESULT_RETRY}：", RESULT_NOT_SENT: f"{RESULT_NOT_SENT}："}
_SENT_RESULTS = (RESULT_SENT, "成功")  # “成功”：旧版 CSV 发送记录的写法


def log_path(workbook_path: Any) -> Path:
    """CSV 发送记录（台账的导出）：工作簿旁边的 <工作簿名>_发送记录.csv。"""
    workbook_path = Path(workbook_path)
    return workbook_path.with_name(f"{workbook_path.stem}_{RECORD_SHEET}.csv")


def legacy_backup_path(workbook_path: Any) -> Path:
    """导入台账之前的旧 CSV 发送记录原样保存在这里（之后同名的 CSV 是台账的导出）。"""
    path = log_path(workbook_path)
    return path.with_name(f"{path.stem}_导入前{path.suffix}")


def _parse_time(text: str) -> _dt.datetime | None:
    text = str(text or "").strip()
    for fmt in ("%Y-%m-%d %H:%M:%S", "%Y/%m/%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y/%m/%d %H:%M",
                "%Y-%m-%dT%H:%M:%S"):
        try:
            return _dt.datetime.strptime(text, fmt)
        except ValueError:
            continue
    return None


def record_mail(ledger: Any, record: SendRecord, round_id: int) -> int:
    """把一条发送记录写进台账。"""
    detail = _DETAIL_PREFIX.get(record.result, "") + record.reply
    status = _LEDGER_STATUS.get(record.result)
    if status is None:  # 旧记录里没见过的结果：原样写进说明，按失败处理
        status, detail = ledger_schema.FAILED, f"{record.result}：{record.reply}"
    return ledger.record_mail(record.unit, record.address, record.file, record.kind, status, detail=detail,
                              message_id=record.message_id, round_id=round_id,
                              attempted_at=_parse_time(record.time))


def record_from_attempt(attempt: Any) -> SendRecord:
    """台账里的一次发送 -> SendRecord（结果按“说明”开头还原为 暂时失败 / 未发送）。"""
    result, reply = attempt.status, attempt.detail or ""
    if attempt.status == ledger_schema.FAILED:
        for finer, prefix in _DETAIL_PREFIX.items():
            if reply.startswith(prefix):
                result, reply = finer, reply[len(prefix):]
                break
    when = attempt.attempted_at.strftime("%Y-%m-%d %H:%M:%S") if attempt.attempted_at else ""
    return SendRecord(when, attempt.unit, attempt.address, attempt.file_name, "", result, reply,
                      attempt.message_id, attempt.kind)


def ledger_records(ledger: Any, round_id: int | None) -> list[SendRecord]:
    if round_id is None:
        return []
    return [record_from_attempt(a) for a in ledger.mail_attempts(round_id)]


@dataclass
class LegacyImport:
    """旧发送记录（CSV 和工作簿“发送记录”表）的一次导入。"""

    records: list[SendRecord]
    sources: list[str]
    backup: Path | None = None

    @property
    def delivered(self) -> int:
        return sum(1 for r in self.records if r.result in _SENT_RESULTS)

    def summary(self) -> str:
        where = "、".join(self.sources)
        text = (f"已把旧发送记录（{where}）中的 {len(self.records)} 条导入台账，其中已发送 {self.delivered} 条，"
                "这些不会再重复发送。")
        if self.backup is not None:
            text += f"原 CSV 另存为 {self.backup.name}。"
        return text


def legacy_records(workbook_path: Any, sheet_records: Sequence[SendRecord] = ()) -> LegacyImport:
    """读旧版的发送记录：工作簿旁的 CSV（逐行识别 UTF-8 / UTF-8 带 BOM / GBK）和“发送记录”表，去掉重复的行。"""
    path = log_path(workbook_path)
    records = read_log(path)
    sources = [path.name] if records else []
    seen = {tuple(r.row()) for r in records}
    from_sheet = [r for r in sheet_records if tuple(r.row()) not in seen]
    if from_sheet:
        sources.append(f"“{RECORD_SHEET}”表")
    return LegacyImport(records + from_sheet, sources)


def _legacy_message_id(record: SendRecord, round_label: str, domain: str) -> str:
    if re.fullmatch(r"[0-9a-f]{64}", record.sha256 or "") and record.address:
        try:
            address = normalize_address(record.address)
        except ValueError:
            address = record.address
        return stable_message_id(round_label, record.unit, address, record.sha256, domain)
    return ""


def import_legacy(ledger: Any, legacy: LegacyImport, round_: Any, domain: str, workbook_path: Any) -> LegacyImport:
    """把旧发送记录一次性写进台账（台账还没有任何发送记录时才调用）。

    每条记录的 Message-ID 换成本轮固定的那个（原来的写进说明），这样按 Message-ID 判断就认得
    旧记录里已发送的邮件。旧 CSV 先原样另存一份，之后同名 CSV 由台账导出。
    """
    path = log_path(workbook_path)
    backup = None
    if path.exists() and legacy.records:
        backup = legacy_backup_path(workbook_path)
        if not backup.exists():
            shutil.copy2(path, backup)
    converted = []
    for r in legacy.records:
        result = RESULT_SENT if r.result in _SENT_RESULTS else r.result
        if result == RESULT_FAILED and "不确定" in r.reply:  # 旧版把发送途中断开记成“失败（……不确定）”
            result = RESULT_UNCERTAIN
        reply = r.reply + (f"（旧记录，原 Message-ID {r.message_id}）" if r.message_id else "（旧记录）")
        new = SendRecord(r.time, r.unit, r.address, r.file, r.sha256, result, reply,
                         _legacy_message_id(r, round_.label, domain), r.kind)
        record_mail(ledger, new, round_.id)
        converted.append(new)
    ledger.log("导入旧发送记录", f"{len(converted)} 条，来自 {'、'.join(legacy.sources)}")
    return LegacyImport(converted, legacy.sources, backup)


class _MailStore:
    """一次 mail 命令用的台账：打开、取本轮、导入旧记录、逐条记录、批后导出 CSV。"""

    def __init__(self, workbook_path: Path, url: str | None):
        self.workbook_path = workbook_path
        self.ledger = open_ledger(workbook_path, url)
        self.round: Any = None

    def prepare(self, sender: Sender, *, write: bool, sheet_records: Sequence[SendRecord] = ()) -> tuple[
            list[SendRecord], LegacyImport | None]:
        """本轮已有的记录；台账还没有发送记录而有旧记录时导入（write=False 时只在内存里换算）。"""
        empty = not self.ledger.mail_attempts()
        legacy = legacy_records(self.workbook_path, sheet_records) if empty else None
        if write and legacy is not None and not legacy.records:
            self._refuse_if_export_of_another_ledger()
        self.round = self.ledger.ensure_round() if write else self.ledger.current_round()
        label = self.round_label
        domain = sender.address.rpartition("@")[2]
        imported = None
        if legacy is not None and legacy.records:
            if not write:
                imported = _convert_only(legacy, label, domain)
                return imported.records, imported
            imported = import_legacy(self.ledger, legacy, self.round, domain, self.workbook_path)
        return ledger_records(self.ledger, self.round.id if self.round is not None else None), imported

    def _refuse_if_export_of_another_ledger(self) -> None:
        """台账里没有任何发送记录，工作簿旁的 CSV 导出却记着已发送的邮件：多半是这次没用原来的台账
        （漏了 --db，或台账文件被移走）。照这个空台账发就会重发，所以先停下说明。"""
        path = log_path(self.workbook_path)
        try:
            rows = list(csv.reader(io.StringIO(decode_lines(path.read_bytes()), newline="")))
        except OSError:
            return
        header = tuple(_text(c) for c in rows[0]) if rows else ()
        if header != tuple(ledger_store.Ledger.MAIL_HEADER):
            return
        status = header.index("状态")
        sent = sum(1 for row in rows[1:] if len(row) > status and _text(row[status]) == ledger_schema.SENT)
        if sent:
            raise MailError(
                f"工作簿旁的发送记录导出 {path.name} 记着 {sent} 次已发送，但现在用的台账（{self.ledger.url}）"
                "里没有任何发送记录：是不是该用 --db（或设置表“台账数据库”）指定原来的台账？照这个空台账发送，"
                f"那些邮件会再发一次。如确认要在这个台账里从头记录，请先把 {path.name} 移走或改名。"
            )

    @property
    def round_label(self) -> str:
        # 试运行时台账可能还没有轮次：用真正发送时会建的那个（首轮），Message-ID 与之后真发时相同
        return self.round.label if self.round is not None else ledger_store.FIRST_ROUND

    def record(self, record: SendRecord) -> None:
        try:
            record_mail(self.ledger, record, self.round.id)
        except XlEcomError as exc:  # 台账写不进去（被锁、连不上）：停下，不在没有记录的情况下继续发
            after = ("服务器已收下这一封，但没能记下：之后补发时它会再发一次（Message-ID 相同，对方可据此去重）。"
                     if record.result == RESULT_SENT else "")
            raise MailError(f"{record.unit} <{record.address}> 的发送结果“{record.result}”无法记入台账（{exc}），"
                            f"其余邮件已停止发送。{after}请处理后用 --resend-failed 补发。") from None

    def export_csv(self) -> tuple[Path, str]:
        """CSV 导出（整份重写）；写不了时返回说明（记录已在台账里，不算失败）。"""
        path = log_path(self.workbook_path)
        try:
            self.ledger.export_mail_csv(path)
            return path, ""
        except (OSError, XlEcomError) as exc:
            reason = _os_error_text(exc) if isinstance(exc, OSError) else str(exc)
            return path, (f"注意：发送记录已存入台账，但无法导出 {path.name}（{reason}）：如果它在 Excel 中打开着，"
                          "请关闭后重新运行一次（或用 xl-ecom export）。")

    def close(self) -> None:
        self.ledger.close()


def _convert_only(legacy: LegacyImport, round_label: str, domain: str) -> LegacyImport:
    """试运行：旧记录只在内存里换算，不写台账。"""
    records = []
    for r in legacy.records:
        result = RESULT_SENT if r.result in _SENT_RESULTS else r.result
        if result == RESULT_FAILED and "不确定" in r.reply:
            result = RESULT_UNCERTAIN
        records.append(SendRecord(r.time, r.unit, r.address, r.file, r.sha256, result, r.reply,
                                  _legacy_message_id(r, round_label, domain), r.kind))
    return LegacyImport(records, legacy.sources)


class CsvLog:
    """旧版的追加写 CSV 发送记录（UTF-8 带 BOM）。现在发送记录在台账里，CSV 由台账整份导出；
    这个类只留给读写旧格式的工具和测试。"""

    def __init__(self, path: Any):
        self.path = Path(path)
        try:
            new = not self.path.exists() or self.path.stat().st_size == 0
            self._file = open(self.path, "a", encoding="utf-8-sig", newline="")
        except OSError as exc:
            raise MailError(
                f"无法写入发送记录 {self.path}（{exc.strerror or exc}）：如果它在 Excel 中打开着，请先关闭。"
            ) from None
        self._writer = csv.writer(self._file)
        if new:
            self._writer.writerow(RECORD_HEADERS)
            self._file.flush()

    def append(self, record: SendRecord) -> None:
        self._writer.writerow([_neutralize(v) for v in record.row()])
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> CsvLog:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def decode_lines(data: bytes) -> str:
    """逐行解码：每行先按 UTF-8（开头的 BOM 去掉），不行再按 GBK（GB18030）。

    Excel 把 UTF-8 的 CSV 另存为 GBK 之后，旧版又以 UTF-8 追加新行，一个文件里两种编码都有；
    整份按一种编码读就会有一半是乱码。
    """
    lines = []
    for line in data.splitlines(keepends=True):
        if line.startswith(b"\xef\xbb\xbf"):
            line = line[3:]
        try:
            lines.append(line.decode("utf-8"))
        except UnicodeDecodeError:
            lines.append(line.decode("gb18030", errors="replace"))
    return "".join(lines)


def read_log(path: Any) -> list[SendRecord]:
    """读旧版 CSV 发送记录（表头含“单位”“结果”）；文件不存在或不是这种格式时为空。
    接受 UTF-8、UTF-8 带 BOM、GBK，以及一个文件里混着这几种的（逐行识别）。"""
    path = Path(path)
    if not path.exists():
        return []
    try:
        data = path.read_bytes()
    except OSError as exc:  # 不知道发过什么就不能发：报错而不是当作没有记录
        raise MailError(
            f"无法读取发送记录 {path}（{exc.strerror or exc}）：如果它在 Excel 中打开着，请先关闭。"
        ) from None
    return records_from_rows(list(csv.reader(io.StringIO(decode_lines(data), newline=""))))


def records_from_rows(rows: Sequence[Sequence[Any]]) -> list[SendRecord]:
    """由表头行和数据行（旧 CSV 或“发送记录”表）得到记录。"""
    header: list[str] | None = None
    records = []
    for row in rows:
        cells = [_text(c) for c in (row or ())]
        if header is None:
            if "单位" in cells and "结果" in cells:
                header = cells
            continue
        if not any(cells):
            continue
        records.append(SendRecord.from_mapping(dict(zip(header, cells))))
    return records


def read_records_sheet(workbook_path: Any) -> list[SendRecord]:
    """读工作簿里的“发送记录”表（功能区按钮写的），没有则为空。只用于一次性导入台账。"""
    from openpyxl import load_workbook

    try:
        wb = load_workbook(workbook_path, read_only=True, data_only=True)
    except Exception:
        return []
    try:
        if RECORD_SHEET not in wb.sheetnames:
            return []
        return records_from_rows(list(wb[RECORD_SHEET].iter_rows(values_only=True)))
    finally:
        wb.close()


# ---------------------------------------------------------------------------
# 命令行
# ---------------------------------------------------------------------------


def add_cli(subparsers: Any) -> argparse.ArgumentParser:
    """注册 ``xl-ecom mail`` 子命令；处理函数放在 ``func``，返回退出码。"""
    parser = subparsers.add_parser(
        "mail",
        help="把部门任务表和县区工作簿发给各单位",
        description="按通讯录把输出文件夹中的部门任务表和县区工作簿发给各单位。每次发送记在台账里"
                    "（默认是工作簿旁的 SQLite 文件，或 --db 指定的数据库），并导出为工作簿旁的 CSV。"
                    f"密码只从环境变量 {PASSWORD_ENV} 或系统钥匙串读取。",
    )
    parser.add_argument("workbook", metavar="WORKBOOK", help="市级工作簿（.xlsx/.xlsm），读取其中的设置和通讯录")
    parser.add_argument("--contacts", metavar="FILE", help="通讯录 CSV（列：单位,联系人,邮箱）或工作簿，代替工作簿中的通讯录表")
    parser.add_argument("--out", metavar="DIR", help="输出文件夹（默认取设置表“输出文件夹”）")
    parser.add_argument("--db", metavar="URL",
                        help="台账数据库（如 postgresql://用户:密码@主机/库名，多台电脑共用时使用）；"
                             "默认为设置表“台账数据库”，再默认为工作簿旁的“<工作簿名>.台账.sqlite”")
    parser.add_argument("--smtp-host", metavar="H", help="SMTP 服务器，覆盖设置表")
    parser.add_argument("--smtp-port", metavar="P", help="SMTP 端口，覆盖设置表")
    parser.add_argument("--user", metavar="U", help="SMTP 用户名，覆盖设置表")
    security = parser.add_mutually_exclusive_group()
    security.add_argument("--ssl", dest="security", action="store_const", const="SSL", help="用 SSL 连接")
    security.add_argument("--starttls", dest="security", action="store_const", const="STARTTLS", help="用 STARTTLS 加密")
    parser.add_argument("--dry-run", metavar="DIR", help="不发送，每封邮件写一个 .eml 文件到 DIR")
    parser.add_argument("--resend-failed", action="store_true",
                        help="只补发失败和未发送的邮件：已发送的不重复；结果“不确定”的也不重发（会列出来）")
    parser.add_argument("--resend-uncertain", action="store_true",
                        help="连结果“不确定”的邮件（上次发出后、服务器确认前连接中断）也重发，已发送的不重复。"
                             "对方可能因此收到两封；两封的 Message-ID 相同，对方的邮件客户端可据此去重")
    parser.add_argument("--only", metavar="单位", nargs="+", help="只发给这些单位")
    parser.set_defaults(func=run_mail_cli, security=None)
    return parser


def run_mail_cli(
    args: argparse.Namespace,
    *,
    stdout: Any = None,
    stderr: Any = None,
    env: dict[str, str] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    retry_delays: Sequence[float] = DEFAULT_RETRY_DELAYS,
    ssl_context: ssl.SSLContext | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> int:
    """``xl-ecom mail`` 的处理函数。退出码：0 全部成功；1 有未成功或不确定的邮件；2 输入或配置有误。"""
    out = stdout or sys.stdout
    err = stderr or sys.stderr
    try:
        return _run_mail(args, out, err, env, sleep, retry_delays, ssl_context, timeout)
    except XlEcomError as exc:  # MailError、SettingsError、ContactsError、LedgerError……
        print(f"错误：{exc}", file=err)
        return 2
    except OSError as exc:
        print(f"错误：{_os_error_text(exc)}", file=err)
        return 2


def _os_error_text(exc: OSError) -> str:
    where = f"（{exc.filename}）" if exc.filename else ""
    return f"文件操作失败：{exc.strerror or exc}{where}"


def _run_mail(args, out, err, env, sleep, retry_delays, ssl_context, timeout) -> int:
    workbook = Path(args.workbook)
    if not workbook.is_file():
        raise MailError(f"找不到工作簿：{workbook}")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", PasswordInSettingsWarning)
        settings = read_settings(workbook)
    for warning in caught:
        if issubclass(warning.category, PasswordInSettingsWarning):
            print(f"注意：{warning.message}", file=err)

    if args.contacts:
        contacts_file = Path(args.contacts)
        if contacts_file.suffix.lower() in (".xlsx", ".xlsm"):
            contacts = read_contacts(contacts_file)
        else:
            contacts = read_contacts_csv(contacts_file)
    else:
        contacts = read_contacts(workbook)
    out_dir = Path(args.out) if args.out else output_dir(settings, workbook)
    if not out_dir.is_dir():
        raise MailError(f"找不到输出文件夹：{out_dir}（请先生成部门任务表和县区工作簿，或用 --out 指定）。")

    plan = plan_messages(settings, contacts, out_dir, only=args.only)
    _print_problems(plan.problems, out)
    resend_uncertain = bool(getattr(args, "resend_uncertain", False))
    skip_delivered = args.resend_failed or resend_uncertain
    url = getattr(args, "db", None) or _text(settings.get(LEDGER_SETTING)) or None

    # 一次只有一个命令写这本工作簿的记录（试运行什么也不写，不占用）
    lock = contextlib.nullcontext() if args.dry_run else workbook_lock(workbook, "发送邮件")
    with lock:
        store = _MailStore(workbook, url)
        try:
            if args.dry_run:
                prior, _ = store.prepare(plan.sender, write=False, sheet_records=read_records_sheet(workbook))
                selection = select_messages(plan.messages, prior, plan.sender, store.round_label)
                messages = selection.pending + ([] if skip_delivered else selection.delivered)
                if resend_uncertain:
                    messages += [m for m, _ in selection.uncertain]
                order = {id(m): i for i, m in enumerate(plan.messages)}
                messages.sort(key=lambda m: order[id(m)])
                if skip_delivered and selection.delivered:
                    print(f"已成功发送过的 {len(selection.delivered)} 封不再生成。", file=out)
                if selection.uncertain and not resend_uncertain:
                    _print_held(selection.uncertain, out)
                written = write_eml(messages, plan.sender, args.dry_run, round_label=store.round_label)
                print(f"试运行：已写出 {len(written)} 封邮件到 {Path(args.dry_run)}，没有发送任何邮件。", file=out)
                return 0 if not plan.problems else 1

            config = smtp_config(settings, host=args.smtp_host, port=args.smtp_port, user=args.user,
                                 security=args.security, timeout=timeout)
            password = _require_password(config, env)
            prior, imported = store.prepare(plan.sender, write=True, sheet_records=read_records_sheet(workbook))
            if imported is not None:
                print(imported.summary(), file=out)
            if not skip_delivered:
                already = select_messages(plan.messages, prior, plan.sender, store.round_label).delivered
                if already:
                    print(f"注意：其中 {len(already)} 封此前已成功发送过同一文件，本次会再次发送；"
                          "只补发未成功的请用 --resend-failed。", file=out)
            progress = _ProgressLine(err)
            try:
                result = execute_plan(plan, config, password, prior_records=prior, round_label=store.round_label,
                                      resend_failed=args.resend_failed, resend_uncertain=resend_uncertain,
                                      on_record=store.record, on_progress=progress, sleep=sleep,
                                      retry_delays=retry_delays, ssl_context=ssl_context)
            finally:
                progress.finish()
                log_file, note = store.export_csv()
            _print_summary(result, out)
            print(f"发送记录：台账 {store.ledger.url}；导出 {log_file}", file=out)
            if note:
                print(note, file=out)
            return 0 if result.ok else 1
        finally:
            store.close()


class _ProgressLine:
    """命令行进度条（写到 stderr），按 Progress 协议接收 (消息, 第几封, 共几封)：
    终端里原地刷新，否则每封一行。"""

    def __init__(self, stream: Any, width: int = 24):
        self.stream = stream
        self.width = width
        self.tty = bool(getattr(stream, "isatty", lambda: False)())
        self.used = False

    def __call__(self, message: str, done: int | None = None, total: int | None = None) -> None:
        done, total = done or 0, total or 0
        filled = int(self.width * done / total) if total else self.width
        bar = "#" * filled + "-" * (self.width - filled)
        line = f"[{bar}] {done}/{total} {message}"
        self.used = True
        if self.tty:
            self.stream.write("\r\x1b[K" + line)
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def finish(self) -> None:
        if self.used and self.tty:
            self.stream.write("\n")
            self.stream.flush()


def _print_problems(problems: Sequence[Problem], out: Any) -> None:
    if not problems:
        return
    print(f"有 {len(problems)} 处无法发送：", file=out)
    for problem in problems:
        print(f"  {problem.subject}：{problem.message}", file=out)


UNCERTAIN_EXPLANATION = (
    "“不确定”是指邮件已经全部发给服务器，但在服务器确认收到之前连接断开了：服务器可能已经收下并投递，"
    "也可能没有。为避免对方收到两封，这些邮件不会自动重发。请先向对方确认是否收到；确认没有收到的，"
    "用 --resend-uncertain 重发（重发的邮件 Message-ID 与上次相同，对方的邮件客户端可据此去重）。"
)


def _print_held(held: Sequence[tuple[OutgoingMessage, SendRecord]], out: Any) -> None:
    print(f"有 {len(held)} 封邮件上次发送结果不确定，本次没有重发：", file=out)
    for message, record in held:
        when = f"（{record.time}）" if record.time else ""
        print(f"  不确定：{message.unit} <{message.address}>{when}", file=out)
    print(UNCERTAIN_EXPLANATION, file=out)


def _print_summary(result: BatchResult, out: Any) -> None:
    total = len(result.sent) + len(result.failed) + len(result.not_sent) + len(result.uncertain)
    print(f"本次共 {total} 封：成功 {len(result.sent)}，失败 {len(result.failed)}，未发送 {len(result.not_sent)}，"
          f"不确定 {len(result.uncertain)}。", file=out)
    if result.skipped:
        print(f"此前已成功发送的 {len(result.skipped)} 封没有重复发送。", file=out)
    for message, reason in result.failed:
        print(f"  失败：{message.unit} <{message.address}>：{reason}", file=out)
    for message, reason in result.not_sent:
        print(f"  未发送：{message.unit} <{message.address}>：{reason}", file=out)
    for message, reason in result.uncertain:
        print(f"  不确定：{message.unit} <{message.address}>：{reason}", file=out)
    if result.failed or result.not_sent:
        print("处理后可用 --resend-failed 补发，已成功的不会重复发送。", file=out)
    if result.uncertain:
        print(UNCERTAIN_EXPLANATION, file=out)
    if result.held:
        _print_held(result.held, out)


# ---------------------------------------------------------------------------
# Excel 功能区（xlwings）
# ---------------------------------------------------------------------------


def send_mail_from_book(
    book: Any,
    *,
    resend_failed: bool = True,
    resend_uncertain: bool = False,
    env: dict[str, str] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    retry_delays: Sequence[float] = DEFAULT_RETRY_DELAYS,
    ssl_context: ssl.SSLContext | None = None,
) -> BatchResult | None:
    """“发送邮件”按钮：从打开的工作簿读设置和通讯录，发送；每次发送记在台账里（工作簿旁的 SQLite
    文件，或设置表“台账数据库”），“发送记录”表只是给人看的副本，CSV 是台账的导出。

    按钮默认只发送还没有成功记录的邮件（第一次按下时即全部），所以重复按不会重复发送；
    结果“不确定”的不重发，在对话框里说明。进度按 Progress 协议显示在状态栏；结果或错误用对话框提示。
    输入有误时返回 None。
    """
    app = book.app
    store: _MailStore | None = None
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", PasswordInSettingsWarning)
            settings = settings_from_rows(_xl_rows(book, SETTINGS_SHEET) or [])
        notes = [str(w.message) for w in caught if issubclass(w.category, PasswordInSettingsWarning)]
        contact_rows = _xl_rows(book, CONTACTS_SHEET)
        if contact_rows is None:
            raise MailError(f"工作簿中没有“{CONTACTS_SHEET}”表，请先填写通讯录。")
        contacts = contacts_from_rows(contact_rows, source=f"“{CONTACTS_SHEET}”表")
        workbook_path = Path(book.fullname)
        if not workbook_path.is_absolute():
            raise MailError("请先保存工作簿：输出文件夹和台账都放在工作簿所在的文件夹里。")
        out_dir = output_dir(settings, workbook_path)
        if not out_dir.is_dir():
            raise MailError(f"找不到输出文件夹：{out_dir}，请先生成部门任务表和县区工作簿。")
        plan = plan_messages(settings, contacts, out_dir)
        config = smtp_config(settings)
        password = _require_password(config, env)
        sheet_records = records_from_rows(_xl_rows(book, RECORD_SHEET) or [])
        store = _MailStore(workbook_path, _text(settings.get(LEDGER_SETTING)) or None)
        prior, imported = store.prepare(plan.sender, write=True, sheet_records=sheet_records)
        if imported is not None:
            notes.append(imported.summary())
        sheet = _xl_record_sheet(book)
    except XlEcomError as exc:
        if store is not None:
            store.close()
        _xl_alert(app, str(exc))
        return None
    except OSError as exc:
        if store is not None:
            store.close()
        _xl_alert(app, _os_error_text(exc))
        return None

    next_row = [_xl_last_row(sheet) + 1]

    def append(record: SendRecord) -> None:
        store.record(record)  # 先记进台账，再写给人看的表
        sheet.range((next_row[0], 1)).value = [_neutralize(v) for v in record.row()]
        next_row[0] += 1

    def progress(message: str, done: int | None = None, total: int | None = None) -> None:
        if done is not None and total is not None and message != "完成":
            app.status_bar = status_text(f"正在发送邮件：{message}", done, total)

    try:
        result = execute_plan(plan, config, password, prior_records=prior, round_label=store.round_label,
                              resend_failed=resend_failed, resend_uncertain=resend_uncertain,
                              on_record=append, on_progress=progress, sleep=sleep,
                              retry_delays=retry_delays, ssl_context=ssl_context)
    except XlEcomError as exc:
        result = None
        notes.append(str(exc).replace("用 --resend-failed 补发", "再次点击“发送邮件”补发"))
    finally:
        app.status_bar = False
        _, note = store.export_csv()
        store.close()
    if note:
        notes.append(note)
    if result is None:
        _xl_alert(app, "\n".join(notes))
        return None
    buffer = io.StringIO()
    _print_problems(plan.problems, buffer)
    _print_summary(result, buffer)
    text = buffer.getvalue().replace("--resend-failed", "再次点击“发送邮件”")
    text = text.replace("用 --resend-uncertain", "在命令行用 xl-ecom mail 工作簿 --resend-uncertain")
    _xl_alert(app, "\n".join(notes + [text + f"详细记录见“{RECORD_SHEET}”表。"]))
    return result


def _xl_sheet_names(book: Any) -> list[str]:
    return [sheet.name for sheet in book.sheets]


def _xl_rows(book: Any, name: str) -> list[list[Any]] | None:
    """某表从 A1 到已用区域末尾的值（二维）；表不存在时为 None。"""
    if name not in _xl_sheet_names(book):
        return None
    sheet = book.sheets[name]
    last = sheet.used_range.last_cell
    return sheet.range((1, 1), (last.row, last.column)).options(ndim=2).value


def _xl_last_row(sheet: Any) -> int:
    return sheet.used_range.last_cell.row


def _xl_record_sheet(book: Any) -> Any:
    """“发送记录”表；没有就在最后新建，并写表头。"""
    if RECORD_SHEET in _xl_sheet_names(book):
        sheet = book.sheets[RECORD_SHEET]
    else:
        sheet = book.sheets.add(RECORD_SHEET, after=book.sheets[len(book.sheets) - 1])
        # 时间、SHA-256 按文本保存，Excel 不会把它们改成日期或数字
        sheet.range((1, 1), (1048576, len(RECORD_HEADERS))).number_format = "@"
    if sheet.range((1, 1)).value is None:
        sheet.range((1, 1)).value = list(RECORD_HEADERS)
    return sheet


def _xl_alert(app: Any, text: str) -> None:
    try:
        app.alert(text, title="发送邮件")
    except Exception:
        app.status_bar = text.splitlines()[0] if text else False


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def _one_line(text: str) -> str:
    """换行、制表和其他控制字符换成空格，连续空白合并：用于邮件头中的名称、主题和文件名。"""
    cleaned = "".join(ch if ch.isprintable() else " " for ch in str(text))
    return " ".join(cleaned.split())


# CSV/表格里的公式样文本：统一由 xl_ecom.common.textsafe 处理（含全角＝＋－＠、前导空格、制表/回车前缀）。
_neutralize = textsafe.neutralise
_unneutralize = textsafe.unneutralise
