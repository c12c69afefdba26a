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
        head = head_revision()
        assert head is not None and current_revision(engine) == head
        assert migrate(engine) == head  # `labgate server migrate` on an up-to-date database
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


def test_names_that_collide_under_folding_are_settled_by_the_migration(
    tmp_path: Any, database_url: str | None
) -> None:
    """A database from before canonical names, with `Admin` beside `admin`: upgraded, the older
    account keeps the name, the newer is renamed, disabled and loses its grants and sessions."""
    import sqlalchemy as sa
    from alembic import command

    from labgate.control.database import _alembic_config

    url = database_url or f"sqlite:///{tmp_path / 'old.db'}"
    engine = make_engine(url, pool_size=1)
    try:
        command.upgrade(_alembic_config(engine), "0001")
        with engine.begin() as connection:
            for name in ("admin", "Admin", "Bob"):
                connection.execute(
                    sa.text(
                        "INSERT INTO users (username, password_hash, role, disabled,"
                        " one_time_password, created_at) VALUES (:u, 'h', 'viewer', false,"
                        " false, CURRENT_TIMESTAMP)"
                    ),
                    {"u": name},
                )
            for who in ("labgate:user:Admin", "labgate:user:Bob"):
                connection.execute(
                    sa.text(
                        "INSERT INTO grants (principal, instrument, level, created_at)"
                        " VALUES (:p, 'qs1', 'Full', CURRENT_TIMESTAMP)"
                    ),
                    {"p": who},
                )
            connection.execute(
                sa.text(
                    "INSERT INTO failed_logins (key, failures, last_failure_at)"
                    " VALUES ('account:admin', 100, CURRENT_TIMESTAMP)"
                )
            )
        assert migrate(engine) == head_revision()
        with engine.connect() as connection:
            users = connection.execute(
                sa.text("SELECT id, username, disabled FROM users ORDER BY id")
            ).all()
            grants = connection.execute(sa.text("SELECT principal FROM grants")).scalars().all()
            locks = connection.execute(sa.text("SELECT count(*) FROM failed_logins")).scalar()
        assert [(u.username, bool(u.disabled)) for u in users] == [
            ("admin", False),
            (f"admin.dup{users[1].id}", True),
            ("bob", False),
        ]
        # The newer `Admin`'s grant did not become the older admin's; Bob's follows his name.
        assert sorted(grants) == ["labgate:user:bob"]
        assert locks == 0
    finally:
        engine.dispose()
