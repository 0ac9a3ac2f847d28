"""Excel UDFs (xlwings).  Thin: every number comes from xl_ecom.rules.engine and plan.yaml.

Outside Excel these are plain Python callables.  Each accepts what xlwings passes — a scalar, a
flat list, or a list of lists for a range — and returns the same shape, so one formula can cover
a column.  A blank cell gives an empty result; bad input raises an error with a Chinese message
naming the value (Excel shows it in the cell).

Function Wizard descriptions are taken from the plan (rule name, clause and input labels).

``UDF_SPECS`` holds each UDF's metadata (name, Chinese description, arguments with Chinese docs,
optional/vararg flags) for the VBA wrapper and Application.MacroOptions generators.  It is filled by
the same decorator that applies ``@xw.func``/``@xw.arg``: off Windows xlwings makes those no-ops
(they set no ``__xlfunc__``), so the build cannot read xlwings' own metadata on this platform.
"""

from __future__ import annotations

import gc
import inspect
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import chain

import numpy as np
import xlwings as xw

from xl_ecom.common.errors import InputError
from xl_ecom.policy import load_plan, lookup
from xl_ecom.rules import engine

CATEGORY = "农村电商"
BLANK = ""


def _shape(value):
    if isinstance(value, (list, tuple)):
        if value and isinstance(value[0], (list, tuple)):
            rows, cols = len(value), len(value[0])
            if cols != 1 and len(set(map(len, value))) != 1:
                raise InputError("区域各行长度不一致")
            return (rows, cols)
        return (len(value),)
    return None


def _flat(value, shape):
    if shape is None:
        return None
    if len(shape) == 2:
        if shape[1] == 1:  # a column: unpacking checks every row holds one cell
            try:
                return [x for (x,) in value]
            except (TypeError, ValueError):
                raise InputError("区域各行长度不一致") from None
        flat = list(chain.from_iterable(value))
        if len(flat) != shape[0] * shape[1]:  # a ragged one-column range
            raise InputError("区域各行长度不一致")
        return flat
    return list(value)


def _yuan(cents):
    # cents / 100 is the double nearest the exact yuan, as float(cents_to_yuan(cents)) is
    return BLANK if cents is None else cents / 100


def call_rule(rule_id: str, *args):
    """Evaluate a rule on Excel-shaped arguments; returns the matching shape."""
    shapes = [_shape(a) for a in args]
    # a 1×1 range is a scalar
    given = list(args)
    for i, s in enumerate(shapes):
        if s in ((1, 1), (1,)):
            given[i] = given[i][0][0] if len(s) == 2 else given[i][0]
            shapes[i] = None
    ranged = [s for s in shapes if s is not None]
    if not ranged:
        return _yuan(engine.calculate_cents(rule_id, *given))
    shape = ranged[0]
    size = shape[0] * (shape[1] if len(shape) == 2 else 1)
    for s in ranged:
        n = s[0] * (s[1] if len(s) == 2 else 1)
        if n != size:
            raise InputError(f"参数区域大小不一致（{_dims(shape)} 与 {_dims(s)}），请选择同样大小的区域")
    with _collector_paused():
        columns = [_flat(a, s) if s is not None else a for a, s in zip(given, shapes)]
        try:
            out = _vector(rule_id, columns, size)
        except InputError:
            # report the first bad cell exactly as the per-cell path does (row order, same message)
            rows = list(zip(*(c if isinstance(c, list) else [c] * size for c in columns)))
            out = np.array([_yuan(c) for c in engine.calculate_sequence(rule_id, rows)], dtype=object)
        # the result in the shape of the first range (numpy builds the nested lists)
        return out.reshape(shape).tolist()


