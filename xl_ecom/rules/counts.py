"""Target counts by the award's own condition (目标任务 / 完成情况: 年上行超1000万元企业 …).

:func:`condition_mask` says which rows meet a rule's eligibility, judged exactly as the award
judges it: a money column is rounded half up to the cent by the very function the vector engine
uses (engine ``_money_cents``), so 10,000,000.004 is not counted when it is not paid and
10,000,000.005 is.  One ``match`` per amount kind decides what besides the conditions gates the
award (a tiered amount pays nothing below its lowest tier); one per input kind decides how a
column is read.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from xl_ecom.common.errors import XlEcomError
from xl_ecom.policy import Plan, load_plan
from xl_ecom.policy.boundaries import holds
from xl_ecom.rules import engine
from xl_ecom.rules.model import Body, Factor, Fixed, PerUnit, Rate, Tiers


def _read(spec, values) -> tuple[np.ndarray, np.ndarray | None]:
    """A column in the engine's internal units and its blank mask, one case per input kind."""
    match spec.kind:
        case "money":
            return engine._money_cents(spec, values)
        case "count" | "years" | "rate":
            return engine._number_values(spec, values)
        case kind:
            raise TypeError(f"unhandled input kind {kind!r}: a {spec.label} column cannot be counted by a threshold")


def _gates(body: Body) -> list[tuple[str, list]]:
    """(input, [(word, threshold), …]) tests an eligible row must pass, besides the conditions:
    any one of a tiered amount's tiers (the lowest pays the least); nothing for the other kinds."""
    a = body.amount
    match a:
        case Tiers():
            return [(a.basis, [(t.word, t.threshold) for t in a.tiers])]
        case Rate() | Factor() | Fixed() | PerUnit():
            return []
        case _:
            raise TypeError(f"unhandled amount kind {a!r}")


def condition_mask(
    rule_id: str,
    columns: Mapping[str, object],
    *,
    on=None,
    plan: Plan | None = None,
    variant: str | None = None,
) -> np.ndarray:
    """Rows meeting the rule's thresholds on the given input columns (money in yuan), exactly as
    the award tests them.  A blank cell is not counted; a bad value raises the award's error.

    ``columns`` maps rule input names to columns; only the thresholds on those inputs are
    tested, and at least one must be (else a Chinese error).  ``variant``: which way of a rule
    with a switch (default: the switch input's default)."""
    plan = plan or load_plan()
    rule = engine.get_rule(rule_id, plan)
    resolved = engine.resolve(rule.id, on=on, plan=plan)
    if variant is None:
        variant = (rule.input(rule.switch).default or "") if rule.switch else ""
    if variant not in resolved.variants:
        raise XlEcomError(f"规则 {rule.id} 没有“{variant}”这种情形（可用：{'、'.join(resolved.variants)}）")
    body = resolved.variants[variant]
    tests = [(c.input, [(c.word, c.threshold)]) for c in body.conditions] + _gates(body)
    tests = [(name, alternatives) for name, alternatives in tests if name in columns]
    if not tests:
        labels = "、".join(rule.input(n).label for n in columns if n in rule.input_names) or "、".join(map(str, columns))
        raise XlEcomError(f"规则 {rule.id} 没有关于“{labels}”的门槛，无法计数")
    mask: np.ndarray | None = None
    read: dict = {}
    for name, alternatives in tests:
        if name not in read:
            read[name] = _read(rule.input(name), columns[name])
        values, blank = read[name]
        ok = np.zeros(len(values), dtype=bool)
        for word, threshold in alternatives:
            ok |= holds(values, word, threshold)
        if blank is not None:
            ok &= ~blank
        mask = ok if mask is None else (mask & ok)
    assert mask is not None  # tests is not empty
    return mask
