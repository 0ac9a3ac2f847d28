"""Money: yuan to 0.01, rounded 四舍五入 (ROUND_HALF_UP), never banker's rounding.

Amounts are held internally as integer cents (分).  The scalar path works in Decimal/int and is
exact.  The vector path works on float64 arrays for speed and hands every element whose float
result lies within rounding error of a half cent to the scalar path, so both paths give the same
cents for every input.
"""

from __future__ import annotations

import math
import re
import unicodedata
from decimal import ROUND_HALF_UP, Decimal

import numpy as np

from xl_ecom.common.errors import InputError

CENT = Decimal("0.01")
#: significant digits Excel, WPS and LibreOffice keep of a number: 1499999.9849999999 (a double a
#: formula can leave, 499,999.995 × 3) is the 1,499,999.985 the cell shows, which ROUND(…,2) makes
#: .99 in the county file's own formulas; the engine reads it the same way
EXCEL_DIGITS = 15
MAX_YUAN = Decimal("1000000000000")  # 1万亿元: anything larger is a typing error
MAX_CENTS = int(MAX_YUAN * 100)
MAX_COUNT = Decimal("100000000")  # 1亿 (people, enterprises, years): anything larger is a typing error

_UNIT = {"": 1, "元": 1, "万": 10_000, "万元": 10_000, "亿": 100_000_000, "亿元": 100_000_000}
_NUMBER = r"(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|\.\d+"  # thousands groups of exactly 3
_AMOUNT_RE = re.compile(rf"^([+-]?)({_NUMBER})\s*(亿元|万元|亿|万|元)?$")
_PERCENT_RE = re.compile(r"^([+-]?\d+(?:\.\d+)?)\s*%$")
_SCIENTIFIC_RE = re.compile(r"^[+-]?(?:\d+(?:\.\d*)?|\.\d+)[eE][+-]?\d+$")
_UNREADABLE = "无法识别为数值（可写作 500000、500,000、50万 或 1.2亿元）"


