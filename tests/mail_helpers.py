"""邮件测试用的工具：真实的 aiosmtpd 服务器（可编程的故障）、市级工作簿和生成文件。"""

from __future__ import annotations

import argparse
import asyncio
import csv
import hashlib
import io
import os
import socket
import subprocess
import threading
from collections import Counter
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from openpyxl import Workbook

from xl_ecom.ledger import open_ledger
from xl_ecom.workflows import mail
from xl_ecom.workflows.settings import (
    CONTACT_HEADERS,
    CONTACTS_SHEET,
    COUNTY_SUBDIR,
    DEPARTMENT_SUBDIR,
    SETTINGS_HEADERS,
    SETTINGS_ROWS,
    SETTINGS_SHEET,
)

SENDER = "shangwu@hn.example.cn"
USER = "clerk@hn.example.cn"
PASSWORD = "s3cret-Pa55"  # 测试断言它不出现在任何输出里


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes

    @property
    def message(self):
        return message_from_bytes(self.data, policy=policy.default)


class FaultyHandler:
    """aiosmtpd 处理器：收下邮件，并按测试的安排制造故障。

    * rcpt_temporary[地址] = n：该地址前 n 次 RCPT 回复 451；
    * rcpt_permanent：这些地址 RCPT 回复 550；
    * data_temporary[地址] = n / data_permanent：DATA 之后回复 451 / 554；
    * drop_at_data = k：第 k 次 DATA（从 1 数）收完邮件内容（含结尾的“.”）后不回复、直接断开连接；
      keep_dropped = True 时断开前先把邮件收下（服务器已投递、只是 250 没送到客户端）；
    * refuse_after_drop：断开之后，新连接在 EHLO 时即被断开（服务器“挂了”）；
    * ehlo_temporary = n：前 n 次 EHLO 回复 421 并断开；ehlo_unsupported：EHLO 回复 502（只能用 HELO）；
      helo_temporary = n：前 n 次 HELO 回复 421 并断开；
    * data_delay[地址] = 秒：收完该地址的邮件内容后先收下，等这么久再回复 250（慢服务器，客户端会超时）。
    """

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.rcpt_temporary: Counter = Counter()
        self.rcpt_permanent: set[str] = set()
        self.data_temporary: Counter = Counter()
        self.data_permanent: set[str] = set()
        self.drop_at_data: int | None = None
        self.refuse_after_drop = False
        self.refusing = False
        self.keep_dropped = False
        self.ehlo_temporary = 0
        self.ehlo_unsupported = False
        self.helo_temporary = 0
        self.helo_count = 0
        self.data_delay: dict[str, float] = {}
        self.rcpt_attempts: Counter = Counter()
        self.data_count = 0
        self.connections = 0
        self.lock = threading.Lock()

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        self.connections += 1
        if self.refusing:
            server.transport.abort()
        if self.ehlo_temporary > 0:
            self.ehlo_temporary -= 1
            await server.push("421 4.3.2 Service not available, closing transmission channel")
            server.transport.close()
            return []
        if self.ehlo_unsupported:
            return ["502 5.5.2 Error: command not recognized"]
        session.host_name = hostname
        return responses

    async def handle_HELO(self, server, session, envelope, hostname):
        self.helo_count += 1
        if self.helo_temporary > 0:
            self.helo_temporary -= 1
            await server.push("421 4.3.2 Too busy, try again later")
            server.transport.close()
            return "421 4.3.2 Too busy, try again later"
        session.host_name = hostname
        return "250 127.0.0.1"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        self.rcpt_attempts[address] += 1
        if address in self.rcpt_permanent:
            return f"550 5.1.1 <{address}>: Recipient address rejected: User unknown"
        if self.rcpt_temporary[address] > 0:
            self.rcpt_temporary[address] -= 1
            return "451 4.7.1 Greylisted, please try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.data_count += 1
        if self.drop_at_data is not None and self.data_count == self.drop_at_data:
            if self.keep_dropped:
                with self.lock:
                    self.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
            server.transport.abort()
            if self.refuse_after_drop:
                self.refusing = True
            return "250 OK"  # 写不出去：连接已断
        rcpt = envelope.rcpt_tos[0]
        if rcpt in self.data_delay:
            with self.lock:
                self.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
            await asyncio.sleep(self.data_delay.pop(rcpt))
            return "250 2.0.0 Ok: queued late"
        if rcpt in self.data_permanent:
            return "554 5.6.0 Message content rejected"
        if self.data_temporary[rcpt] > 0:
            self.data_temporary[rcpt] -= 1
            return "451 4.3.0 Temporary local problem, try later"
        with self.lock:
            self.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
        return f"250 2.0.0 Ok: queued as Q{len(self.received)}"


