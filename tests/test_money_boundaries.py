from __future__ import annotations

from decimal import Decimal

import numpy as np
import pytest

from xl_ecom.common.errors import InputError
from xl_ecom.policy.boundaries import BOUNDARY_WORDS, holds
from xl_ecom.rules.money import mul_rate, mul_rate_array, parse_number, to_cents, to_cents_array


@pytest.mark.parametrize(
    "word, inclusive",
    [("以上", True), ("以下", True), ("以内", True), ("届满", True), ("达到", True), ("达", True),
     ("不满", False), ("超过", False), ("超", False), ("以外", False)],
)
def test_civil_code_article_1259(word, inclusive):
    b = BOUNDARY_WORDS[word]
    assert b.inclusive is inclusive
    assert holds(100, word, 100) is inclusive


def test_direction():
    assert holds(101, "超", 100) and not holds(99, "以上", 100)
    assert holds(99, "以下", 100) and not holds(101, "以内", 100)
    assert list(holds(np.array([99.0, 100.0, 101.0]), "超过", 100)) == [False, False, True]


@pytest.mark.parametrize(
    "text, yuan",
    [("50万", "500000"), ("1.2亿元", "120000000"), ("500,000", "500000"), ("500000元", "500000"),
     (" 3.5 万元 ", "35000"), ("1,234.5", "1234.5"), (12.3, "12.3"), ("12%", "0.12")],
)
def test_parse_clerk_amounts(text, yuan):
    assert parse_number(text, "金额") == Decimal(yuan)


def test_half_up_not_bankers():
    assert round(0.125, 2) == 0.12  # what Python's round would do
    assert to_cents(0.125, "x") == 13
    assert to_cents("2.675", "x") == 268
    assert mul_rate(1234567890, Decimal("0.01")) == 12345679
    assert mul_rate(5, Decimal("0.5")) == 3


def test_vector_cents_match_scalar_on_half_cases():
    xs = [0.005, 0.015, 1.005, 2.675, 1234567.125, 0.125, 10.0, 99999999.995]
    got = to_cents_array(np.array(xs), "x")
    assert list(got) == [to_cents(x, "x") for x in xs]
    cents = np.array([5.0, 15.0, 25.0, 1234567890.0])
    assert list(mul_rate_array(cents, Decimal("0.1"))) == [mul_rate(int(c), Decimal("0.1")) for c in cents]


@pytest.mark.parametrize("bad", ["abc", "-5", "5万-", "1e400", "inf"])
def test_unreadable_or_negative(bad):
    with pytest.raises(InputError, match=f"“{bad}”"):
        to_cents(bad, "金额")


# --- issue #8: text amounts, NaN and ±inf ------------------------------------------------------

@pytest.mark.parametrize(
    "text, yuan",
    [("1,000", "1000"), ("1,000,000.5", "1000000.5"), ("５０．５万", "505000"), ("１，０００", "1000"),
     ("\u3000３．５\u3000万元\u3000", "35000"), ("1e5", "100000")],
)
def test_well_formed_text_amounts(text, yuan):
    assert parse_number(text, "金额") == Decimal(yuan)
    assert to_cents(text, "金额") == int(Decimal(yuan) * 100)


def test_full_width_amount_is_505000_yuan():
    assert to_cents("５０．５万", "金额") == 50_500_000


@pytest.mark.parametrize("bad", ["10,00", "1,0000", "1_000", "1,00.5", ",100", "1,000,00", "NaN", "Infinity"])
def test_malformed_text_amounts_are_errors(bad):
    with pytest.raises(InputError, match=f"金额“{bad}”无法识别为数值"):
        to_cents(bad, "金额")


@pytest.mark.parametrize("text", ["50%", "５０％", "1.5 %"])
def test_percent_is_not_money(text):
    with pytest.raises(InputError, match=f"金额“{text}”是百分比"):
        to_cents(text, "金额")
    with pytest.raises(InputError, match="是百分比"):
        parse_number(text, "人数", percent_ok=False)