@contextmanager
def _collector_paused():
    """Python's cyclic garbage collector paused while a range is converted.

    A 10,000-cell column is 10,000 new lists; each 700 allocations start a collection that walks
    every tracked object, including the caller's own rows, and on a column that costs more than
    the computation.  The lists hold only numbers and text, so they form no cycles to collect."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _as_column(spec, col, size: int):
    """An xlwings column (or a broadcast scalar) as the engine's vector API wants it.

    Numbers and blanks become one float array (None → NaN, the vector path's blank); a NaN a
    program put in the range is an error, as in the scalar path.  Anything else (text, booleans)
    stays an object column for the engine to parse cell by cell.
    """
    if not isinstance(col, list):
        col = [col] * size
    if spec.kind == "choice":
        return np.array(col, dtype=object)
    types = set(map(type, col))
    if types <= _NUMERIC_TYPES:
        arr = np.array(col, dtype="float64")
        if float in types:
            nan = np.isnan(arr)
            if nan.any():
                blank = np.fromiter((x is None for x in col), dtype=bool, count=len(col))
                bad = nan & ~blank
                if bad.any():
                    raise InputError(f"{spec.label}“nan”不是有限数值（空白请留空）")
        return arr
    return np.array(col, dtype=object)


_NUMERIC_TYPES = frozenset({float, int, type(None)})


def _vector(rule_id: str, columns, size: int) -> np.ndarray:
    """Yuan as a float array, or an object array with "" for blank results."""
    rule = _RULES[rule_id]
    # a blank scalar argument (an omitted optional input) is left out: the engine applies its default
    data = {
        spec.name: _as_column(spec, col, size)
        for spec, col in zip(rule.inputs, columns)
        if not (col is None or (isinstance(col, str) and col.strip() == ""))
    }
    cents = engine.calculate_columns_cents(rule_id, data)
    yuan = cents / 100.0
    blank = np.isnan(yuan)
    if not blank.any():
        return yuan
    out = yuan.astype(object)
    out[blank] = BLANK
    return out


def _dims(shape) -> str:
    return f"{shape[0]}行{shape[1]}列" if len(shape) == 2 else f"{shape[0]}个"


@dataclass(frozen=True)
class UdfArg:
    name: str
    doc: str
    optional: bool
    vararg: bool = False


@dataclass(frozen=True)
class UdfSpec:
    name: str
    description: str
    args: tuple[UdfArg, ...]


UDF_SPECS: dict[str, UdfSpec] = {}


#: xlwings options of every rule UDF argument: a range arrives as rows of cells whatever its shape
#: (by default xlwings flattens a one-column range to a list, and a list it writes back is a row)
RANGE_OPTIONS = {"ndim": 2}


def _register(func, description: str, arg_docs: dict[str, str], options: dict | None = None):
    """Record the UDF's metadata and apply xlwings' decorators."""
    func.__doc__ = description
    args = []
    for p in inspect.signature(func).parameters.values():
        args.append(
            UdfArg(
                name=p.name,
                doc=arg_docs[p.name],
                optional=p.default is not inspect.Parameter.empty,
                vararg=p.kind is inspect.Parameter.VAR_POSITIONAL,
            )
        )
    for a in args:
        func = xw.arg(("*" if a.vararg else "") + a.name, doc=a.doc, **(options or {}))(func)
    func = xw.func(category=CATEGORY)(func)
    UDF_SPECS[func.__name__] = UdfSpec(func.__name__, description, tuple(args))
    return func


def udf(description: str, **arg_docs: str):
    return lambda func: _register(func, description, arg_docs)


def rule_udf(func):
    """Register ``func`` (named after a rule of plan.yaml) as an Excel UDF.

    The signature must list the rule's inputs in order; descriptions come from the plan.
    """
    plan = load_plan()
    rule = plan.rules[func.__name__]
    params = list(inspect.signature(func).parameters)
    if params != list(rule.input_names):
        raise RuntimeError(f"{func.__name__}: UDF arguments {params} differ from plan inputs {list(rule.input_names)}")
    docs = {}
    for spec in rule.inputs:
        doc = spec.label + ("（元）" if spec.kind == "money" else "")
        if spec.kind == "rate":
            doc += "（可选，不填按条款规定的最高比例）"
        elif spec.kind == "choice":
            doc += f"（可选：{'/'.join(c or '空白' for c in spec.choices)}）"
        elif spec.optional:
            doc += "（可选）"
        docs[spec.name] = doc
    return _register(func, f"{rule.name}（条款{rule.clause}）：{rule.text}", docs, RANGE_OPTIONS)


@rule_udf
def AWARD_UPLINK(sales, rate=None):
    return call_rule("AWARD_UPLINK", sales, rate)


@rule_udf
def AWARD_LINKAGE(annual_purchase, agreement_years, online_purchase=None, rate=None):
    return call_rule("AWARD_LINKAGE", annual_purchase, agreement_years, online_purchase, rate)


@rule_udf
def AWARD_PLATFORM(retail):
    return call_rule("AWARD_PLATFORM", retail)


@rule_udf
def SUBSIDY_EXPO(booth_fees, personnel_costs, rate=None):
    return call_rule("SUBSIDY_EXPO", booth_fees, personnel_costs, rate)


@rule_udf
def SUBSIDY_PROMO(event_sales):
    return call_rule("SUBSIDY_PROMO", event_sales)


@rule_udf
def AWARD_TOURISM(towns, villages):
    return call_rule("AWARD_TOURISM", towns, villages)


@rule_udf
def SUBSIDY_FACILITY(investment):
    return call_rule("SUBSIDY_FACILITY", investment)


@rule_udf
def SUBSIDY_COLD_RENT(rent):
    return call_rule("SUBSIDY_COLD_RENT", rent)


@rule_udf
def TRAINING_SUBSIDY(attendees, costs, kind=None):
    return call_rule("TRAINING_SUBSIDY", attendees, costs, kind)


@rule_udf
def AWARD_LIVESTREAM(sales):
    return call_rule("AWARD_LIVESTREAM", sales)


@rule_udf
def AWARD_POOR_SITE(sales):
    return call_rule("AWARD_POOR_SITE", sales)


@rule_udf
def SUBSIDY_POVERTY_PURCHASE(amount, order_based=None, rate=None):
    return call_rule("SUBSIDY_POVERTY_PURCHASE", amount, order_based, rate)


@rule_udf
def REGION_UPLIFT(amount, region_type=None):
    return call_rule("REGION_UPLIFT", amount, region_type)


@udf("返回方案条款原文。", clause_id="条款编号，如 二（一）、二（三）-2，或规则名如 AWARD_UPLINK")
def CLAUSE_TEXT(clause_id):
    return lookup.clause_text(clause_id)


@udf("返回条款的牵头单位和配合单位。", clause_id="条款编号，如 二（一）、二（三）-2，或规则名如 AWARD_UPLINK")
def CLAUSE_DEPARTMENTS(clause_id):
    return lookup.clause_departments(clause_id)


@udf("返回目标任务分解表中某县区某项指标的目标任务数。", county="县区名称，如 寿县", metric="指标：示范镇、示范村 或 年上行超1000万元企业")
def COUNTY_TARGET(county, metric):
    return lookup.county_target(county, metric)


@udf("逐步说明奖补金额如何算出：条款、原文、门槛判断、比例、上限。", udf_name="函数名，如 AWARD_UPLINK", args="该函数的参数，顺序同该函数")
def EXPLAIN(udf_name, *args):
    return engine.explain(udf_name, *args).to_text()


RULE_UDFS = {name: globals()[name] for name in load_plan().rules}
_RULES = dict(load_plan().rules)
