"""Frozen dataclasses for a rule body resolved as of a policy date (money in integer cents).

Each amount kind is its own class, so a consumer is one ``match`` over the kinds ending in
``case _: raise TypeError``; tests/test_rule_model.py runs every consumer on every kind in
AMOUNT_KINDS.  Fields are read by name (there is no dict-style access).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any


@dataclass(frozen=True)
class Condition:
    """``input word threshold`` (threshold in cents for money, else the number)."""

    input: str
    word: str
    threshold: Any
    reference: str | None


@dataclass(frozen=True)
class Rate:
    """basis × rate (rate_input: an optional input the clerk types, at most ``rate``)."""

    basis: tuple[str, ...]
    rate: Decimal
    rate_word: str | None
    rate_ref: str | None
    rate_input: str | None
    type = "rate"


@dataclass(frozen=True)
class Factor:
    """basis × a declared coefficient (上浮20% = 1.2).  ``rate`` holds the coefficient."""

    basis: tuple[str, ...]
    rate: Decimal
    rate_ref: str | None
    rate_word: None = None
    rate_input: None = None
    type = "factor"


@dataclass(frozen=True)
class Fixed:
    amount: int
    ref: str | None
    type = "fixed"


@dataclass(frozen=True)
class Tier:
    word: str
    threshold: Any
    amount: int
    ref: str | None


@dataclass(frozen=True)
class Tiers:
    """The first tier whose ``basis word threshold`` holds pays its amount, else 0."""

    basis: str
    tiers: tuple[Tier, ...]
    type = "tiers"


@dataclass(frozen=True)
class Unit:
    input: str
    amount: int


@dataclass(frozen=True)
class PerUnit:
    """Σ count × amount."""

    units: tuple[Unit, ...]
    type = "per_unit"


AMOUNT_KINDS: tuple[type, ...] = (Rate, Fixed, Tiers, PerUnit, Factor)


@dataclass(frozen=True)
class Cap:
    """A cap in cents: per row, or cumulative in row order grouped by ``group_by`` (a column)."""

    cents: int
    word: str | None
    reference: str | None
    cumulative: bool = False
    group_by: str | None = None


@dataclass(frozen=True)
class Body:
    """One resolved way of computing a rule (a variant): conditions, amount, optional cap (``limit``)."""

    conditions: tuple[Condition, ...]
    amount: Rate | Fixed | Tiers | PerUnit | Factor
    limit: Cap | None = None

    @property
    def cumulative(self) -> bool:
        return self.limit is not None and self.limit.cumulative

    @property
    def cap_word(self) -> str | None:
        return None if self.limit is None else self.limit.word

    @property
    def cap_ref(self) -> str | None:
        return None if self.limit is None else self.limit.reference

    def _keys(self) -> tuple[str, ...]:
        return ("conditions", "amount", "cap", "cumulative", "cap_word", "cap_ref", "limit")
