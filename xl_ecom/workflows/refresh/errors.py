"""The one error of 刷新: the workbook cannot be refreshed, with every bad cell listed."""

from __future__ import annotations

from collections.abc import Sequence

from xl_ecom.common.errors import XlEcomError
from xl_ecom.common.problems import Problem


class RefreshError(XlEcomError):
    """The workbook cannot be refreshed; ``problems`` lists every bad cell (nothing was written)."""

    def __init__(self, message: str, problems: Sequence[Problem] = ()):
        super().__init__(message)
        self.problems = list(problems)

    def to_text(self, limit: int = 50) -> str:
        lines = [str(self)]
        for p in self.problems[:limit]:
            lines.append(f"  {p}")
        if len(self.problems) > limit:
            lines.append(f"  ……另有{len(self.problems) - limit}处问题未列出。")
        return "\n".join(lines)
