"""Alembic environment: migrations always run programmatically on a given engine."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Engine

from labgate.control.tables import Base

engine = context.config.attributes.get("engine")
if not isinstance(engine, Engine):
    raise RuntimeError("labgate migrations run through labgate.control.database.migrate(engine)")

with engine.connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()
