"""Text look-ups into the plan: clause text, departments, county targets (used by UDFs, CLI, sheets)."""

from __future__ import annotations

import re

from xl_ecom.common.errors import InputError
from xl_ecom.policy import Plan, load_plan

_HALF_TO_FULL = str.maketrans({"(": "（", ")": "）"})
_DIGITS = dict(zip("12345678", "一二三四五六七八"))


def normalise_clause(clause_id) -> str:
    """'二(一)', '二（1）', '2.1', '二（一）-1' → canonical ids used in plan.yaml."""
    text = str(clause_id or "").strip().translate(_HALF_TO_FULL).replace(" ", "")
    m = re.fullmatch(r"2[.．](\d)(?:[-－](\d+))?", text)
    if m:
        text = f"二（{_DIGITS.get(m.group(1), m.group(1))}）" + (f"-{m.group(2)}" if m.group(2) else "")
    text = re.sub(r"（(\d)）", lambda mm: f"（{_DIGITS.get(mm.group(1), mm.group(1))}）", text)
    return text.replace("－", "-")


def _find(clause_id, plan: Plan):
    key = normalise_clause(clause_id)
    if key.upper() in plan.rules:
        rule = plan.rules[key.upper()]
        return rule.name, [plan.measure(rule.measure)], rule.text
    for task in plan.tasks:
        if task["id"] == key:
            measures = [m for m in plan.measures if m.task_id == key]
            return task["title"], measures, None
    for m in plan.measures:
        if m.id == key:
            return m.task_title, [m], None
    known = "、".join(t["id"] for t in plan.tasks)
    raise InputError(f"找不到条款“{clause_id}”（可用：{known}，或带序号如 二（一）-1，或规则名如 AWARD_UPLINK）")


def clause_text(clause_id, plan: Plan | None = None) -> str:
    plan = plan or load_plan()
    title, measures, rule_text = _find(clause_id, plan)
    if rule_text:
        return rule_text
    body = "".join(m.text if m.text.endswith("。") else m.text + "。" for m in measures)
    return f"{title}。{body}" if len(measures) > 1 or normalise_clause(clause_id) == measures[0].task_id else body


def clause_departments(clause_id, plan: Plan | None = None) -> str:
    plan = plan or load_plan()
    _, measures, _ = _find(clause_id, plan)
    leads: list[str] = []
    coops: list[str] = []
    for m in measures:
        if m.lead not in leads:
            leads.append(m.lead)
        for c in m.cooperating:
            if c not in coops and c not in leads:
                coops.append(c)
    coops = [c for c in coops if c not in leads]
    text = f"牵头：{'、'.join(leads)}"
    if coops:
        text += f"；配合：{'、'.join(coops)}"
    return text


def county_target(county, metric, plan: Plan | None = None):
    plan = plan or load_plan()
    name = str(county or "").strip()
    if name not in plan.counties:
        raise InputError(f"县区“{county}”不在目标任务分解表中（可用：{'、'.join(plan.counties)}）")
    key = str(metric or "").strip()
    for col in plan.annex_columns:
        if key in (col["key"], col["header"], col["short"], *col.get("aliases", ())):
            return plan.annex_value(name, col["key"])
    names = "、".join(c["short"] for c in plan.annex_columns)
    raise InputError(f"指标“{metric}”不在目标任务分解表中（可用：{names}）")
