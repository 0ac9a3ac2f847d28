"""Errors shown to clerks. Messages are Chinese and name the offending value."""


class XlEcomError(Exception):
    """Base class: the message is user-facing Chinese text."""

    def __str__(self) -> str:  # pragma: no cover - trivial
        return str(self.args[0]) if self.args else ""


class InputError(XlEcomError, ValueError):
    """A value typed by a clerk (or read from a file) cannot be used."""


class PlanError(XlEcomError):
    """The plan data itself is malformed."""
