"""The one formula-injection neutraliser: text a spreadsheet could take for a formula.

Excel, WPS and LibreOffice start a formula at ``=`` ``+`` ``-`` ``@`` and at their full-width
forms ``＝`` ``＋`` ``－`` ``＠`` (an IME typing Chinese gives those), also after leading spaces
(ASCII or the ideographic space) and after a tab, CR or LF prefix (CSV import strips them).
Such text is written with Excel's quote prefix ``'`` so it is shown and kept as text.

Used by :mod:`xl_ecom.ooxml.safeio` (openpyxl cells, xlwings values), :mod:`xl_ecom.workflows.mail` (send log CSV
and sheet), :mod:`xl_ecom.workflows.collect` and :mod:`xl_ecom.workflows.refresh` (through safeio) and
:mod:`xl_ecom.workflows.validate` (the warning a clerk sees).
"""

from __future__ import annotations

FORMULA_PREFIXES = ("=", "+", "-", "@", "＝", "＋", "－", "＠")
CONTROL_PREFIXES = ("\t", "\r", "\n")
_LEADING_BLANKS = " \u3000\t\r\n"
QUOTE = "'"


def is_formula_like(value) -> bool:
    """Text that a spreadsheet could take for a formula; anything that is not text is not."""
    if not isinstance(value, str) or not value:
        return False
    if value.startswith(CONTROL_PREFIXES):
        return True
    return value.lstrip(_LEADING_BLANKS).startswith(FORMULA_PREFIXES)


def neutralise(value):
    """``value`` with the quote prefix if it is formula-like text; everything else unchanged."""
    if is_formula_like(value):
        return QUOTE + value
    return value


def unneutralise(value):
    """The inverse of :func:`neutralise` (for text read back from a CSV or sheet it wrote)."""
    if isinstance(value, str) and value.startswith(QUOTE) and is_formula_like(value[1:]):
        return value[1:]
    return value
