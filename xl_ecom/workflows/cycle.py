"""报送周期：报送轮次、报送情况、催报和退回（issue 10）。

* **轮次**：``xl-ecom round new 2020-10 --deadline 2020-10-25``、``xl-ecom round list``；名称和截止日期也可以取
  “设置”表的“当前轮次”“报送截止日期”（:func:`new_round_from_settings`）。下发文件、报送和邮件都记在台账的
  某一轮次下。新一轮开始时，各单位上一轮的当前数据就是本轮的起点，直到该单位在本轮报送为止
  （:func:`round_rows`、:func:`carried_units`）。
* **报送情况**：:func:`compute_status` 为方案的 17 个单位和 8 个县区逐一列出：下发（文件、时间）、发送（时间、
  收件地址、结果）、收到（时间、哪一版）、校验（状态、问题数）、是否逾期（截止日期已过且没有有效报送）。
  通讯录里没有邮箱的单位标明“无联系邮箱”。“领导小组成员单位.xlsx”和“各县区人民政府.xlsx”只生成，
  不发送，也不报送（前者是协调机构，后者是各县区任务的汇总，各县区的任务已在各自的县区工作簿中）。
  ``xl-ecom status [--json] [--write]``；:func:`write_status_sheet` 把“报送情况”表写入市级工作簿
  （与刷新相同的 OOXML 写法：只替换这张表，其余部件逐字节不变）。
* **催报**：``xl-ecom remind [--dry-run DIR]`` 给本轮还没有有效报送的每个单位发一封（每个邮箱一封），
  模板 templates/mail/催报.txt，重新附上它自己的下发文件；已有有效报送的单位不发。记入台账（类别“催报”）。
* **退回**：``xl-ecom return [--dry-run DIR]`` 给最近一次报送有问题的每个单位发问题清单（文件、工作表、
  单元格、原因），写在正文里，另附 .csv，并附上它报送的文件（找不到时附下发文件），模板 退回.txt。
  每次报送只退回一次：再运行不会为同一份报送重发。记入台账（类别“退回”）。

发送沿用 :mod:`xl_ecom.workflows.mail` 的机制（固定 Message-ID、重试、“不确定”不重发、试运行写 .eml）。
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import datetime as dt
import hashlib
import io
import json
import ssl
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from xl_ecom.common import textsafe
from xl_ecom.common.errors import XlEcomError
from xl_ecom.common.problems import Problem
from xl_ecom.ledger import FAULTY, MERGED, REJECTED, SENT, UNCERTAIN, Ledger, Round, Submission, open_ledger
from xl_ecom.ledger.lock import workbook_lock
from xl_ecom.policy import Plan, load_plan
from xl_ecom.workflows import layout, mail
from xl_ecom.workflows.settings import (
    COUNTY,
    COUNTY_SUBDIR,
    DEPARTMENT,
    DEPARTMENT_SUBDIR,
    SETTINGS_SHEET,
    Contact,
    PasswordInSettingsWarning,
    SettingsError,
    format_date,
    output_dir,
    read_contacts,
    read_settings,
    settings_from_rows,
    unit_file,
)

__all__ = [
    "SHEET_STATUS", "ROUND_SETTING", "DEADLINE_SETTING", "REMIND_KIND", "RETURN_KIND", "GENERATED_ONLY",
    "RETURNED_SUBDIR", "STATUS_HEADERS", "CycleError", "Unit", "UnitStatus", "StatusReport", "CycleMail",
    "plan_units", "resolve_round", "new_round", "new_round_from_settings", "carried_units", "round_rows",
    "compute_status", "workbook_status", "status_rows", "status_sheet_spec", "status_sheet_for_workbook",
    "write_status_sheet",
    "plan_reminders", "plan_returns", "remind_workbook", "return_workbook", "add_cli",
]

#: the sheet 报送情况 (written by :func:`write_status_sheet`)
SHEET_STATUS = "报送情况"
#: 设置 entries read here (a clerk adds 当前轮次; 报送截止日期 is one of the settings rows)
ROUND_SETTING = "当前轮次"
DEADLINE_SETTING = "报送截止日期"
#: the ledger's mail kind of a reminder / a return (the first mail is 部门 / 县区)
REMIND_KIND = "催报"
RETURN_KIND = "退回"
#: a unit whose task sheet is generated but never sent nor reported
GENERATED_ONLY = "只生成"
#: where the returned county workbooks are put before collect: <输出文件夹>/县区报表
RETURNED_SUBDIR = "县区报表"
TEMPLATE_FILES = {REMIND_KIND: "催报.txt", RETURN_KIND: "退回.txt"}
_COMMON_KEYS = ("单位", "联系人", "称呼", "类别", "轮次", "截止日期", "发件人", "发件人邮箱", "附件名", "发送日期")
TEMPLATE_KEYS = {
    REMIND_KIND: _COMMON_KEYS + ("截止情况", "报送情况", "文件类别"),
    RETURN_KIND: _COMMON_KEYS + ("收到时间", "报送文件", "版本", "问题数", "处理结果", "问题清单", "问题表", "报送期限"),
}
#: problems listed in a return's body (all are in the attached .csv)
BODY_PROBLEMS = 50
PROBLEM_HEADERS = ("文件", "工作表", "单元格", "原因", "值")

_NOTES = {
    "各县区人民政府": "方案分给“各县区人民政府”的任务汇总表：只生成，不发送，也不报送（各县区的任务已在各自的县区工作簿中）",
    "协调机构": "协调机构（市加快电子商务发展工作领导小组成员单位）的任务表：只生成，不发送，也不报送",
}


class CycleError(XlEcomError):
    """报送周期的命令无法完成；消息是中文并写明是哪个值。"""


# ----------------------------------------------------------------------------------------------- units


@dataclass(frozen=True)
class Unit:
    """One row of 报送情况: a plan department (部门 / 只生成) or a county (县区)."""

    name: str
    category: str  # 部门 / 县区 / 只生成
    file_stem: str
    reports: bool  # sent its file and expected to report back
    note: str = ""

    @property
    def subdir(self) -> str:
        return COUNTY_SUBDIR if self.category == COUNTY else DEPARTMENT_SUBDIR

    @property
    def mail_category(self) -> str:
        return COUNTY if self.category == COUNTY else DEPARTMENT


def plan_units(plan: Plan | None = None) -> list[Unit]:
    """The plan's 17 units in the plan's order (15 departments; 各县区人民政府 and 领导小组成员单位 only generated),
    then its 8 counties."""
    plan = plan or load_plan()
    units = []
    for d in plan.departments:
        stem = d.get("short") or d["name"]
        if d.get("kind") == DEPARTMENT:
            units.append(Unit(d["name"], DEPARTMENT, stem, True))
        else:
            note = _NOTES.get(d["name"]) or _NOTES.get(d.get("kind", ""), "只生成，不发送，也不报送")
            units.append(Unit(d["name"], GENERATED_ONLY, stem, False, note))
    units += [Unit(c, COUNTY, c, True) for c in plan.counties]
    return units


# ----------------------------------------------------------------------------------------------- rounds


def resolve_round(ledger: Ledger, label: str | None = None) -> Round | None:
    """The round named ``label``, else the ledger's current (newest) round; None when the ledger has none."""
    if label:
        found = ledger.round_by_label(str(label).strip())
        if found is None:
            names = "、".join(r.label for r in ledger.rounds()) or "（无）"
            raise CycleError(f"台账中没有报送轮次“{label}”（已有：{names}）")
        return found
    return ledger.current_round()