class SmtpServer:
    """在 127.0.0.1 的随机空闲端口上运行的真实 SMTP 服务器。"""

    def __init__(self, *, auth: bool = False, port: int | None = None,
                 ssl_context=None, tls_context=None) -> None:
        self.handler = FaultyHandler()
        self.port = port or free_port()
        self.auth = auth
        self.ssl_context = ssl_context
        self.tls_context = tls_context
        self.auth_attempts: list[tuple[str, str]] = []
        self.controller: Controller | None = None

    def _authenticate(self, server, session, envelope, mechanism, auth_data):
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        login = auth_data.login.decode()
        password = auth_data.password.decode()
        self.auth_attempts.append((login, password))
        return AuthResult(success=(login == USER and password == PASSWORD), handled=False)

    def start(self) -> SmtpServer:
        kwargs = {}
        if self.auth:
            kwargs.update(authenticator=self._authenticate, auth_require_tls=False, auth_required=True)
        if self.tls_context is not None:
            kwargs.update(tls_context=self.tls_context)
        self.controller = Controller(self.handler, hostname="127.0.0.1", port=self.port,
                                     ssl_context=self.ssl_context, ready_timeout=5, **kwargs)
        self.controller.start()
        return self

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None

    @property
    def received(self) -> list[Received]:
        return self.handler.received

    def by_recipient(self) -> Counter:
        return Counter(addr for r in self.received for addr in r.rcpt_tos)


# ---------------------------------------------------------------------------
# 工作簿和生成文件
# ---------------------------------------------------------------------------

#: 单位 -> (类别, 联系人, 邮箱单元格)
CONTACTS = {
    "市商务局": ("部门", "张科长", "swj1@hn.example.cn； swj2@hn.example.cn"),
    "市财政局": ("部门", "李四", "czj@hn.example.cn"),
    "寿县": ("县区", "王五", "shouxian@sx.example.cn"),
    "凤台县": ("县区", "", "ft-a@ft.example.cn、ft-b@ft.example.cn"),
}

ALL_ADDRESSES = [
    "swj1@hn.example.cn", "swj2@hn.example.cn", "czj@hn.example.cn", "shouxian@sx.example.cn",
    "ft-a@ft.example.cn", "ft-b@ft.example.cn",
]


def make_xlsx(path: Path, unit: str, extra: int = 0) -> bytes:
    """小的 .xlsx（openpyxl 写），内容随单位不同；返回文件字节。"""
    path.parent.mkdir(parents=True, exist_ok=True)
    wb = Workbook()
    ws = wb.active
    ws.title = "任务"
    ws.append(["单位", "任务", "目标"])
    ws.append([unit, "示范村", 3 + extra])
    ws.append([unit, "上行超1000万元企业", 1])
    ws["E1"] = os.urandom(8).hex()
    wb.save(path)
    return path.read_bytes()


@dataclass
class City:
    workbook: Path
    out_dir: Path
    files: dict[str, bytes] = field(default_factory=dict)  # 单位 -> 附件字节
    paths: dict[str, Path] = field(default_factory=dict)

    @property
    def log(self) -> Path:
        return mail.log_path(self.workbook)


