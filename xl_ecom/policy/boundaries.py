"""Boundary words of Chinese legal text, encoded once.

《中华人民共和国民法典》第一千二百五十九条：民法所称的“以上”、“以下”、“以内”、“届满”，包括本数；
所称的“不满”、“超过”、“以外”，不包括本数。“超”即“超过”；“达到/达”指达到该数，包括本数。

Every threshold, ceiling and cap in the plan names one of these words; the engine, the Excel
formula compiler and the plan check all read the operator from here.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass

from xl_ecom.common.errors import PlanError


@dataclass(frozen=True)
class Boundary:
    word: str
    op: Callable  # applied as op(value, threshold)
    symbol: str  # Excel comparison operator
    inclusive: bool
    chinese: str  # how an explanation reads the test


_WORDS = {
    # lower bounds (value must reach the number)
    "以上": (operator.ge, ">=", True),
    "及以上": (operator.ge, ">=", True),
    "达到": (operator.ge, ">=", True),
    "达": (operator.ge, ">=", True),
    "届满": (operator.ge, ">=", True),
    "不少于": (operator.ge, ">=", True),
    "不低于": (operator.ge, ">=", True),
    "超过": (operator.gt, ">", False),
    "超": (operator.gt, ">", False),
    "以外": (operator.gt, ">", False),
    # upper bounds (value may not pass the number)
    "以下": (operator.le, "<=", True),
    "以内": (operator.le, "<=", True),
    "不超过": (operator.le, "<=", True),
    "最高": (operator.le, "<=", True),
    "不满": (operator.lt, "<", False),
}

BOUNDARY_WORDS: dict[str, Boundary] = {
    w: Boundary(w, op, sym, inc, f"{'≥' if sym == '>=' else '>' if sym == '>' else '≤' if sym == '<=' else '<'}")
    for w, (op, sym, inc) in _WORDS.items()
}

# 目标中的“左右”不是界限，是约数：检查时只作提示。
APPROXIMATE_WORDS = frozenset({"左右", "约"})


def boundary(word: str) -> Boundary:
    try:
        return BOUNDARY_WORDS[word]
    except KeyError:
        raise PlanError(f"方案数据中的界限用语“{word}”无法解释（可用：{'、'.join(BOUNDARY_WORDS)}）") from None


def holds(value, word: str, threshold):
    """Does ``value`` satisfy ``word threshold``? Works on scalars and numpy arrays alike."""
    return boundary(word).op(value, threshold)
