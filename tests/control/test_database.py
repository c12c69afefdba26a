"""Migrations: the shipped Alembic history builds exactly the tables the code uses."""

from __future__ import annotations

from typing import Any

import pytest
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
        pytest.skip("journal modes are SQLite's")
    engine = make_engine(settings.resolved_database_url, pool_size=1)
    try:
        with engine.connect() as connection:
            mode = connection.exec_driver_sql("PRAGMA journal_mode").scalar()
        assert mode == "wal"
    finally:
        engine.dispose()


def test_database_errors_do_not_carry_stored_values(settings: Any) -> None:
    import sqlalchemy as sa

    engine = make_engine(settings.resolved_database_url, pool_size=1)
    secret_hash = "$argon2id$v=19$m=64,t=1,p=1$c2VjcmV0LXNhbHQ$not-to-be-logged"
    try:
        with pytest.raises(sa.exc.IntegrityError) as caught, engine.begin() as connection:
            connection.execute(
                sa.text(
                    "INSERT INTO users (username, password_hash, role, disabled,"
                    " one_time_password, created_at) VALUES (:u, :h, 'viewer', false, false,"
                    " CURRENT_TIMESTAMP)"
                ),
                {"u": "admin", "h": secret_hash},
            )
        assert secret_hash not in str(caught.value)
    finally:
        engine.dispose()
