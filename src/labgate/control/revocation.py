"""Revoking refresh-token families and denying their access tokens, for every replica at once.

An access token is a self-contained JWT, so revoking it early needs a list that every replica
reads: `denied_tokens`, keyed by `jti` and kept only until the token would have expired anyway.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, delete, exists, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from labgate.control.tables import ConsoleSession, DeniedToken, RefreshToken


def is_denied(connection: Connection | Session, jti: str) -> bool:
    return bool(connection.scalar(select(exists().where(DeniedToken.jti == jti))))


def deny(session: Session, entries: list[tuple[str, datetime]]) -> None:
    """Put access tokens (jti, expiry) on the deny list; one already there is left as it is."""
    if not entries:
        return
    rows = [{"jti": jti, "expires_at": expires} for jti, expires in entries]
    dialect = session.get_bind().dialect.name
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    session.execute(insert(DeniedToken).values(rows).on_conflict_do_nothing())


def revoke_families(session: Session, families: list[str], *, now: datetime) -> int:
    """Revoke every refresh token of `families` and deny their unexpired access tokens."""
    if not families:
        return 0
    live = session.execute(
        select(RefreshToken.access_jti, RefreshToken.access_expires_at).where(
            RefreshToken.family_id.in_(families), RefreshToken.access_expires_at > now
        )
    ).all()
    deny(session, [(jti, expires) for jti, expires in live])
    result = session.execute(
        update(RefreshToken)
        .where(RefreshToken.family_id.in_(families), RefreshToken.revoked.is_(False))
        .values(revoked=True)
    )
    return int(getattr(result, "rowcount", 0) or 0)


def revoke_subject(session: Session, identity: str, *, now: datetime) -> int:
    """Revoke everything `identity` holds (disable a user, revoke a device): its refresh-token
    families, their access tokens, and its web console sessions."""
    session.execute(delete(ConsoleSession).where(ConsoleSession.subject == identity))
    families = session.scalars(
        select(RefreshToken.family_id).where(RefreshToken.subject == identity).distinct()
    ).all()
    return revoke_families(session, list(families), now=now)


def family_of_access_token(session: Session, jti: str) -> str | None:
    return session.scalar(select(RefreshToken.family_id).where(RefreshToken.access_jti == jti))


def purge_expired(session: Session, *, now: datetime) -> None:
    """Forget deny-list entries whose tokens have expired: they are refused on `exp` alone."""
    session.execute(delete(DeniedToken).where(DeniedToken.expires_at <= now))
