"""The one problem type: something a clerk has to fix or know, with where it is.

Every check reports :class:`Problem` — validate and collect (input tables, returned county
workbooks), refresh (cells that cannot be computed), check (the plan itself) and mail (units that
cannot be mailed).  Where is as precise as the check knows: ``file`` / ``sheet`` / ``cell`` for a
workbook, ``subject`` for anything else (a unit, a plan item); mail also keeps the ``address`` and
the attachment's ``sha256`` for its send log.  ``severity`` is 错误 (the value or row is not used),
警告 (used, but look at it) or 提示 (for information).
"""

from __future__ import annotations

from dataclasses import dataclass

ERROR = "错误"
WARNING = "警告"
NOTICE = "提示"
SEVERITIES = (ERROR, WARNING, NOTICE)


@dataclass(frozen=True)
class Problem:
    sheet: str = ""
    cell: str = ""
    message: str = ""
    severity: str = ERROR
    file: str = ""
    subject: str = ""
    address: str = ""
    sha256: str = ""

    def __post_init__(self) -> None:
        if self.severity not in SEVERITIES:
            raise ValueError(f"问题级别“{self.severity}”无效，应为：{'、'.join(SEVERITIES)}")

    @property
    def is_error(self) -> bool:
        return self.severity == ERROR

    @property
    def place(self) -> str:
        """Where, in Chinese: “文件” 工作表“表”单元格 B4, or the subject."""
        parts = []
        if self.file:
            parts.append(f"“{self.file}”")
        sheet = (f"工作表“{self.sheet}”" if self.sheet else "") + (f"单元格 {self.cell}" if self.cell else "")
        if sheet:
            parts.append(sheet)
        if self.subject:
            parts.append(self.subject)
        return " ".join(parts)

    def __str__(self) -> str:
        place = self.place
        return f"[{self.severity}] {place}：{self.message}" if place else f"[{self.severity}] {self.message}"