def _parse_deadline(value: Any) -> dt.date | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    try:
        return settings_from_rows([(DEADLINE_SETTING, str(value).strip())])[DEADLINE_SETTING]
    except SettingsError:
        raise CycleError(f"截止日期“{value}”不是有效日期，请写成 2020-10-25 这样的格式") from None


def new_round(ledger: Ledger, label: str, deadline: Any = None) -> tuple[Round, dict[str, Round]]:
    """Create the round; returns it and the units whose earlier data is its starting point (unit → round)."""
    label = str(label or "").strip()
    if not label:
        raise CycleError("请给出报送轮次的名称，如 2020-10（或在“设置”表填写“当前轮次”）")
    created = ledger.new_round(label, _parse_deadline(deadline))
    return created, carried_units(ledger, created.id)


def new_round_from_settings(workbook: Path | str, db: str | None = None) -> tuple[Round, dict[str, Round]]:
    """The 设置 entry point (ribbon): a new round named by 设置's 当前轮次, due by its 报送截止日期."""
    settings = _settings(Path(workbook))
    label = _text(settings.get(ROUND_SETTING))
    if not label:
        raise CycleError(f"“{SETTINGS_SHEET}”表中没有“{ROUND_SETTING}”：请加一行“{ROUND_SETTING}”并填写轮次名称，如 2020-10")
    with open_ledger(workbook, db or _db_setting(settings)) as ledger:
        existing = ledger.round_by_label(label)
        if existing is not None:
            return existing, carried_units(ledger, existing.id)
        return new_round(ledger, label, settings.get(DEADLINE_SETTING))


def _merged_units(ledger: Ledger, round_id: int) -> dict[str, Submission]:
    return {s.unit: s for s in ledger.submissions(round_id=round_id) if s.status == MERGED}


def carried_units(ledger: Ledger, round_id: int) -> dict[str, Round]:
    """Units without a valid submission in this round whose data of an earlier round stands: unit → the
    newest earlier round in which it has a current (已汇总) submission."""
    rounds = [r for r in ledger.rounds() if r.id < round_id]
    own = set(_merged_units(ledger, round_id))
    carried: dict[str, Round] = {}
    for rnd in reversed(rounds):
        for unit in _merged_units(ledger, rnd.id):
            if unit not in own and unit not in carried:
                carried[unit] = rnd
    return carried


def round_rows(ledger: Ledger, table_key: str, round_id: int | None = None) -> pd.DataFrame:
    """The rows of ``table_key`` that stand in a round: each unit's current submission of this round, and
    for a unit that has not submitted in this round, its current rows of the newest earlier round
    (the previous round's data carries forward). Columns as ``Ledger.current_rows`` plus ``_round``
    (the label of the round the rows come from)."""
    rnd = ledger.current_round() if round_id is None else _round_by_id(ledger, round_id)
    if rnd is None:
        return ledger.current_rows(table_key)
    parts = []
    own = ledger.current_rows(table_key, round_id=rnd.id)
    own["_round"] = rnd.label
    parts.append(own)
    for unit, earlier in carried_units(ledger, rnd.id).items():
        frame = ledger.current_rows(table_key, round_id=earlier.id, unit=unit)
        if len(frame):
            frame["_round"] = earlier.label
            parts.append(frame)
    if len(parts) == 1:
        return own
    frame = pd.concat(parts, ignore_index=True)
    tail = [c for c in ("_unit", "_submission", "_row", "_round") if c in frame.columns]
    return frame[[c for c in frame.columns if c not in tail] + tail]


def _round_by_id(ledger: Ledger, round_id: int) -> Round:
    for r in ledger.rounds():
        if r.id == round_id:
            return r
    raise CycleError(f"台账中没有第 {round_id} 号报送轮次")


# ----------------------------------------------------------------------------------------------- status


@dataclass
class UnitStatus:
    unit: str
    category: str
    reports: bool
    state: str = ""
    note: str = ""
    file: str = ""  # the issued file's name
    issued_at: dt.datetime | None = None
    issued_how: str = ""  # 台账登记 / 沿用“首轮” / 已生成（未登记） / ""
    addresses: tuple[str, ...] = ()
    has_contact: bool = False
    mailed_at: dt.datetime | None = None
    mailed_to: tuple[str, ...] = ()
    mail_status: str = ""
    received_at: dt.datetime | None = None
    received_file: str = ""
    version: int | None = None
    submission_id: int | None = None
    submission_status: str = ""
    problem_count: int = 0
    valid: bool = False  # a 已汇总 submission in this round
    valid_version: int | None = None
    overdue: bool = False
    carried_from: str = ""  # the round whose data stands (no submission in this round)
    reminded_at: dt.datetime | None = None
    reminders: int = 0
    returned_at: dt.datetime | None = None

    def to_json(self) -> dict[str, Any]:
        def t(value: dt.datetime | None) -> str | None:
            return None if value is None else value.isoformat(sep=" ")

        return {
            "unit": self.unit, "category": self.category, "reports": self.reports, "state": self.state,
            "note": self.note, "file": self.file, "issued_at": t(self.issued_at), "issued_how": self.issued_how,
            "addresses": list(self.addresses), "has_contact": self.has_contact, "mailed_at": t(self.mailed_at),
            "mailed_to": list(self.mailed_to), "mail_status": self.mail_status, "received_at": t(self.received_at),
            "received_file": self.received_file, "version": self.version, "submission_id": self.submission_id,
            "submission_status": self.submission_status, "problem_count": self.problem_count,
            "valid": self.valid, "valid_version": self.valid_version, "overdue": self.overdue,
            "carried_from": self.carried_from or None, "reminded_at": t(self.reminded_at),
            "reminders": self.reminders, "returned_at": t(self.returned_at),
        }