def make_city(tmp_path: Path, port: int, *, contacts=None, settings_overrides=None,
              user: str = "", security: str = "无") -> City:
    """市级工作簿（设置、通讯录两张表）和输出文件夹中的部门任务表、县区工作簿。"""
    contacts = CONTACTS if contacts is None else contacts
    folder = tmp_path / "市局"
    folder.mkdir(parents=True, exist_ok=True)
    workbook = folder / "目标任务分解表.xlsx"
    values = {
        "报送截止日期": "2020-11-30",
        "发件人": "淮南市商务局",
        "发件人邮箱": SENDER,
        "SMTP服务器": "127.0.0.1",
        "SMTP端口": port,
        "SMTP用户名": user,
        "加密方式": security,
    }
    values.update(settings_overrides or {})
    wb = Workbook()
    ws = wb.active
    ws.title = SETTINGS_SHEET
    ws.append(list(SETTINGS_HEADERS))
    for key, default, description in SETTINGS_ROWS:
        ws.append([key, values.get(key, default), description])
    cs = wb.create_sheet(CONTACTS_SHEET)
    cs.append(list(CONTACT_HEADERS))
    for unit, (category, person, emails) in contacts.items():
        cs.append([unit, category, person, emails, "0554-1234567"])
    wb.save(workbook)

    city = City(workbook, folder / "输出")
    for index, (unit, (category, _, _)) in enumerate(contacts.items()):
        sub = DEPARTMENT_SUBDIR if category == "部门" else COUNTY_SUBDIR
        path = city.out_dir / sub / f"{unit}.xlsx"
        city.files[unit] = make_xlsx(path, unit, index)
        city.paths[unit] = path
    return city


# ---------------------------------------------------------------------------
# 命令行
# ---------------------------------------------------------------------------


class FakeSleep:
    """注入的退避等待：记录要等多久，不真的等。"""

    def __init__(self) -> None:
        self.delays: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


@dataclass
class CliRun:
    code: int
    stdout: str
    stderr: str
    sleep: FakeSleep


RETRY_DELAYS = (1.0, 2.0, 4.0)


def run_cli(argv: list[str], *, env: dict | None = None, sleep: FakeSleep | None = None,
            ssl_context=None, timeout: float = 5) -> CliRun:
    """像 xl-ecom 那样：建 argparse 解析器、注册 mail 子命令、调用处理函数。"""
    parser = argparse.ArgumentParser(prog="xl-ecom")
    sub = parser.add_subparsers(dest="command", required=True)
    mail.add_cli(sub)
    args = parser.parse_args(["mail", *argv])
    out, err = io.StringIO(), io.StringIO()
    sleep = sleep or FakeSleep()
    code = args.func(args, stdout=out, stderr=err, env={} if env is None else env, sleep=sleep,
                     retry_delays=RETRY_DELAYS, ssl_context=ssl_context, timeout=timeout)
    return CliRun(code, out.getvalue(), err.getvalue(), sleep)


def attempts(city: City):
    """台账里的全部发送记录（MailAttempt）。"""
    with open_ledger(city.workbook) as ledger:
        return ledger.mail_attempts()


def log_rows(city: City) -> list[mail.SendRecord]:
    """台账里的发送记录，还原成本模块的结果（暂时失败 / 未发送 写在台账“说明”的开头）。"""
    return [mail.record_from_attempt(a) for a in attempts(city)]


def current_round_label(city: City) -> str:
    with open_ledger(city.workbook) as ledger:
        return ledger.current_round().label


def expected_message_id(city: City, unit: str, address: str) -> str:
    """这封邮件（本轮、该单位的当前文件）固定的 Message-ID。"""
    sha = hashlib.sha256(city.paths[unit].read_bytes()).hexdigest()
    return mail.stable_message_id(current_round_label(city), unit, address, sha, SENDER.rpartition("@")[2])


def export_rows(city: City) -> list[dict[str, str]]:
    """工作簿旁 CSV 导出的各行（utf-8-sig）。"""
    text = city.log.read_text(encoding="utf-8-sig")
    return list(csv.DictReader(io.StringIO(text, newline="")))


def self_signed_cert(directory: Path) -> tuple[Path, Path]:
    """用 openssl 生成 127.0.0.1 的自签名证书。"""
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )
    return cert, key
