"""The one progress protocol: every long task (refresh, collect, the department and county
workbooks, mail) reports ``progress(message, done, total)``.

``message`` is Chinese text for the status bar or the terminal; ``done`` / ``total`` count items
when the task knows them (the n-th of N workbooks), else they are None.
"""

from __future__ import annotations

from typing import Protocol


class Progress(Protocol):
    def __call__(self, message: str, done: int | None = None, total: int | None = None) -> None: ...


def status_text(message: str, done: int | None = None, total: int | None = None) -> str:
    """The one way progress is shown: “生成县区工作簿：寿县（2/7）”."""
    return f"{message}（{done}/{total}）" if done is not None and total is not None else message