@dataclass
class StatusReport:
    round: Round | None
    deadline: dt.date | None
    today: dt.date
    units: list[UnitStatus]
    ledger_url: str = ""
    notes: list[str] = field(default_factory=list)

    def by_unit(self) -> dict[str, UnitStatus]:
        return {u.unit: u for u in self.units}

    @property
    def expected(self) -> list[UnitStatus]:
        return [u for u in self.units if u.reports]

    @property
    def problems(self) -> bool:
        """Done with problems (exit 1): a unit overdue, or whose latest submission has problems."""
        return any(u.overdue or u.problem_count for u in self.expected)

    def summary(self) -> str:
        exp = self.expected
        valid = sum(u.valid for u in exp)
        parts = [f"应报 {len(exp)} 个单位，已有有效报送 {valid} 个"]
        errors = sum(1 for u in exp if u.problem_count)
        if errors:
            parts.append(f"最近一次报送有问题 {errors} 个")
        overdue = sum(u.overdue for u in exp)
        if overdue:
            parts.append(f"逾期 {overdue} 个")
        missing = sum(1 for u in exp if not u.has_contact)
        if missing:
            parts.append(f"无联系邮箱 {missing} 个")
        only = [u.unit for u in self.units if not u.reports]
        if only:
            parts.append(f"只生成不发送 {len(only)} 个")
        return "，".join(parts)

    def heading(self) -> str:
        name = f"报送轮次“{self.round.label}”" if self.round is not None else "台账中还没有报送轮次"
        due = f"，截止日期 {self.deadline.isoformat()}" if self.deadline else "，未设截止日期"
        return f"{name}{due}（{self.today.isoformat()}）"

    def to_text(self) -> str:
        lines = [self.heading(), self.summary() + "。"] + [f"注意：{n}" for n in self.notes]
        for u in self.units:
            lines.append(f"  {u.unit}（{u.category}）：{u.state}" + (f"；{_detail(u)}" if _detail(u) else ""))
        if self.ledger_url:
            lines.append(f"台账：{self.ledger_url}")
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        return {
            "round": None if self.round is None else self.round.label,
            "deadline": None if self.deadline is None else self.deadline.isoformat(),
            "today": self.today.isoformat(),
            "summary": self.summary(),
            "units": [u.to_json() for u in self.units],
            "exit_code": 1 if self.problems else 0,
            "notes": list(self.notes),
        }


def _detail(u: UnitStatus) -> str:
    bits = []
    if u.file:
        bits.append(f"下发 {u.file}" + (f"（{u.issued_how}）" if u.issued_how else ""))
    if u.reports:
        if not u.has_contact and "无联系邮箱" not in u.state:
            bits.append("通讯录中无联系邮箱")
        if u.mailed_at:
            bits.append(f"{_when(u.mailed_at)} 发给 {'、'.join(u.mailed_to)}（{u.mail_status}）")
        elif u.mail_status:
            bits.append(f"发送：{u.mail_status}")
        if u.received_at:
            bits.append(f"{_when(u.received_at)} 收到第{u.version}版“{u.received_file}”：{u.submission_status}"
                        + (f"，{u.problem_count}处问题" if u.problem_count else ""))
        if u.carried_from:
            bits.append(f"沿用“{u.carried_from}”的数据")
        if u.reminders:
            bits.append(f"已催报{u.reminders}次（最近 {_when(u.reminded_at)}）")
        if u.returned_at:
            bits.append(f"{_when(u.returned_at)} 已退回")
    if u.note:
        bits.append(u.note)
    return "；".join(bits)


def _when(value: dt.datetime | None) -> str:
    return "" if value is None else value.strftime("%Y-%m-%d %H:%M")


def compute_status(ledger: Ledger, settings: dict[str, Any], contacts: Sequence[Contact], out_dir: Path,
                   *, plan: Plan | None = None, round_label: str | None = None,
                   today: dt.date | None = None) -> StatusReport:
    """报送情况 of every unit of the plan in one round (default: the ledger's current round)."""
    today = today or dt.date.today()
    rnd = resolve_round(ledger, round_label)
    deadline = (rnd.deadline if rnd is not None else None) or _parse_deadline(settings.get(DEADLINE_SETTING))
    by_contact = {c.unit: c for c in contacts}
    rounds = {r.id: r for r in ledger.rounds()}
    issues = ledger.issues() if rnd is not None else []
    everything = ledger.mail_attempts() if rnd is not None else []
    attempts = [a for a in everything if rnd is not None and a.round_id == rnd.id]
    earlier_mail = [a for a in everything if rnd is not None and a.round_id < rnd.id]
    submissions = ledger.submissions(round_id=rnd.id) if rnd is not None else []
    carried = carried_units(ledger, rnd.id) if rnd is not None else {}
    report = StatusReport(rnd, deadline, today, [], ledger.url)
    named = _text(settings.get(ROUND_SETTING))
    if named and not round_label and (rnd is None or named != rnd.label):
        known = ledger.round_by_label(named) is not None
        report.notes.append(
            f"“{SETTINGS_SHEET}”表的“{ROUND_SETTING}”是“{named}”，台账的当前轮次是“{rnd.label if rnd else '（无）'}”："
            + ("要看那一轮请用 --round。" if known else "请用 xl-ecom round new 新建这一轮（汇总和发送总是记在台账的当前轮次下）。")
        )
    for unit in plan_units(plan):
        s = UnitStatus(unit.name, unit.category, unit.reports, note=unit.note)
        _issued(s, unit, issues, rnd, rounds, out_dir)
        if not unit.reports:
            s.state = "只生成，不发送"
            report.units.append(s)
            continue
        contact = by_contact.get(unit.name) or by_contact.get(unit.file_stem)
        s.addresses = tuple(contact.addresses) if contact else ()
        s.has_contact = bool(s.addresses)
        mine = [a for a in attempts if a.unit in (unit.name, unit.file_stem)]
        first = [a for a in mine if a.kind not in (REMIND_KIND, RETURN_KIND)]
        sent = [a for a in first if a.status == SENT]
        if sent:
            s.mailed_at = max(a.attempted_at for a in sent)
            s.mailed_to = tuple(dict.fromkeys(a.address for a in sent))
            s.mail_status = SENT
        elif first:
            s.mail_status = mail.record_from_attempt(first[-1]).result  # 未发送 / 暂时失败 / 失败 / 不确定
        else:  # not mailed in this round: the file mailed in an earlier round still stands
            before = [a for a in earlier_mail if a.unit in (unit.name, unit.file_stem) and a.status == SENT
                      and a.kind not in (REMIND_KIND, RETURN_KIND)]
            if before:
                latest = max(a.round_id for a in before)
                before = [a for a in before if a.round_id == latest]
                s.mailed_at = max(a.attempted_at for a in before)
                s.mailed_to = tuple(dict.fromkeys(a.address for a in before))
                s.mail_status = f"已发送（“{rounds[latest].label}”）" if latest in rounds else SENT
        reminders = [a for a in mine if a.kind == REMIND_KIND and a.status == SENT]
        if reminders:
            s.reminded_at = max(a.attempted_at for a in reminders)
            s.reminders = _runs(reminders)
        returns = [a for a in mine if a.kind == RETURN_KIND and a.status == SENT]
        if returns:
            s.returned_at = max(a.attempted_at for a in returns)
        subs = [x for x in submissions if x.unit == unit.name]
        if subs:
            last = subs[-1]
            s.received_at, s.received_file, s.version = last.received_at, last.file_name, last.version
            s.submission_id, s.problem_count = last.id, last.problem_count
            s.submission_status = last.status
            valid = [x for x in subs if x.status == MERGED]
            if valid:
                s.valid, s.valid_version = True, valid[-1].version
        if not s.valid and unit.name in carried:
            s.carried_from = carried[unit.name].label
        s.overdue = not s.valid and deadline is not None and today > deadline
        s.state = _state(s)
        report.units.append(s)
    return report


