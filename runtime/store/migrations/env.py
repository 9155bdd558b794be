"""Alembic's environment: always online, on the connection runtime.store.migrate passes in.

That connection is already inside the upgrade's one transaction, with the lock held, so
every revision of one upgrade commits together or not at all.
"""

from __future__ import annotations

from alembic import context

from runtime.store.migrate import VERSION_TABLE, include_object
from runtime.store.models import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations with `acp db upgrade`, not the alembic command")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    version_table=VERSION_TABLE,
    include_object=include_object,
    # SQLite cannot ALTER most things in place: batch mode copies the table instead.
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)

with context.begin_transaction():
    context.run_migrations()
