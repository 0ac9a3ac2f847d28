"""The ledger's tables (SQLAlchemy Core). The Alembic scripts in migrations/versions/ create exactly these;
tests/test_ledger.py compares the migrated database with this metadata."""

from __future__ import annotations

import sqlalchemy as sa

#: submission statuses
MERGED = "已汇总"
FAULTY = "有错"
SUPERSEDED = "被替代"
REJECTED = "拒收"
STATUSES = (MERGED, FAULTY, SUPERSEDED, REJECTED)

#: mail attempt statuses
SENT = "已发送"
FAILED = "失败"
UNCERTAIN = "不确定"
SKIPPED = "跳过"
MAIL_STATUSES = (SENT, FAILED, UNCERTAIN, SKIPPED)

#: issued file kinds
KINDS = ("县区", "部门")

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
metadata = sa.MetaData(naming_convention=NAMING)

meta = sa.Table(
    "meta",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)

rounds = sa.Table(
    "rounds",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("label", sa.String(100), nullable=False, unique=True),
    sa.Column("deadline", sa.Date, nullable=True),
    sa.Column("created_at", sa.DateTime, nullable=False),
)

issues = sa.Table(
    "issues",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("unit", sa.String(100), nullable=False),
    sa.Column("kind", sa.String(20), nullable=False),
    sa.Column("round_id", sa.Integer, sa.ForeignKey("rounds.id"), nullable=False),
    sa.Column("file_name", sa.Text, nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("token", sa.String(64), nullable=True, unique=True),
    sa.Column("issued_at", sa.DateTime, nullable=False),
)

submissions = sa.Table(
    "submissions",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("round_id", sa.Integer, sa.ForeignKey("rounds.id"), nullable=False),
    sa.Column("unit", sa.String(100), nullable=False),
    sa.Column("claimed_unit", sa.String(100), nullable=True),
    sa.Column("verified_unit", sa.String(100), nullable=True),
    sa.Column("issue_id", sa.Integer, sa.ForeignKey("issues.id"), nullable=True),
    sa.Column("file_name", sa.Text, nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("received_at", sa.DateTime, nullable=False),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("row_count", sa.Integer, nullable=False),
    sa.Column("problem_count", sa.Integer, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.UniqueConstraint("round_id", "unit", "version", name="uq_submissions_version"),
)
# at most one current (已汇总) submission per unit and round
sa.Index(
    "ix_submissions_current",
    submissions.c.round_id,
    submissions.c.unit,
    unique=True,
    sqlite_where=submissions.c.status == MERGED,
    postgresql_where=submissions.c.status == MERGED,
)

rows = sa.Table(
    "rows",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("submission_id", sa.Integer, sa.ForeignKey("submissions.id"), nullable=False),
    sa.Column("table_key", sa.String(100), nullable=False),
    sa.Column("row_number", sa.Integer, nullable=False),
    sa.Column("data", sa.Text, nullable=False),  # one JSON object (compact, UTF-8)
)
sa.Index("ix_rows_submission", rows.c.submission_id, rows.c.table_key, rows.c.id)

problems = sa.Table(
    "problems",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("submission_id", sa.Integer, sa.ForeignKey("submissions.id"), nullable=False, index=True),
    sa.Column("sheet", sa.Text, nullable=False),
    sa.Column("cell", sa.String(40), nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("value", sa.Text, nullable=True),
)

mail_attempts = sa.Table(
    "mail_attempts",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("round_id", sa.Integer, sa.ForeignKey("rounds.id"), nullable=False),
    sa.Column("unit", sa.String(100), nullable=False),
    sa.Column("address", sa.Text, nullable=False),
    sa.Column("file_name", sa.Text, nullable=False),
    sa.Column("kind", sa.String(20), nullable=False),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("detail", sa.Text, nullable=False),
    sa.Column("message_id", sa.Text, nullable=False),
    sa.Column("attempted_at", sa.DateTime, nullable=False),
)
sa.Index("ix_mail_attempts_lookup", mail_attempts.c.round_id, mail_attempts.c.unit)

changes = sa.Table(
    "changes",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", sa.DateTime, nullable=False),
    sa.Column("action", sa.String(100), nullable=False),
    sa.Column("detail", sa.Text, nullable=False),
)
