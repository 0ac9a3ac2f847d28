"""Compile a rule of plan.yaml into a native Excel formula.

The formula is the same rule, from the same resolved parameters the engine uses, written in plain
Excel functions (IF, AND, MIN, MAX, ROUND, SUMIFS, COUNTIFS) so that workbooks sent to units
without Python — Excel, WPS, LibreOffice — compute the same amounts.  ROUND in Excel rounds half
away from zero, which for the non-negative amounts here is 四舍五入.
"""

from __future__ import annotations

from decimal import Decimal

from xl_ecom.policy import Plan, load_plan
from xl_ecom.policy.boundaries import boundary
from xl_ecom.rules.engine import get_rule, percent, required_inputs, resolve
from xl_ecom.rules.model import Factor, Fixed, PerUnit, Rate, Tiers


def _num(value) -> str:
    d = Decimal(str(value))
    text = format(d.normalize(), "f")
    return text


def _money(cents) -> str:
    return _num(Decimal(int(cents)) / 100)


def _threshold(kind: str, value) -> str:
    return _money(value) if kind == "money" else _num(value)


def _quote(text: str) -> str:
    return '"' + text.replace('"', '""') + '"'


#: what a formula shows when a number input holds text such as "50万" (instead of #VALUE!)
FLAG_NUMBER = "请填数字"
NUMERIC_KINDS = ("money", "count", "years", "rate")


def compile_rule(
    rule_id: str,
    refs: dict[str, str],
    on=None,
    plan: Plan | None = None,
    prior_paid: str | None = None,
    guard_text: bool = True,
) -> str:
    """``=`` formula computing the rule in yuan.

    refs maps rule input names to cell references or expressions.  Optional inputs may be left
    out (rate: the ceiling; choice: its default; default_input: the other input).  For a rule with
    a cumulative cap, ``prior_paid`` is an expression for what earlier rows already received
    (e.g. ``SUMIFS(F$4:F4,A$4:A4,A5)``).  A blank required input gives "".  With ``guard_text``
    a number input (money/count/years/rate) holding text such as "50万" gives FLAG_NUMBER.
    """
    plan = plan or load_plan()
    rule = get_rule(rule_id, plan)
    resolved = resolve(rule.id, on=on, plan=plan)
    ex: dict[str, str] = {}
    for spec in rule.inputs:
        ref = refs.get(spec.name)
        if ref is None:
            continue
        ex[spec.name] = f"ROUND({ref},2)" if spec.kind == "money" else ref
    for spec in rule.inputs:
        if spec.name not in ex and spec.default_input and spec.default_input in ex:
            ex[spec.name] = ex[spec.default_input]
        elif spec.default_input and spec.name in ex:
            ex[spec.name] = f'IF({refs[spec.name]}="",{ex[spec.default_input]},{ex[spec.name]})'

    def body_formula(body) -> str:
        conds = []
        for c in body.conditions:
            kind = rule.input(c.input).kind
            conds.append(f"{ex[c.input]}{boundary(c.word).symbol}{_threshold(kind, c.threshold)}")
        a = body.amount
        check = None
        match a:
            case Rate() | Factor():
                basis = "+".join(ex[n] for n in a.basis)
                if len(a.basis) > 1:
                    basis = f"({basis})"
                rate = _num(a.rate)
                if a.rate_input and a.rate_input in refs:
                    r = refs[a.rate_input]
                    msg = _quote(f"{rule.input(a.rate_input).label}超过上限{percent(a.rate)}")
                    check = f'AND({r}<>"",{r}>{rate})', msg
                    rate = f'IF({r}="",{rate},{r})'
                raw = f"ROUND({basis}*{rate},2)"
            case Fixed():
                raw = _money(a.amount)
            case Tiers():
                raw = "0"
                for t in reversed(a.tiers):
                    raw = f"IF({ex[a.basis]}{boundary(t.word).symbol}{_money(t.threshold)},{_money(t.amount)},{raw})"
            case PerUnit():
                raw = "+".join(f"{ex[u.input]}*{_money(u.amount)}" for u in a.units)
            case _:
                raise TypeError(f"unhandled amount kind {a!r}")
        if body.limit is not None:
            cap = _money(body.limit.cents)
            if body.limit.cumulative:
                room = f"MAX(0,{cap}-{prior_paid})" if prior_paid else cap
                raw = f"MIN({raw},{room})"
            else:
                raw = f"MIN({raw},{cap})"
        if conds:
            test = conds[0] if len(conds) == 1 else f"AND({','.join(conds)})"
            raw = f"IF({test},{raw},0)"
        if check:
            raw = f"IF({check[0]},{check[1]},{raw})"
        return raw

    common = _common_required(rule)

    def variant_formula(name: str) -> str:
        # an input only this variant uses (基础 training's 参训人数) is required only here
        own = set(required_inputs(rule, name)) - common
        return _blank_guard(rule, refs, own, body_formula(resolved.variants[name]))

    if rule.switch:
        spec = rule.input(rule.switch)
        ref = refs.get(rule.switch)
        names = list(resolved.variants)
        default = spec.default if spec.default is not None else ""
        if ref is None:
            expr = variant_formula(default)
        else:
            # the default variant last, reached by a blank cell or its own name
            others = [n for n in names if n != default]
            expr = variant_formula(default)
            for name in reversed(others):
                expr = f"IF({ref}={_quote(name)},{variant_formula(name)},{expr})"
            valid = ",".join(f"{ref}={_quote(n)}" for n in names if n)
            expr = f'IF(OR({ref}="",{valid}),{expr},{_quote(spec.label + "填写无效")})'
    else:
        expr = body_formula(resolved.variants[""])
    numeric = [refs[s.name] for s in rule.inputs if s.kind in NUMERIC_KINDS and s.name in refs]
    if guard_text and numeric:
        bad = ",".join(f'AND({r}<>"",NOT(ISNUMBER({r})))' for r in numeric)
        test = bad if len(numeric) == 1 else f"OR({bad})"
        expr = f"IF({test},{_quote(FLAG_NUMBER)},{expr})"
    return "=" + _blank_guard(rule, refs, common, expr)