def _runs(reminders: list) -> int:
    """How many reminders a unit got: one per run (the attempts of one run share one purpose, see
    :func:`plan_reminders`; counted by distinct Message-ID prefix per address)."""
    per_address: dict[str, int] = {}
    for a in reminders:
        per_address[a.address] = per_address.get(a.address, 0) + 1
    return max(per_address.values()) if per_address else 0


def _state(s: UnitStatus) -> str:
    if s.valid:
        if s.problem_count and s.submission_status == MERGED:
            return f"已报送（第{s.version}版有{s.problem_count}处问题，有效行已汇总）"
        if s.submission_status != MERGED:
            return f"已报送第{s.valid_version}版；最近的第{s.version}版{s.submission_status}，{s.problem_count}处问题"
        return f"已报送（第{s.version}版）"
    late = "，已逾期" if s.overdue else ""
    if s.submission_status:
        return f"报送有错（第{s.version}版{s.submission_status}，{s.problem_count}处问题）{late}"
    if not s.has_contact:
        return f"未报送{late}（通讯录中无联系邮箱）"
    return "逾期未报" if s.overdue else "未报送"


def _issued(s: UnitStatus, unit: Unit, issues: list, rnd: Round | None, rounds: dict, out_dir: Path) -> None:
    mine = [i for i in issues if i.unit == unit.name]
    here = [i for i in mine if rnd is not None and i.round_id == rnd.id]
    earlier = [i for i in mine if rnd is not None and i.round_id < rnd.id]
    if here:
        s.file, s.issued_at, s.issued_how = here[-1].file_name, here[-1].issued_at, "台账登记"
        return
    if earlier:
        label = rounds[earlier[-1].round_id].label if earlier[-1].round_id in rounds else ""
        s.file, s.issued_at, s.issued_how = earlier[-1].file_name, earlier[-1].issued_at, f"沿用“{label}”下发的文件"
        return
    path = out_dir / unit.subdir / f"{unit.file_stem}.xlsx"
    if path.is_file():
        s.file = path.name
        s.issued_at = dt.datetime.fromtimestamp(path.stat().st_mtime).replace(microsecond=0)
        s.issued_how = "已生成" if not unit.reports else "已生成，未登记到台账"


# ----------------------------------------------------------------------------------------------- workbook inputs


def _settings(workbook: Path) -> dict[str, Any]:
    if not workbook.is_file():
        raise CycleError(f"找不到工作簿“{workbook}”")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PasswordInSettingsWarning)
        return read_settings(workbook)


def _db_setting(settings: dict[str, Any]) -> str | None:
    return _text(settings.get(mail.LEDGER_SETTING)) or None


@dataclass
class _Context:
    workbook: Path
    settings: dict[str, Any]
    contacts: list[Contact]
    out_dir: Path
    db: str | None


def _context(workbook: Path | str, db: str | None = None, out: str | None = None,
             contacts: list[Contact] | None = None, settings: dict[str, Any] | None = None) -> _Context:
    workbook = Path(workbook)
    if settings is None:
        settings = _settings(workbook)
    if contacts is None:
        contacts = read_contacts(workbook)
    folder = Path(out) if out else output_dir(settings, workbook)
    return _Context(workbook, settings, contacts, folder, db or _db_setting(settings))


def workbook_status(workbook: Path | str, db: str | None = None, *, round_label: str | None = None,
                    today: dt.date | None = None, plan: Plan | None = None) -> StatusReport:
    """报送情况 for the city workbook (设置, 通讯录, 输出文件夹) and its ledger."""
    ctx = _context(workbook, db)
    with open_ledger(ctx.workbook, ctx.db) as ledger:
        return compute_status(ledger, ctx.settings, ctx.contacts, ctx.out_dir, plan=plan, round_label=round_label,
                              today=today)


# ----------------------------------------------------------------------------------------------- the sheet

STATUS_HEADERS = ("单位", "类别", "状态", "下发文件", "下发时间", "联系邮箱", "发送时间", "发送结果", "收到时间",
                  "报送文件", "版本", "校验结果", "问题数", "逾期", "最近催报", "催报次数", "最近退回", "说明")
_WIDTHS = (22, 8, 30, 22, 17, 28, 17, 10, 17, 24, 6, 10, 8, 6, 17, 8, 17, 40)
_KINDS = ("text", "center", "text", "text", "center", "text", "center", "center", "center", "text", "count",
          "center", "count", "center", "center", "count", "center", "text")


def status_rows(report: StatusReport) -> list[list[Any]]:
    """The 报送情况 body rows (one per unit, columns :data:`STATUS_HEADERS`), for every writer (the package
    writer here, xlwings in the ribbon)."""
    rows = []
    for u in report.units:
        note = u.note
        if u.carried_from:
            note = f"本轮尚未报送，沿用“{u.carried_from}”的数据" + (f"；{note}" if note else "")
        if u.issued_how and u.issued_how not in ("台账登记", "已生成"):
            note = (note + "；" if note else "") + f"下发：{u.issued_how}"
        rows.append([
            u.unit, u.category, u.state, u.file or None, _when(u.issued_at) or None,
            ("；".join(u.addresses) if u.addresses else ("无联系邮箱" if u.reports else "不发送")),
            _when(u.mailed_at) or None, u.mail_status or None, _when(u.received_at) or None,
            u.received_file or None, u.version, u.submission_status or None,
            u.problem_count if u.submission_status else None, ("是" if u.overdue else ("否" if u.reports else None)),
            _when(u.reminded_at) or None, u.reminders or None, _when(u.returned_at) or None, note or None,
        ])
    return rows


def status_sheet_spec(report: StatusReport):
    from xl_ecom.workflows.refresh.layouts import Block, SheetSpec

    return SheetSpec(
        name=SHEET_STATUS,
        title=f"报送情况：{report.round.label if report.round else '（尚无轮次）'}",
        subtitle=f"{report.heading()}。{report.summary()}。由 xl-ecom status --write 生成，请勿手工修改。",
        ncols=len(STATUS_HEADERS),
        widths=list(_WIDTHS),
        blocks=[Block(top=3, headers=[list(STATUS_HEADERS)], rows=status_rows(report), kinds=list(_KINDS))],
        print_rows="3:3",
        freeze="B4",
    )


