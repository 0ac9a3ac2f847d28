"""The ledger: the system of record (SQLite beside the workbook, or PostgreSQL given a URL)."""

from xl_ecom.ledger.schema import (
    FAILED,
    FAULTY,
    MERGED,
    REJECTED,
    SENT,
    SKIPPED,
    SUPERSEDED,
    UNCERTAIN,
)
from xl_ecom.ledger.store import (
    Change,
    Diff,
    Issue,
    Ledger,
    LedgerError,
    MailAttempt,
    ProblemRow,
    Round,
    Submission,
    SubmissionWriter,
    TableDiff,
    default_path,
    open_ledger,
    resolve_url,
)

__all__ = [
    "FAILED", "FAULTY", "MERGED", "REJECTED", "SENT", "SKIPPED", "SUPERSEDED", "UNCERTAIN",
    "Change", "Diff", "Issue", "Ledger", "LedgerError", "MailAttempt", "ProblemRow", "Round", "Submission",
    "SubmissionWriter", "TableDiff", "default_path", "open_ledger", "resolve_url",
]