def _common_required(rule) -> set:
    return set.intersection(*(set(required_inputs(rule, v)) for v in rule.variants))


def _blank_guard(rule, refs: dict[str, str], names: set, expr: str) -> str:
    """``IF(<one of the inputs ``names`` is blank>,"",expr)``."""
    required = [refs[s.name] for s in rule.inputs if s.name in names and s.name in refs]
    if not required:
        return expr
    blank = required[0] + '=""' if len(required) == 1 else "OR(" + ",".join(f'{r}=""' for r in required) + ")"
    return f'IF({blank},"",{expr})'


def condition_criteria(rule_id: str, input_name: str, on=None, plan: Plan | None = None) -> str:
    """A COUNTIFS criterion string for the rule's threshold on one input, e.g. '">10000000"'."""
    plan = plan or load_plan()
    rule = get_rule(rule_id, plan)
    body = next(iter(resolve(rule.id, on=on, plan=plan).variants.values()))
    for c in body.conditions:
        if c.input == input_name:
            kind = rule.input(input_name).kind
            return _quote(boundary(c.word).symbol + _threshold(kind, c.threshold))
    raise KeyError(f"{rule_id} has no condition on {input_name}")


def count_criteria(rule_id: str, input_name: str, on=None, plan: Plan | None = None) -> str:
    """A COUNTIFS criterion equal to the award's own condition on the value rounded to the cent.

    The award tests ``ROUND(x,2)>10000000``; a raw ``">10000000"`` would count 10,000,000.004 as
    meeting it while the award pays nothing.  For money, ROUND(x,2) op T (half away from zero, x
    ≥ 0) is x op' T±0.005: ``>T`` ⇔ ``>=T+0.005``, ``>=T`` ⇔ ``>=T-0.005``, ``<T`` ⇔ ``<T-0.005``,
    ``<=T`` ⇔ ``<T+0.005``.  COUNTIFS keeps whole-column ranges and skips text cells.
    """
    plan = plan or load_plan()
    rule = get_rule(rule_id, plan)
    body = next(iter(resolve(rule.id, on=on, plan=plan).variants.values()))
    for c in body.conditions:
        if c.input != input_name:
            continue
        kind = rule.input(input_name).kind
        symbol = boundary(c.word).symbol
        if kind != "money":
            return _quote(symbol + _threshold(kind, c.threshold))
        half = Decimal(int(c.threshold)) / 100
        shifted = {">": (">=", half + Decimal("0.005")), ">=": (">=", half - Decimal("0.005")),
                   "<": ("<", half - Decimal("0.005")), "<=": ("<", half + Decimal("0.005"))}
        if symbol not in shifted:
            raise ValueError(f"unhandled comparison {symbol!r}")
        op, value = shifted[symbol]
        return _quote(op + _num(value))
    raise KeyError(f"{rule_id} has no condition on {input_name}")