def status_sheet_for_workbook(workbook: Path | str, db: str | None = None, *, today: dt.date | None = None):
    """The ribbon's 报送情况 (pure part): the sheet's layout (a refresh ``SheetSpec``) for the workbook file's
    设置, 通讯录 and ledger, for the xlwings writer to render into the open book."""
    return status_sheet_spec(workbook_status(workbook, db, today=today))


def write_status_sheet(workbook: Path | str, report: StatusReport, *, backup: bool = True,
                       lock: bool = True) -> Path | None:
    """Put 报送情况 into the city workbook file (new: after 发送记录 or 通讯录; else replaced in place). Only
    that sheet's part, the new styles and the workbook's bookkeeping change; the VBA project, the ribbon and
    every other sheet stay byte for byte (checked as refresh checks). Returns the backup's path."""
    from xl_ecom.ooxml import safeio
    from xl_ecom.ooxml.styles import Styles
    from xl_ecom.workflows.refresh import write as refresh_write
    from xl_ecom.workflows.refresh.read import Package

    path = Path(workbook)
    spec = status_sheet_spec(report)
    guard = workbook_lock(path, "写入报送情况") if lock else contextlib.nullcontext()
    with guard:
        original = path.read_bytes()
        pkg = Package(original, path.name)
        styles = Styles(pkg)
        # a new sheet goes after 发送记录 (else 通讯录, else last); an existing one stays where it is
        after = next((n for n in (SHEET_STATUS, layout.SHEET_MAIL_LOG, layout.SHEET_CONTACTS) if n in pkg.sheet_names),
                     pkg.sheet_names[-1])
        code_name = refresh_write._code_name_for(pkg, SHEET_STATUS)
        xml = refresh_write._sheet_xml(spec, styles, code_name, False)
        pkg.replace_sheet(SHEET_STATUS, xml, after, None)
        pkg.set_print_titles(SHEET_STATUS, spec.print_rows)
        styles.save()
        pkg.finish([SHEET_STATUS])
        data = pkg.to_bytes()
        refresh_write.check_kept(original, data, path.name)
        try:
            return safeio.write_atomically(path, data, backup=backup)
        except safeio.FileBusyError as exc:
            raise CycleError(str(exc)) from None


# ----------------------------------------------------------------------------------------------- mail


@dataclass
class CycleMail:
    """One run of 催报 or 退回: the messages planned, units that cannot be mailed, and the send result."""

    kind: str
    round: Round
    messages: list[mail.OutgoingMessage]
    problems: list[Problem]
    sender: mail.Sender
    skipped: list[str] = field(default_factory=list)  # already returned for this submission
    result: mail.BatchResult | None = None
    written: list[Path] = field(default_factory=list)  # dry run: the .eml files

    @property
    def units(self) -> list[str]:
        return list(dict.fromkeys(m.unit for m in self.messages))

    @property
    def ok(self) -> bool:
        return not self.problems and (self.result is None or self.result.ok)

    def to_text(self) -> str:
        lines = []
        verb = "催报" if self.kind == REMIND_KIND else "退回"
        if self.written:
            lines.append(f"试运行：{verb}邮件 {len(self.written)} 封已写出（{len(self.units)} 个单位），没有发送任何邮件。")
        elif self.result is not None:
            r = self.result
            lines.append(f"{verb}（{self.round.label}）：{len(self.units)} 个单位共 {len(self.messages)} 封，"
                         f"成功 {len(r.sent)}，失败 {len(r.failed)}，未发送 {len(r.not_sent)}，不确定 {len(r.uncertain)}。")
            for m, why in r.failed + r.not_sent + r.uncertain:
                lines.append(f"  {m.unit} <{m.address}>：{why}")
            if r.uncertain:
                lines.append(mail.UNCERTAIN_EXPLANATION.replace("用 --resend-uncertain 重发", "再运行一次不会重发"))
        if not self.messages and not self.problems:
            lines.append("没有需要" + ("催报的单位：应报单位都已有有效报送。" if self.kind == REMIND_KIND
                                    else "退回的报送：最近一次报送都没有问题，或已退回过。"))
        if self.skipped:
            lines.append(f"已退回过、本次不再发送：{'、'.join(self.skipped)}")
        if self.problems:
            lines.append(f"有 {len(self.problems)} 个单位无法发送：")
            lines += [f"  {p.subject}：{p.message}" for p in self.problems]
        return "\n".join(lines)


def _template(kind: str, template_dir: Path | None = None):
    return mail.load_template((template_dir or mail.TEMPLATE_DIR) / TEMPLATE_FILES[kind], TEMPLATE_KEYS[kind])


def _fill(template, values: dict[str, str], settings: dict[str, Any]) -> tuple[str, str]:
    for key in ("发件人", "发件人邮箱"):
        if key in template.identifiers and not values.get(key):
            raise CycleError(f"邮件模板 {template.path.name} 用到了 ${{{key}}}，但“{SETTINGS_SHEET}”表中“{key}”为空，请先填写")
    return mail._one_line(template.subject.substitute(values)), template.body.substitute(values)


def _addresses(unit: str, contact: Contact | None, label: str, problems: list[Problem]) -> list[str]:
    if contact is None or not contact.addresses:
        problems.append(Problem(subject=unit, message=f"通讯录中没有“{unit}”的邮箱，请填写后再{label}", file=""))
        return []
    good: list[str] = []
    for raw in contact.addresses:
        try:
            address = mail.normalize_address(raw)
        except ValueError as exc:
            problems.append(Problem(subject=unit, message=f"{exc}（{contact.source}）", address=mail._one_line(raw)))
            continue
        if address.casefold() not in {g.casefold() for g in good}:
            good.append(address)
    return good


def _base_values(unit: str, contact: Contact | None, category: str, rnd: Round, deadline: dt.date | None,
                 sender: mail.Sender, attachment: str, today: dt.date) -> dict[str, str]:
    person = contact.person if contact else ""
    return {
        "单位": unit, "联系人": person, "称呼": person or unit, "类别": category, "轮次": rnd.label,
        "截止日期": format_date(deadline) or "（未设截止日期）", "发件人": sender.name, "发件人邮箱": sender.address,
        "附件名": attachment, "发送日期": format_date(today),
    }


def _key(message: mail.OutgoingMessage, sender: mail.Sender, rnd: Round) -> str:
    return mail.message_key(mail.message_id_for(message, sender, rnd.label))


