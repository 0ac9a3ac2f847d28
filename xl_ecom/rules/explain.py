"""The explanation of one calculation (EXPLAIN, ``xl-ecom calc --explain``), one ``match`` per kind.

The scalar evaluator (engine ``_run``) records typed steps — a condition tested, the amount of its
kind, a cap — and :func:`step_text` turns each into one line of Chinese.  Each step also unpacks
as the tuple the earlier trace used (``("condition", c, value, ok)``, ``("tiers", a, basis, raw)``
…), for code written against that form.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from xl_ecom.policy.boundaries import boundary
from xl_ecom.rules.model import (
    Body,
    Cap,
    Condition,
    Factor,
    Fixed,
    PerUnit,
    Rate,
    Tiers,
)
from xl_ecom.rules.money import cents_to_yuan, mul_rate


@dataclass(frozen=True)
class ConditionStep:
    """A threshold of the rule tested on the case's value (money in cents)."""

    condition: Condition
    value: Any
    ok: bool


@dataclass(frozen=True)
class AmountStep:
    """The amount before any cap.  ``basis``: cents (Rate, Factor, Tiers), counts by input
    (PerUnit), None (Fixed); ``rate``: the rate or factor applied (Rate, Factor)."""

    amount: Rate | Factor | Fixed | Tiers | PerUnit
    basis: Any
    rate: Any
    raw: Any


@dataclass(frozen=True)
class CapStep:
    """A cap applied: ``raw`` before, ``paid`` after; ``before``: paid earlier (cumulative)."""

    body: Body
    limit: Cap
    raw: Any
    paid: Any
    before: Any


STEP_KINDS: tuple[type, ...] = (ConditionStep, AmountStep, CapStep)


# --- formatting ----------------------------------------------------------------------------------

def pct(rate) -> str:
    """0.015 → '1.5%'."""
    d = Decimal(str(rate)) * 100
    return f"{d.normalize():f}%"


def money(cents) -> str:
    return f"{cents_to_yuan(int(cents)):,.2f}"


def shown(kind: str, val) -> str:
    """A value of an input of ``kind`` as an explanation shows it."""
    if val is None:
        return "（空白）"
    match kind:
        case "money":
            return f"{money(val)}元"
        case "rate":
            return pct(val)
        case "choice":
            return val or "（空白）"
        case _:
            return f"{val}"


def _factor(value) -> str:
    return f"{Decimal(str(value)).normalize():f}"


def amount_text(rule, step: AmountStep) -> str:
    """The amount line, one case per amount kind."""
    a = step.amount
    match a:
        case Rate():
            basis, rate = step.basis, step.rate
            if a.rate_input and rate != a.rate:
                how = f"适用比例 {pct(rate)}（上限 {pct(a.rate)}，原文“{a.rate_ref}”）"
            elif a.rate_word:
                how = f"比例 {pct(rate)}（原文“{a.rate_ref}”，为上限，按最高比例计）"
            else:
                how = f"比例 {pct(rate)}（原文“{a.rate_ref}”）"
            labels = "+".join(rule.input(n).label for n in a.basis)
            product = money(mul_rate(basis, Decimal(str(rate))))
            return f"计算基数：{labels} {money(basis)}元；{how}；{money(basis)} × {pct(rate)} = {product}元（四舍五入到分）"
        case Factor():
            basis, factor = step.basis, _factor(step.rate)
            labels = "+".join(rule.input(n).label for n in a.basis)
            product = money(mul_rate(basis, Decimal(str(step.rate))))
            return (f"计算基数：{labels} {money(basis)}元；系数 {factor}（原文“{a.rate_ref}”）；"
                    f"{money(basis)} × {factor} = {product}元（四舍五入到分）")
        case Fixed():
            return f"定额：{money(a.amount)}元" + (f"（原文“{a.ref}”）" if a.ref else "")
        case Tiers():
            parts = "；".join(
                f"{boundary(t.word).chinese}{money(t.threshold)}元给予{money(t.amount)}元（原文“{t.ref}”）" for t in a.tiers
            )
            return f"分档：{parts} → {money(step.raw)}元"
        case PerUnit():
            counts = step.basis
            parts = "；".join(f"{rule.input(u.input).label} {counts[u.input]} × {money(u.amount)}元" for u in a.units)
            return f"定额：{parts} = {money(step.raw)}元"
        case _:
            raise TypeError(f"unhandled amount kind {a!r}")


def step_text(rule, step) -> str:
    """One line of the explanation for a step of the scalar evaluator."""
    match step:
        case ConditionStep(condition=c, value=value, ok=ok):
            spec = rule.input(c.input)
            b = boundary(c.word)
            return (
                f"门槛：{spec.label} {shown(spec.kind, value)} {b.chinese} {shown(spec.kind, c.threshold)}"
                f"（原文“{c.reference}”，“{c.word}”{'含' if b.inclusive else '不含'}本数）→ {'满足' if ok else '不满足'}"
            )
        case AmountStep():
            return amount_text(rule, step)
        case CapStep(limit=cap, raw=raw, paid=paid, before=before) if cap.cumulative:
            return (
                f"累计上限：{money(cap.cents)}元（原文“{cap.reference}”），此前已补助 {money(before or 0)}元，"
                f"本次 {money(raw)}元 → {money(paid)}元" + ("（上限起作用）" if paid < raw else "（未触及上限）")
            )
        case CapStep(limit=cap, raw=raw, paid=paid):
            return f"上限：{money(cap.cents)}元（原文“{cap.reference}”）→ " + ("上限起作用" if paid < raw else "未触及上限")
        case _:
            raise TypeError(f"unhandled explanation step {step!r}")


def unmet_threshold(rule, steps) -> str | None:
    """Why a case got 0: the first threshold it missed, e.g. “销售额 400,000.00元，须≥500,000.00元（原文…）”.

    None when no threshold was missed (the amount itself came to 0, or a cap was used up)."""
    for step in steps:
        match step:
            case ConditionStep(condition=c, value=value, ok=False):
                spec = rule.input(c.input)
                return (f"{spec.label} {shown(spec.kind, value)}，须{boundary(c.word).chinese}"
                        f"{shown(spec.kind, c.threshold)}（原文“{c.reference}”）")
            case AmountStep(amount=Tiers() as a, basis=basis, raw=0):
                lowest = min(a.tiers, key=lambda t: t.threshold)
                spec = rule.input(a.basis)
                return (f"{spec.label} {shown(spec.kind, basis)}，须{boundary(lowest.word).chinese}"
                        f"{shown(spec.kind, lowest.threshold)}（原文“{lowest.ref}”）")
            case ConditionStep() | AmountStep() | CapStep():
                continue
            case _:
                raise TypeError(f"unhandled explanation step {step!r}")
    return None