def describe(value) -> str:
    """How a value is named in an error message."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool):
        try:
            return str(value)
        except ValueError:  # beyond Python's 4300-digit int-to-str limit
            return str(Decimal(value))
    return str(value)


def brief(value, limit: int = 40) -> str:
    """:func:`describe` for a message: a very long value is shortened, its length given."""
    text = describe(value)
    if len(text) <= limit:
        return text
    return f"{text[:16]}…{text[-8:]}（共{len(text)}个字符）"


def _normalise_text(value: str) -> str:
    """Full-width digits, ．，％ and the ideographic space become their ASCII forms (NFKC)."""
    if value.isascii():
        return value.strip()
    return unicodedata.normalize("NFKC", value).strip()


def parse_number(value, label: str, *, allow_units: bool = True, percent_ok: bool = True,
                 nan_blank: bool = True) -> Decimal | None:
    """Read what a clerk typed: numbers, '50万', '1.2亿元', '500,000', '500000元', '1%'.

    Returns None for a blank cell.  Raises InputError naming the value otherwise.
    ``percent_ok=False`` refuses '50%' (money and counts are not rates).  ``nan_blank=False`` (the
    scalar path: Excel passes None for a blank, so a NaN can only come from a program) makes a
    float NaN an error instead of a blank.
    """
    if value is None:
        return None
    if isinstance(value, bool):
        raise InputError(f"{label}“{value}”不是数值")
    if isinstance(value, (int, Decimal)):
        dec = Decimal(value)
    elif isinstance(value, (float, np.floating)):
        if math.isnan(value):
            if nan_blank:
                return None
            raise InputError(f"{label}“{value}”不是有限数值（空白请留空）")
        if math.isinf(value):
            raise InputError(f"{label}“{value}”不是有限数值")
        dec = Decimal(f"{float(value):.{EXCEL_DIGITS}g}")  # the number as Excel and WPS hold it in a cell
    elif isinstance(value, (np.integer,)):
        dec = Decimal(int(value))
    elif isinstance(value, str):
        text = _normalise_text(value)
        if text == "":
            return None
        m = _PERCENT_RE.match(text)
        if m:
            if not percent_ok:
                raise InputError(f"{label}“{value}”是百分比，此处应填数值（如 500000 或 50万），百分比只用于比例")
            return Decimal(m.group(1)) / 100
        m = _AMOUNT_RE.match(text)
        if m and (allow_units or not m.group(3)):
            sign, digits, unit = m.groups()
            dec = Decimal(digits.replace(",", "")) * _UNIT[unit or ""]
            if sign == "-":
                dec = -dec
        elif _SCIENTIFIC_RE.match(text):
            dec = Decimal(text)  # Decimal would also take '1_000', 'NaN', 'Infinity': refused above
        else:
            raise InputError(f"{label}“{value}”{_UNREADABLE}")
    else:
        raise InputError(f"{label}“{value}”不是数值")
    if not dec.is_finite():
        raise InputError(f"{label}“{value}”不是有限数值")
    return dec


def to_cents(value, label: str, *, nan_blank: bool = True) -> int | None:
    """A non-negative money amount in integer cents (None for blank).  '50%' is not money."""
    dec = parse_number(value, label, percent_ok=False, nan_blank=nan_blank)
    if dec is None:
        return None
    if dec < 0:
        raise InputError(f"{label}“{describe(value)}”不能为负数")
    if dec > MAX_YUAN:
        raise InputError(f"{label}“{describe(value)}”超过1万亿元，请核对单位（金额以元为单位）")
    return int(dec.quantize(CENT, rounding=ROUND_HALF_UP) * 100)


def cents_to_yuan(cents: int) -> Decimal:
    return (Decimal(cents) / 100).quantize(CENT)


def mul_rate(cents: int, rate: Decimal) -> int:
    """cents × rate rounded half up to a whole cent (exact)."""
    return int((Decimal(cents) * rate).quantize(Decimal(1), rounding=ROUND_HALF_UP))


# --- vector path -------------------------------------------------------------------------------

def _near_half(x: np.ndarray) -> np.ndarray:
    """Elements whose fractional part is within float error of one half (NaN: False)."""
    with np.errstate(invalid="ignore"):
        top = np.max(np.abs(x), initial=0.0, where=~np.isnan(x))
        window = 1e-9 + float(top) * 4e-15
        return np.abs(x - np.floor(x) - 0.5) <= window


def to_cents_array(values, label: str) -> np.ndarray:
    """float yuan array → float array of whole cents (NaN stays NaN for blanks)."""
    x = np.asarray(values, dtype="float64")
    if x.size:
        with np.errstate(invalid="ignore"):
            lo, hi = np.nanmin(x) if not np.isnan(x).all() else 0.0, np.nanmax(np.where(np.isnan(x), 0.0, x))
        if np.isinf(hi) or np.isinf(lo):
            bad = x[np.isinf(x)][0]
            raise InputError(f"{label}“{bad}”不是有限数值")
        if lo < 0:
            raise InputError(f"{label}“{describe(float(x[x < 0][0]))}”不能为负数")
        if hi > float(MAX_YUAN):
            raise InputError(f"{label}“{describe(float(x[x > float(MAX_YUAN)][0]))}”超过1万亿元，请核对单位（金额以元为单位）")
    scaled = x * 100.0
    cents = np.floor(scaled + 0.5)
    fix = _near_half(scaled)
    if fix.any():
        cents[fix] = [to_cents(float(v), label) for v in x[fix]]
    return cents


def _as_fraction(rate: Decimal) -> tuple[int, int] | None:
    """rate = p / q with q a power of ten, when p is small enough for exact int64 arithmetic."""
    sign, digits, exponent = rate.as_tuple()
    if sign or not isinstance(exponent, int):
        return None
    p = int("".join(map(str, digits)) or "0")
    q = 1
    if exponent >= 0:
        p *= 10**exponent
    else:
        q = 10 ** (-exponent)
    if p * MAX_CENTS * 2 + q >= 2**63:
        return None
    return p, q


def mul_rate_array(cents: np.ndarray, rate) -> np.ndarray:
    """Vector cents × rate, half up; rate is a Decimal or an array of floats."""
    if isinstance(rate, Decimal):
        frac = _as_fraction(rate)
        if frac is not None:
            p, q = frac
            whole = np.nan_to_num(cents, nan=0.0).astype(np.int64)
            out = ((whole * (2 * p) + q) // (2 * q)).astype("float64")
            return np.where(np.isnan(cents), np.nan, out) if np.isnan(cents).any() else out
        product = cents * float(rate)
        rates = None
    else:
        rates = np.broadcast_to(np.asarray(rate, dtype="float64"), cents.shape)
        product = cents * rates
    out = np.floor(product + 0.5)
    fix = _near_half(product)
    if fix.any():
        idx = np.flatnonzero(fix)
        out[idx] = [
            mul_rate(int(cents[i]), rate if rates is None else Decimal(repr(float(rates[i]))))
            for i in idx
        ]
    return out