def plan_reminders(ledger: Ledger, status: StatusReport, settings: dict[str, Any], contacts: Sequence[Contact],
                   out_dir: Path, *, only: Sequence[str] | None = None, today: dt.date | None = None,
                   template_dir: Path | None = None) -> CycleMail:
    """催报: one message per address of each reporting unit without a valid submission in the round, with its
    own issued file attached again. A unit with a valid submission is never reminded."""
    today = today or status.today
    rnd = _need_round(status)
    sender = mail.sender_from_settings(settings)
    template = _template(REMIND_KIND, template_dir)
    by_contact = {c.unit: c for c in contacts}
    wanted = _only(only, status)
    prior = [a for a in ledger.mail_attempts(rnd.id) if a.kind == REMIND_KIND and a.status in (SENT, UNCERTAIN)]
    plan = CycleMail(REMIND_KIND, rnd, [], [], sender)
    units = {u.name: u for u in plan_units()}
    for s in status.expected:
        if s.valid or (wanted is not None and s.unit not in wanted):
            continue
        unit = units[s.unit]
        contact = by_contact.get(unit.name) or by_contact.get(unit.file_stem)
        addresses = _addresses(unit.name, contact, "催报", plan.problems)
        if not addresses:
            continue
        path = unit_file(out_dir, unit.mail_category, unit.file_stem)
        if not path.is_file():
            plan.problems.append(Problem(subject=unit.name, message=f"找不到它的下发文件 {path}，请先生成", file=str(path)))
            continue
        data = path.read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        values = _base_values(unit.name, contact, unit.mail_category, rnd, status.deadline, sender, path.name, today)
        if status.deadline is None:
            values["截止情况"] = ""
        elif today > status.deadline:
            values["截止情况"] = f"现已逾期{(today - status.deadline).days}天。"
        else:
            values["截止情况"] = f"距截止还有{(status.deadline - today).days}天。"
        if s.submission_status:
            values["报送情况"] = (f"收到的第{s.version}版“{s.received_file}”{s.submission_status}（{s.problem_count}处问题），"
                              "尚无可以汇总的数据")
        else:
            values["报送情况"] = "尚未收到贵单位的报送"
        values["文件类别"] = "县区工作簿" if unit.category == COUNTY else "工作任务表"
        subject, body = _fill(template, values, settings)
        for address in addresses:
            done = sum(1 for a in prior if a.unit == unit.name and a.address.casefold() == address.casefold())
            message = mail.OutgoingMessage(unit.name, REMIND_KIND, contact.person if contact else "", address, path,
                                           _label(path, out_dir), digest, subject, body, data,
                                           purpose=f"{REMIND_KIND}#{done + 1}")
            plan.messages.append(message)
    return plan


def plan_returns(ledger: Ledger, status: StatusReport, settings: dict[str, Any], contacts: Sequence[Contact],
                 out_dir: Path, *, returned_dir: Path | None = None, only: Sequence[str] | None = None,
                 today: dt.date | None = None, template_dir: Path | None = None) -> CycleMail:
    """退回: for each reporting unit whose latest submission in the round has problems, one message per
    address with the problems (in the body and as a .csv) and the file it sent (found in ``returned_dir`` by
    name and SHA-256; else its issued file). Once per submission: an address that already got (or may have
    got: 不确定) the return of this submission is not mailed again."""
    today = today or status.today
    rnd = _need_round(status)
    sender = mail.sender_from_settings(settings)
    template = _template(RETURN_KIND, template_dir)
    by_contact = {c.unit: c for c in contacts}
    wanted = _only(only, status)
    returned_dir = returned_dir or out_dir / RETURNED_SUBDIR
    prior = {mail.message_key(a.message_id) for a in ledger.mail_attempts(rnd.id)
             if a.kind == RETURN_KIND and a.status in (SENT, UNCERTAIN)}
    plan = CycleMail(RETURN_KIND, rnd, [], [], sender)
    units = {u.name: u for u in plan_units()}
    for s in status.expected:
        if not s.problem_count or s.submission_id is None or (wanted is not None and s.unit not in wanted):
            continue
        unit = units[s.unit]
        sub = ledger.get_submission(s.submission_id)
        contact = by_contact.get(unit.name) or by_contact.get(unit.file_stem)
        addresses = _addresses(unit.name, contact, "退回", plan.problems)
        if not addresses:
            continue
        path, note = _returned_file(sub, returned_dir, unit_file(out_dir, unit.mail_category, unit.file_stem))
        if path is None:
            plan.problems.append(Problem(subject=unit.name, message=note))
            continue
        data = path.read_bytes()
        rows = [(sub.file_name, p.sheet, p.cell, p.reason, p.value) for p in ledger.problems(sub.id)]
        table_name = f"{unit.file_stem}_问题清单_第{sub.version}版.csv"
        values = _base_values(unit.name, contact, unit.mail_category, rnd, status.deadline, sender, path.name, today)
        values.update({
            "收到时间": sub.received_at.strftime("%Y年%m月%d日 %H:%M"), "报送文件": sub.file_name,
            "版本": str(sub.version), "问题数": str(sub.problem_count), "问题表": table_name,
            "处理结果": _outcome(sub, s) + (f"（{note}）" if note else ""), "问题清单": _problem_lines(rows),
            "报送期限": _due_text(status.deadline, today),
        })
        subject, body = _fill(template, values, settings)
        for address in addresses:
            message = mail.OutgoingMessage(unit.name, RETURN_KIND, contact.person if contact else "", address, path,
                                           path.name, sub.sha256, subject, body, data,
                                           purpose=f"{RETURN_KIND}#{sub.id}", extra=((table_name, _problem_csv(rows)),))
            if _key(message, sender, rnd) in prior:
                if unit.name not in plan.skipped:
                    plan.skipped.append(unit.name)
                continue
            plan.messages.append(message)
    return plan


def _due_text(deadline: dt.date | None, today: dt.date) -> str:
    if deadline is None:
        return "尽快"
    if today > deadline:
        return f"尽快（本轮截止日期{format_date(deadline)}已过）"
    return f"于{format_date(deadline)}前"


def _outcome(sub: Submission, s: UnitStatus) -> str:
    if sub.status == MERGED:
        return "其中没有问题的行已经汇总，有问题的行没有汇总。"
    if sub.status == REJECTED:
        return f"整个文件没有汇总（{sub.reason}）。" if sub.reason else "整个文件没有汇总。"
    if sub.status == FAULTY:
        kept = f"仍以第{s.valid_version}版为当前数据。" if s.valid_version else "目前还没有可以汇总的数据。"
        return "没有一行可以汇总，" + kept
    return f"状态为{sub.status}。"


def _problem_lines(rows: list[tuple]) -> str:
    lines = []
    for n, (file, sheet, cell, reason, _value) in enumerate(rows[:BODY_PROBLEMS], start=1):
        where = "".join(x for x in (f"工作表“{sheet}”" if sheet else "", f"单元格 {cell}" if cell else ""))
        lines.append(f"　　{n}. “{file}” {where or '（整个文件）'}：{reason}")
    if len(rows) > BODY_PROBLEMS:
        lines.append(f"　　……另有 {len(rows) - BODY_PROBLEMS} 处，见附件。")
    return "\n".join(lines)


def _problem_csv(rows: list[tuple]) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(PROBLEM_HEADERS)
    for row in rows:
        writer.writerow([textsafe.neutralise("" if v is None else str(v)) for v in row])
    return buffer.getvalue().encode("utf-8-sig")


