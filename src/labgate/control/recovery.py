"""The host operator's way back into an account: lift a lock, or set a new one-time password.

These run on the server's host with its data directory (`labgate server unlock`,
`labgate server reset-password`), not over the API, so they work when every administrator is
locked out. They need only the database: no key passphrase, no running server.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy.orm import Session

from labgate.control import accounts
from labgate.control.database import make_engine, session_factory
from labgate.control.errors import NotFound, NotInitialised
from labgate.control.runtime import require_current_schema
from labgate.control.settings import CONFIG_FILE, ControlSettings
from labgate.pki.atomic import PRIVATE, write_atomic

OPERATOR = "host-operator"


@dataclass(frozen=True, slots=True, kw_only=True)
class PasswordWritten:
    username: str
    path: Path


@contextmanager
def _transaction(settings: ControlSettings) -> Iterator[Session]:
    if not (settings.data_dir / CONFIG_FILE).is_file():
        raise NotInitialised(f"{settings.data_dir} holds no server; run `labgate server init`")
    engine = make_engine(settings.resolved_database_url, pool_size=1)
    try:
        require_current_schema(engine)
        with session_factory(engine)() as session, session.begin():
            yield session
    finally:
        engine.dispose()


def unlock_user(settings: ControlSettings, username: str) -> str:
    """Lift the account's lock and delays; returns the canonical name."""
    with _transaction(settings) as session:
        user = accounts.unlock(session, username, now=datetime.now(UTC), by=OPERATOR)
        return user.username


def reset_password(
    settings: ControlSettings, username: str, *, out: Path | None = None
) -> PasswordWritten:
    """A new one-time password, written 0600 to `out` (default `DIR/<name>-password`).

    The account's sessions end and its lock is lifted. The file is written before the
    transaction commits, so a failure leaves the old password in force and no stray file
    claiming otherwise (a written file whose commit failed is removed).
    """
    rules = accounts.password_rules(settings)
    written: Path | None = None
    try:
        with _transaction(settings) as session:
            user = accounts.find_user(session, username)
            if user is None:
                raise NotFound(f"no user {username!r}")
            path = out or settings.data_dir / f"{user.username}-password"
            _, password = accounts.reset_password(session, rules, user.id, now=datetime.now(UTC))
            write_atomic(path, password.encode("ascii") + b"\n", mode=PRIVATE)
            written = path
            done = PasswordWritten(username=user.username, path=path)
    except BaseException:
        if written is not None:
            written.unlink(missing_ok=True)
        raise
    return done
