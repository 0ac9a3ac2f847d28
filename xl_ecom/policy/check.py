"""Check the plan itself: annex totals against the text's targets, numbering, departments.

The source document has flaws (its numbering runs （一）（2）（3）（四）…; the annex's demo villages
sum to 14 while the text asks for 15 or more).  They are reported with the figures, never papered
over and never a crash.
"""

from __future__ import annotations

import re
from pathlib import Path

from xl_ecom.common.problems import NOTICE, WARNING, Problem
from xl_ecom.policy import Plan, load_plan
from xl_ecom.policy.boundaries import APPROXIMATE_WORDS, boundary

_CN_NUM = "一二三四五六七八九十"



def Finding(severity: str, where: str, message: str) -> Problem:  # noqa: N802 (was a class)
    """A plan finding (警告 | 提示) about a plan item: the one :class:`xl_ecom.common.problems.Problem`."""
    return Problem(message=message, severity=severity, subject=where)


def annex_totals(plan: Plan) -> dict[str, int]:
    return {c["key"]: sum(r[c["key"]] for r in plan.annex_rows) for c in plan.annex_columns}


def check_annex(plan: Plan) -> list[Problem]:
    out = []
    totals = annex_totals(plan)
    for col in plan.annex_columns:
        total = totals[col["key"]]
        target_id = col.get("target")
        if not target_id:
            continue
        t = plan.target(target_id)
        b = boundary(t.word)
        ok = b.op(total, t.value)
        where = f"附件目标任务分解表“{col['short']}”"
        text = f"{len(plan.annex_rows)}个县区合计{total}{col['unit']}，正文目标“{t.text}”（{b.chinese}{t.value}{t.unit}）"
        if ok:
            out.append(Finding(NOTICE, where, text + "：合计满足正文目标"))
        else:
            gap = t.value - total + (0 if b.inclusive else 1)
            out.append(Finding(WARNING, where, text + f"：合计未达到正文目标，至少还差{gap}{t.unit}"))
    return out


def check_numbering(plan: Plan) -> list[Problem]:
    out = []
    for task in plan.tasks:
        m = re.fullmatch(r"二（(.)）", task["id"])
        if not m:
            continue
        expected = f"（{m.group(1)}）"
        printed = task.get("source_label", expected)
        if printed != expected:
            out.append(
                Finding(WARNING, f"主要任务{task['id']}", f"原文编号印作“{printed}”，按上下文应为“{expected}”（{task['title']}）")
            )
    return out


def check_departments(plan: Plan) -> list[Problem]:
    out = []
    known = set(plan.unit_names)
    used: set[str] = set()
    for m in plan.measures:
        for unit in m.units:
            used.add(unit)
            if unit not in known:
                out.append(Finding(WARNING, f"任务{m.id}", f"单位“{unit}”不在方案数据的单位名单中"))
    for t in plan.targets:
        for owner in (t.lead, *t.cooperating):
            if owner and owner not in known:
                out.append(Finding(WARNING, f"目标{t.id}", f"单位“{owner}”不在方案数据的单位名单中"))
    for unit in plan.unit_names:
        if unit not in used:
            out.append(Finding(WARNING, "单位名单", f"单位“{unit}”未牵头或配合任何任务"))
    leads = sorted({m.lead for m in plan.measures})
    out.append(Finding(NOTICE, "单位名单", f"正文共点名{len(known)}个单位，其中{len(leads)}个单位牵头至少一项任务"))
    return out


def check_targets(plan: Plan) -> list[Problem]:
    out = []
    for t in plan.targets:
        if t.word in APPROXIMATE_WORDS:
            out.append(Finding(NOTICE, f"目标{t.id}", f"“{t.text}”为约数（{t.word}），只作参考，不作达标判断"))
        else:
            boundary(t.word)
        if t.deadline is None:
            out.append(Finding(NOTICE, f"目标{t.id}", f"“{t.text}”原文未写完成时限"))
        if not t.lead:
            out.append(Finding(WARNING, f"目标{t.id}", f"“{t.text}”没有责任单位"))
    return out


def check_notes(plan: Plan) -> list[Problem]:
    """Irregularities recorded in the data beside the text they concern."""
    out = []
    for task in plan.tasks:
        if task.get("note"):
            out.append(Finding(NOTICE, f"主要任务{task['id']}", task["note"]))
    for m in plan.measures:
        if m.note:
            out.append(Finding(NOTICE, f"任务{m.id}", m.note))
    for t in plan.targets:
        if t.note:
            out.append(Finding(NOTICE, f"目标{t.id}", t.note))
    for r in plan.rules.values():
        if r.note:
            out.append(Finding(NOTICE, f"规则{r.id}", r.note))
    return out


def check_source(plan: Plan, source: str) -> list[Problem]:
    """Every verbatim text and parameter reference of the data must stand in the source document."""
    out = []
    flat = source.replace("\n", "")
    for m in plan.measures:
        if m.text not in flat:
            out.append(Finding(WARNING, f"任务{m.id}", "原文摘录与方案文本不一致"))
    for t in plan.targets:
        if t.text not in flat:
            out.append(Finding(WARNING, f"目标{t.id}", "原文摘录与方案文本不一致"))
    for r in plan.rules.values():
        if r.text not in flat:
            out.append(Finding(WARNING, f"规则{r.id}", "原文摘录与方案文本不一致"))
    return out


#: The plan document, a verbatim copy kept inside the package (so the project is self-contained).
SOURCE_PATH = Path(__file__).resolve().with_name("source.txt")


def default_source_path() -> Path | None:
    """The plan document: the copy shipped in the package (xl_ecom/policy/source.txt)."""
    return SOURCE_PATH if SOURCE_PATH.exists() else None


def check_plan(plan: Plan | None = None, source_text: str | None = None) -> list[Problem]:
    plan = plan or load_plan()
    findings = check_annex(plan) + check_numbering(plan) + check_departments(plan) + check_targets(plan) + check_notes(plan)
    if source_text is not None:
        findings += check_source(plan, source_text)
    return findings
