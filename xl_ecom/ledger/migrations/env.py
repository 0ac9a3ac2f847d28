"""Alembic environment for the ledger. The ledger runs migrations itself (xl_ecom.ledger.store._migrate) and
passes its open connection in ``config.attributes["connection"]``; there is no alembic.ini."""

from __future__ import annotations

from alembic import context

from xl_ecom.ledger.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - only when someone runs the alembic CLI by hand
    raise RuntimeError("xl_ecom.ledger migrations run through xl_ecom.ledger.open_ledger()")

context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