def test_percent_still_a_rate():
    assert parse_number("1%", "比例") == Decimal("0.01")
    assert parse_number("１．５％", "比例") == Decimal("0.015")


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf"), np.float64("nan")])
def test_scalar_nan_and_inf_are_errors_naming_the_value(value):
    with pytest.raises(InputError, match=f"“{value}”不是有限数值"):
        to_cents(value, "金额", nan_blank=False)
    with pytest.raises(InputError, match=f"“{value}”不是有限数值"):
        parse_number(value, "比例", nan_blank=False)


def test_vector_nan_is_still_a_blank():
    got = to_cents_array(np.array([1.0, np.nan]), "金额")
    assert got[0] == 100 and np.isnan(got[1])
    with pytest.raises(InputError, match="“inf”不是有限数值"):
        to_cents_array(np.array([1.0, np.inf]), "金额")


def test_engine_scalar_nan_rate_is_an_error_not_the_ceiling():
    from xl_ecom.frontends import udfs
    from xl_ecom.rules import engine

    for call in (lambda: udfs.AWARD_UPLINK(2e7, float("nan")),
                 lambda: engine.calculate_cents("AWARD_UPLINK", 2e7, float("nan"))):
        with pytest.raises(InputError, match="“nan”不是有限数值"):
            call()
    with pytest.raises(InputError, match="“inf”不是有限数值"):
        udfs.AWARD_UPLINK(float("inf"))
    with pytest.raises(InputError, match="“50%”是百分比"):
        udfs.AWARD_UPLINK("50%")
    assert udfs.AWARD_UPLINK(2e7, "1%") == udfs.AWARD_UPLINK(2e7) == 200000.0
    assert udfs.AWARD_UPLINK("２０００万") == 200000.0


# --- the engine's fast cent conversions equal the exact Decimal one -------------------------------

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from xl_ecom.rules import engine  # noqa: E402

_amounts = st.one_of(
    st.floats(0, 1e12, allow_nan=False),
    st.integers(0, 10**14).map(lambda c: c / 100),
    st.integers(0, 10**13).map(lambda k: k / 100 + 0.005),  # half cents
    st.integers(0, 10**12),
)


@settings(max_examples=3000, deadline=None)
@given(_amounts)
def test_fast_scalar_cents_equal_decimal_half_up(x):
    fast = engine._cents_of_number(x)
    assert fast is None or fast == to_cents(x, "金额")


@settings(max_examples=200, deadline=None)
@given(st.lists(_amounts, min_size=1, max_size=50))
def test_fast_vector_cents_equal_decimal_half_up(xs):
    spec = engine.get_rule("AWARD_UPLINK").input("sales")
    cents, blank = engine._money_cents(spec, np.array(xs, dtype=float))
    assert blank is None
    assert cents.tolist() == [to_cents(float(x), "金额") for x in xs]


def test_fast_scalar_cents_leave_the_hard_cases_to_the_exact_path():
    for x in (0.005, 1.015, 2.675, float("nan"), float("inf"), -1.0, 1e13, True, "5", None):
        assert engine._cents_of_number(x) is None, x
    assert engine._cents_of_number(12345678.9) == 1234567890
    assert engine._cents_of_number(7) == 700


@pytest.mark.parametrize("value, cents", [
    (499_999.995 * 3, 149_999_999),  # 1499999.9849999999: the cell shows 1,499,999.985
    (0.1 + 0.2, 30),
    (1.005 * 1000, 100_500),
    (2.675, 268),
])
def test_a_double_is_read_to_the_15_digits_a_spreadsheet_keeps(value, cents):
    """A formula in a county file can leave a double with 17 significant digits; Excel, WPS and
    LibreOffice hold 15, so ROUND(…,2) in the county's own award formula rounds 1,499,999.985 up.
    The engine reads it the same way, in the scalar and the vector path."""
    assert to_cents(value, "金额") == cents
    assert to_cents_array(np.array([value]), "金额")[0] == cents
