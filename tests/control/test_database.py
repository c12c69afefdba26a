"""Migrations: the shipped Alembic history builds exactly the tables the code uses."""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from labgate.control.database import current_revision, head_revision, make_engine, migrate
from labgate.control.tables import Base


def test_migrations_match_the_models_and_rerun_harmlessly(settings: Any) -> None:
    engine = make_engine(settings.resolved_database_url, pool_size=1)
    try:
        assert current_revision(engine) == head_revision() == "0001"
        assert migrate(engine) == "0001"  # `labgate server migrate` on an up-to-date database
        with engine.connect() as connection:
            differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
        assert differences == []
    finally:
        engine.dispose()


def test_sqlite_runs_in_wal_mode(settings: Any) -> None:
    if settings.database_url:
        return
    engine = make_engine(settings.resolved_database_url, pool_size=1)
    try:
        with engine.connect() as connection:
            mode = connection.exec_driver_sql("PRAGMA journal_mode").scalar()
        assert mode == "wal"
    finally:
        engine.dispose()
