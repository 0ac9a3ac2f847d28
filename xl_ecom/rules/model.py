"""Frozen dataclasses for a rule body resolved as of a policy date (money in integer cents).

Each amount kind is its own class, so a consumer is one ``match`` over the kinds ending in
``case _: raise TypeError``; tests/test_rule_model.py runs every consumer on every kind in
AMOUNT_KINDS.  For the code written against the earlier dict form, every class also reads as a
mapping (``body["amount"]["type"]``, ``a.get("rate_input")``) with the same keys and values.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from decimal import Decimal
from typing import Any


class _Mapping:
    """Read-only dict-style access to the fields (and ``type``) of a frozen dataclass."""

    def __getitem__(self, key: str) -> Any:
        if key == "type":
            return self.type  # type: ignore[attr-defined]
        if key in self._keys():
            return getattr(self, key)
        raise KeyError(key)

    def get(self, key: str, default=None):
        try:
            return self[key]
        except KeyError:
            return default

    def __contains__(self, key: str) -> bool:
        return key == "type" or key in self._keys()

    def _keys(self) -> tuple[str, ...]:
        cls = type(self)
        keys = _KEYS.get(cls)
        if keys is None:
            keys = _KEYS[cls] = tuple(f.name for f in fields(self))  # type: ignore[arg-type]
        return keys


_KEYS: dict[type, tuple[str, ...]] = {}


@dataclass(frozen=True)
class Condition(_Mapping):
    """``input word threshold`` (threshold in cents for money, else the number)."""

    input: str
    word: str
    threshold: Any
    reference: str | None


@dataclass(frozen=True)
class Rate(_Mapping):
    """basis × rate (rate_input: an optional input the clerk types, at most ``rate``)."""

    basis: tuple[str, ...]
    rate: Decimal
    rate_word: str | None
    rate_ref: str | None
    rate_input: str | None
    type = "rate"


@dataclass(frozen=True)
class Factor(_Mapping):
    """basis × a declared coefficient (上浮20% = 1.2).  ``rate`` holds the coefficient."""

    basis: tuple[str, ...]
    rate: Decimal
    rate_ref: str | None
    rate_word: None = None
    rate_input: None = None
    type = "factor"


@dataclass(frozen=True)
class Fixed(_Mapping):
    amount: int
    ref: str | None
    type = "fixed"


@dataclass(frozen=True)
class Tier(_Mapping):
    word: str
    threshold: Any
    amount: int
    ref: str | None


@dataclass(frozen=True)
class Tiers(_Mapping):
    """The first tier whose ``basis word threshold`` holds pays its amount, else 0."""

    basis: str
    tiers: tuple[Tier, ...]
    type = "tiers"


@dataclass(frozen=True)
class Unit(_Mapping):
    input: str
    amount: int


@dataclass(frozen=True)
class PerUnit(_Mapping):
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
class Body(_Mapping):
    """One resolved way of computing a rule (a variant): conditions, amount, optional cap.

    ``cap`` reads as the cap in cents (the earlier dict form); ``limit`` is the Cap itself."""

    conditions: tuple[Condition, ...]
    amount: Rate | Fixed | Tiers | PerUnit | Factor
    limit: Cap | None = None

    @property
    def cap(self) -> int | None:
        return None if self.limit is None else self.limit.cents

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