def _returned_file(sub: Submission, folder: Path, issued: Path) -> tuple[Path | None, str]:
    candidate = folder / sub.file_name
    if candidate.is_file():
        with open(candidate, "rb") as fh:
            if hashlib.file_digest(fh, "sha256").hexdigest() == sub.sha256:
                return candidate, ""
    if issued.is_file():
        return issued, f"在 {folder} 中找不到报送的原文件，附上的是下发的文件"
    return None, f"在 {folder} 中找不到报送的原文件“{sub.file_name}”，也找不到下发文件 {issued}"


def _label(path: Path, out_dir: Path) -> str:
    try:
        return str(path.relative_to(out_dir))
    except ValueError:
        return str(path)


def _need_round(status: StatusReport) -> Round:
    if status.round is None:
        raise CycleError("台账中还没有报送轮次：请先下发文件、汇总报送，或用 xl-ecom round new 新建轮次")
    return status.round


def _only(only: Sequence[str] | None, status: StatusReport) -> set[str] | None:
    if not only:
        return None
    known = {u.unit for u in status.expected}
    unknown = [u for u in only if u not in known]
    if unknown:
        raise CycleError(f"这些不是应报单位：{'、'.join(unknown)}（应报单位：{'、'.join(sorted(known))}）")
    return set(only)


def _deliver(plan: CycleMail, ctx: _Context, ledger: Ledger, *, dry_run: Path | None, env, sleep, retry_delays,
             ssl_context, timeout, progress=None) -> CycleMail:
    if dry_run is not None:
        plan.written = mail.write_eml(plan.messages, plan.sender, dry_run, round_label=plan.round.label)
        return plan
    if not plan.messages:
        return plan
    config = mail.smtp_config(ctx.settings, timeout=timeout)
    password = mail._require_password(config, env)

    def record(entry: mail.SendRecord) -> None:
        mail.record_mail(ledger, entry, plan.round.id)

    plan.result = mail.send_batch(plan.messages, plan.sender, config, password, round_label=plan.round.label,
                                  on_record=record, on_progress=progress, sleep=sleep, retry_delays=retry_delays,
                                  ssl_context=ssl_context)
    with contextlib.suppress(OSError, XlEcomError):  # an export only; the ledger holds the record
        ledger.export_mail_csv(mail.log_path(ctx.workbook))
    return plan


def _run_mail(kind: str, workbook: Path | str, *, db: str | None, dry_run: Path | str | None, only, round_label,
              returned_dir, today, env, sleep, retry_delays, ssl_context, timeout, lock: bool, progress=None,
              template_dir: Path | None = None, settings=None, contacts=None) -> CycleMail:
    ctx = _context(workbook, db, settings=settings, contacts=contacts)
    target = Path(dry_run) if dry_run else None
    guard = workbook_lock(ctx.workbook, kind) if (lock and target is None) else contextlib.nullcontext()
    with guard, open_ledger(ctx.workbook, ctx.db) as ledger:
        status = compute_status(ledger, ctx.settings, ctx.contacts, ctx.out_dir, round_label=round_label, today=today)
        if kind == REMIND_KIND:
            plan = plan_reminders(ledger, status, ctx.settings, ctx.contacts, ctx.out_dir, only=only, today=today,
                                  template_dir=template_dir)
        else:
            plan = plan_returns(ledger, status, ctx.settings, ctx.contacts, ctx.out_dir, returned_dir=returned_dir,
                                only=only, today=today, template_dir=template_dir)
        return _deliver(plan, ctx, ledger, dry_run=target, env=env, sleep=sleep, retry_delays=retry_delays,
                        ssl_context=ssl_context, timeout=timeout, progress=progress)


def remind_workbook(workbook: Path | str, *, db: str | None = None, dry_run: Path | str | None = None,
                    only: Sequence[str] | None = None, round_label: str | None = None, today: dt.date | None = None,
                    env: dict[str, str] | None = None, sleep: Callable[[float], None] = time.sleep,
                    retry_delays: Sequence[float] = mail.DEFAULT_RETRY_DELAYS, ssl_context: ssl.SSLContext | None = None,
                    timeout: float = mail.DEFAULT_TIMEOUT, lock: bool = True, progress=None,
                    settings: dict[str, Any] | None = None, contacts: list[Contact] | None = None) -> CycleMail:
    """催报 (CLI and ribbon): plan and send the reminders of the workbook's current round. The ribbon passes
    ``lock=False`` (Excel has the workbook open; the ledger's transactions still serialise the writes) and
    the open book's 设置 / 通讯录 (``settings_from_rows`` / ``contacts_from_rows`` of the sheets' values), so
    unsaved edits count."""
    return _run_mail(REMIND_KIND, workbook, db=db, dry_run=dry_run, only=only, round_label=round_label,
                     returned_dir=None, today=today, env=env, sleep=sleep, retry_delays=retry_delays,
                     ssl_context=ssl_context, timeout=timeout, lock=lock, progress=progress, settings=settings,
                     contacts=contacts)


def return_workbook(workbook: Path | str, *, db: str | None = None, dry_run: Path | str | None = None,
                    returned_dir: Path | str | None = None, only: Sequence[str] | None = None,
                    round_label: str | None = None, today: dt.date | None = None, env: dict[str, str] | None = None,
                    sleep: Callable[[float], None] = time.sleep,
                    retry_delays: Sequence[float] = mail.DEFAULT_RETRY_DELAYS, ssl_context: ssl.SSLContext | None = None,
                    timeout: float = mail.DEFAULT_TIMEOUT, lock: bool = True, progress=None,
                    settings: dict[str, Any] | None = None, contacts: list[Contact] | None = None) -> CycleMail:
    """退回 (CLI and ribbon): plan and send the returns of the workbook's current round (ribbon: as
    :func:`remind_workbook`)."""
    return _run_mail(RETURN_KIND, workbook, db=db, dry_run=dry_run, only=only, round_label=round_label,
                     returned_dir=Path(returned_dir) if returned_dir else None, today=today, env=env, sleep=sleep,
                     retry_delays=retry_delays, ssl_context=ssl_context, timeout=timeout, lock=lock,
                     progress=progress, settings=settings, contacts=contacts)


# ----------------------------------------------------------------------------------------------- CLI


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def _default_workbook(value: str | None) -> Path:
    if value:
        return Path(value)
    path = Path.cwd() / "workbook" / layout.WORKBOOK_NAME
    if path.is_file():
        return path
    raise CycleError(f"请给出市级工作簿（当前文件夹下没有 workbook/{layout.WORKBOOK_NAME}）")


def _parse_today(value: str | None) -> dt.date | None:
    if not value:
        return None
    return _parse_deadline(value)


