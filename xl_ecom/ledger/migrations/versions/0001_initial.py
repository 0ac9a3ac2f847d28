"""The first ledger schema: meta, rounds, issues, submissions, rows, problems, mail attempts, change log.

Revision ID: 0001
Revises:
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

MERGED = "已汇总"


def upgrade() -> None:
    op.create_table(
        "meta",
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("value", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("key", name="pk_meta"),
    )
    op.create_table(
        "rounds",
        sa.Column("id", sa.Integer, autoincrement=True, nullable=False),
        sa.Column("label", sa.String(100), nullable=False),
        sa.Column("deadline", sa.Date, nullable=True),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_rounds"),
        sa.UniqueConstraint("label", name="uq_rounds_label"),
    )
    op.create_table(
        "issues",
        sa.Column("id", sa.Integer, autoincrement=True, nullable=False),
        sa.Column("unit", sa.String(100), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("round_id", sa.Integer, nullable=False),
        sa.Column("file_name", sa.Text, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("token", sa.String(64), nullable=True),
        sa.Column("issued_at", sa.DateTime, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_issues"),
        sa.ForeignKeyConstraint(["round_id"], ["rounds.id"], name="fk_issues_round_id_rounds"),
        sa.UniqueConstraint("token", name="uq_issues_token"),
    )
    op.create_table(
        "submissions",
        sa.Column("id", sa.Integer, autoincrement=True, nullable=False),
        sa.Column("round_id", sa.Integer, nullable=False),
        sa.Column("unit", sa.String(100), nullable=False),
        sa.Column("claimed_unit", sa.String(100), nullable=True),
        sa.Column("verified_unit", sa.String(100), nullable=True),
        sa.Column("issue_id", sa.Integer, nullable=True),
        sa.Column("file_name", sa.Text, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("received_at", sa.DateTime, nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("row_count", sa.Integer, nullable=False),
        sa.Column("problem_count", sa.Integer, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_submissions"),
        sa.ForeignKeyConstraint(["round_id"], ["rounds.id"], name="fk_submissions_round_id_rounds"),
        sa.ForeignKeyConstraint(["issue_id"], ["issues.id"], name="fk_submissions_issue_id_issues"),
        sa.UniqueConstraint("round_id", "unit", "version", name="uq_submissions_version"),
    )
    op.create_index(
        "ix_submissions_current",
        "submissions",
        ["round_id", "unit"],
        unique=True,
        sqlite_where=sa.text(f"status = '{MERGED}'"),
        postgresql_where=sa.text(f"status = '{MERGED}'"),
    )
    op.create_table(
        "rows",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), autoincrement=True, nullable=False),
        sa.Column("submission_id", sa.Integer, nullable=False),
        sa.Column("table_key", sa.String(100), nullable=False),
        sa.Column("row_number", sa.Integer, nullable=False),
        sa.Column("data", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_rows"),
        sa.ForeignKeyConstraint(["submission_id"], ["submissions.id"], name="fk_rows_submission_id_submissions"),
    )
    op.create_index("ix_rows_submission", "rows", ["submission_id", "table_key", "id"])
    op.create_table(
        "problems",
        sa.Column("id", sa.Integer, autoincrement=True, nullable=False),
        sa.Column("submission_id", sa.Integer, nullable=False),
        sa.Column("sheet", sa.Text, nullable=False),
        sa.Column("cell", sa.String(40), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("value", sa.Text, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_problems"),
        sa.ForeignKeyConstraint(
            ["submission_id"], ["submissions.id"], name="fk_problems_submission_id_submissions"
        ),
    )
    op.create_index("ix_problems_submission_id", "problems", ["submission_id"])
    op.create_table(
        "mail_attempts",
        sa.Column("id", sa.Integer, autoincrement=True, nullable=False),
        sa.Column("round_id", sa.Integer, nullable=False),
        sa.Column("unit", sa.String(100), nullable=False),
        sa.Column("address", sa.Text, nullable=False),
        sa.Column("file_name", sa.Text, nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
        sa.Column("message_id", sa.Text, nullable=False),
        sa.Column("attempted_at", sa.DateTime, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_mail_attempts"),
        sa.ForeignKeyConstraint(["round_id"], ["rounds.id"], name="fk_mail_attempts_round_id_rounds"),
    )
    op.create_index("ix_mail_attempts_lookup", "mail_attempts", ["round_id", "unit"])
    op.create_table(
        "changes",
        sa.Column("id", sa.Integer, autoincrement=True, nullable=False),
        sa.Column("at", sa.DateTime, nullable=False),
        sa.Column("action", sa.String(100), nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_changes"),
    )


def downgrade() -> None:
    for table in ("changes", "mail_attempts", "problems", "rows", "submissions", "issues", "rounds", "meta"):
        op.drop_table(table)
