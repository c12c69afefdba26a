"""Anti-replay nonces (RFC 8555 section 6.5), kept in the database so that any replica can
accept a nonce another one handed out, and each is accepted once.

A nonce is written when it is handed out and deleted when it is used: one DELETE whose row count
says whether it was there, so two replicas racing for one nonce cannot both win. Both run in a
transaction of their own, committed at once: a request that fails later must not give its nonce
back, and a nonce handed out must hold even if the request's own work rolls back.
"""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta

from sqlalchemy import Delete, Engine, Insert, delete, insert
from sqlalchemy.orm import Session

from labgate.control.acme.errors import BadNonce
from labgate.control.tables import AcmeNonce

# A client takes a nonce from one response for its next request, seconds later; an hour is
# generous for a slow one and keeps the table small.
NONCE_LIFETIME = timedelta(hours=1)
NONCE_BYTES = 16
# Expired nonces are swept on one hand-out in this many: correctness never depends on it (an
# expired nonce is refused by its time), only the table's size does.
SWEEP_EVERY = 64


def issue(engine: Engine, *, now: datetime, session: Session | None = None) -> str:
    """A new nonce, committed at once; or, given the request's `session`, with its transaction
    (a SQLite writer must not wait on itself; a nonce lost to a rollback is never handed out,
    since the error's answer then gets one of its own)."""
    value = secrets.token_urlsafe(NONCE_BYTES)
    statements: list[Insert | Delete] = [
        insert(AcmeNonce).values(value=value, expires_at=now + NONCE_LIFETIME)
    ]
    if secrets.randbelow(SWEEP_EVERY) == 0:
        statements.append(delete(AcmeNonce).where(AcmeNonce.expires_at <= now))
    if session is not None:
        for statement in statements:
            session.execute(statement)
        return value
    with engine.begin() as connection:
        for statement in statements:
            connection.execute(statement)
    return value


def consume(engine: Engine, value: str | None, *, now: datetime) -> None:
    """Use `value` up; BadNonce unless it was handed out, unused and unexpired."""
    if not value or len(value) > 64:
        raise BadNonce("the request carries no nonce this server handed out")
    with engine.begin() as connection:
        result = connection.execute(
            delete(AcmeNonce).where(AcmeNonce.value == value, AcmeNonce.expires_at > now)
        )
    if int(getattr(result, "rowcount", 0) or 0) != 1:
        raise BadNonce("the nonce was already used, has expired, or was never handed out")