def _add_common(p: argparse.ArgumentParser, positional: bool = True) -> None:
    if positional:
        p.add_argument("workbook", nargs="?", metavar="WORKBOOK",
                       help=f"市级工作簿（默认 workbook/{layout.WORKBOOK_NAME}），读取其中的设置和通讯录")
    else:
        p.add_argument("--workbook", metavar="WB", help=f"市级工作簿（默认 workbook/{layout.WORKBOOK_NAME}）")
    p.add_argument("--db", metavar="URL",
                   help="台账数据库（如 postgresql://用户:密码@主机/库名）；默认为设置表“台账数据库”，"
                        "再默认为工作簿旁的“<工作簿名>.台账.sqlite”")


def cmd_round(args, out=None, err=None) -> int:
    out = out or sys.stdout
    workbook = _default_workbook(args.workbook) if (args.workbook or not args.db) else None
    settings = _settings(workbook) if workbook is not None else {}
    with open_ledger(workbook, args.db or _db_setting(settings)) as ledger:
        if args.action == "new":
            label = args.label or _text(settings.get(ROUND_SETTING))
            deadline = args.deadline if args.deadline else settings.get(DEADLINE_SETTING)
            previous = ledger.current_round()
            created, carried = new_round(ledger, label, deadline)
            due = f"，截止日期 {created.deadline.isoformat()}" if created.deadline else "，未设截止日期"
            if created.deadline and not args.deadline:
                due += f"（取自“{SETTINGS_SHEET}”表的“{DEADLINE_SETTING}”）"
            print(f"已新建报送轮次“{created.label}”{due}。", file=out)
            if (created.deadline and previous is not None and previous.deadline
                    and created.deadline <= previous.deadline):
                print(f"注意：本轮的截止日期不晚于上一轮“{previous.label}”的（{previous.deadline.isoformat()}），"
                      f"请确认；需要时用 --deadline 指定。", file=out)
            if previous is not None:
                names = "、".join(carried) or "（无）"
                print(f"上一轮“{previous.label}”的数据作为本轮的起点：{len(carried)} 个单位沿用之前的数据（{names}），"
                      "各单位在本轮报送后以新报送为准。", file=out)
            return 0
        rounds = ledger.rounds()
        if not rounds:
            print("台账中还没有报送轮次。", file=out)
            return 0
        current = rounds[-1].id
        for r in rounds:
            subs = ledger.submissions(round_id=r.id)
            merged = len({s.unit for s in subs if s.status == MERGED})
            due = r.deadline.isoformat() if r.deadline else "未设"
            mark = "（当前）" if r.id == current else ""
            print(f"{r.label}{mark}：截止 {due}，新建于 {_when(r.created_at)}，收到报送 {len(subs)} 份，"
                  f"有效 {merged} 个单位", file=out)
        return 0


def cmd_status(args, out=None, err=None) -> int:
    out = out or sys.stdout
    workbook = _default_workbook(args.workbook)
    report = workbook_status(workbook, args.db, round_label=args.round, today=_parse_today(args.today))
    backup = None
    if args.write:
        backup = write_status_sheet(workbook, report)
    if args.json:
        print(json.dumps(report.to_json(), ensure_ascii=False, sort_keys=True, indent=2), file=out)
    else:
        print(report.to_text(), file=out)
        if args.write:
            print(f"已写入“{SHEET_STATUS}”表：{workbook}" + (f"（原文件备份为 {backup.name}）" if backup else ""), file=out)
    return 1 if report.problems else 0


def _cmd_mail(kind: str):
    def handler(args, out=None, err=None, *, env=None, sleep=time.sleep, retry_delays=mail.DEFAULT_RETRY_DELAYS,
                ssl_context=None, timeout=mail.DEFAULT_TIMEOUT) -> int:
        out = out or sys.stdout
        workbook = _default_workbook(args.workbook)
        common = dict(db=args.db, dry_run=args.dry_run, only=args.only, round_label=args.round,
                      today=_parse_today(args.today), env=env, sleep=sleep, retry_delays=retry_delays,
                      ssl_context=ssl_context, timeout=timeout)
        if kind == REMIND_KIND:
            plan = remind_workbook(workbook, **common)
        else:
            plan = return_workbook(workbook, returned_dir=args.source, **common)
        print(plan.to_text(), file=out)
        return 0 if plan.ok else 1

    return handler


def add_cli(subparsers) -> None:
    p = subparsers.add_parser("round", help="报送轮次：新建（round new 2020-10 --deadline 2020-10-25）或列出（round list）",
                              description="报送轮次。下发文件、报送和邮件都记在某一轮次下；新一轮以上一轮各单位的当前数据为起点。")
    rsub = p.add_subparsers(dest="action", metavar="操作", required=True)
    new = rsub.add_parser("new", help="新建报送轮次（名称默认取设置表“当前轮次”，截止日期默认取“报送截止日期”）")
    new.add_argument("label", nargs="?", metavar="名称", help="轮次名称，如 2020-10")
    new.add_argument("--deadline", metavar="日期", help="报送截止日期，如 2020-10-25")
    _add_common(new, positional=False)
    new.set_defaults(func=cmd_round)
    lst = rsub.add_parser("list", help="列出报送轮次")
    _add_common(lst, positional=False)
    lst.set_defaults(func=cmd_round)

    p = subparsers.add_parser("status", help="报送情况：各单位的下发、发送、收到、校验和逾期情况",
                              description="列出方案 17 个单位和 8 个县区本轮的报送情况；--write 另把“报送情况”表写入市级工作簿。"
                                          "有单位逾期或最近一次报送有问题时退出码为 1。")
    _add_common(p)
    p.add_argument("--round", metavar="轮次", help="看哪一轮（默认当前轮次）")
    p.add_argument("--write", action="store_true", help="把“报送情况”表写入市级工作簿（先备份原文件）")
    p.add_argument("--today", metavar="日期", help=argparse.SUPPRESS)
    p.add_argument("--json", action="store_true", help="以 JSON 输出（UTF-8，键名固定）")
    p.set_defaults(func=cmd_status)

    for name, kind, text in (("remind", REMIND_KIND, "催报：给本轮还没有有效报送的单位再发一次它的文件"),
                             ("return", RETURN_KIND, "退回：把最近一次报送的问题清单连同文件发回给报送单位（每份报送只退回一次）")):
        p = subparsers.add_parser(name, help=text, description=text + f"。模板 templates/mail/{TEMPLATE_FILES[kind]}；"
                                  f"每次发送记在台账里（类别“{kind}”）。")
        _add_common(p)
        p.add_argument("--dry-run", metavar="DIR", help="不发送，每封邮件写一个 .eml 文件到 DIR")
        p.add_argument("--only", metavar="单位", nargs="+", help="只发给这些单位")
        p.add_argument("--round", metavar="轮次", help="哪一轮（默认当前轮次）")
        p.add_argument("--today", metavar="日期", help=argparse.SUPPRESS)
        if kind == RETURN_KIND:
            p.add_argument("--from", dest="source", metavar="DIR",
                           help=f"报回文件所在的文件夹，从中找出报送的原文件附上（默认 <输出文件夹>/{RETURNED_SUBDIR}）")
        p.set_defaults(func=_cmd_mail(kind))
