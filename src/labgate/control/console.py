"""Web console sessions: server-side, in the database, so that every replica agrees on them.

A login opens one: the browser's cookie holds a random token, the database only its SHA-256, with
the session's synchronizer (CSRF) token and two ends: `expires_at`, fixed at login (the absolute
timeout), and the idle timeout, counted from the last request. Whatever ends a person's API
logins (disabling the account, a password change or reset, "revoke sessions") ends their console
sessions too (`labgate.control.revocation.revoke_subject`).

Who the session's person is and what their role allows is not stored here: each request reads the
account and asks `labgate.control.standing`, as the API does for each token.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from labgate.auth.decisions import Denied
from labgate.control import audit
from labgate.control.principals import Principal, user_identity
from labgate.control.standing import standing
from labgate.control.tables import ConsoleSession, User

TOKEN_BYTES = 32
# A session's last request is written at most this often (a page view is not a write each time);
# the idle timeout is therefore counted from a moment up to this much earlier than the last view.
TOUCH_SECONDS = 5


@dataclass(frozen=True, slots=True, kw_only=True)
class Timeouts:
    idle: timedelta
    absolute: timedelta

    @classmethod
    def of(cls, idle_seconds: int, absolute_seconds: int) -> Timeouts:
        return cls(
            idle=timedelta(seconds=idle_seconds), absolute=timedelta(seconds=absolute_seconds)
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Opened:
    """A new session: the cookie's token (given once, never stored) and its CSRF token."""

    token: str
    csrf: str
    restricted: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class Visitor:
    """The person behind a live console session, as the API's checks see them."""

    principal: Principal
    user_id: int
    csrf: str
    session_id: str

    @property
    def username(self) -> str:
        return self.principal.name

    def csrf_matches(self, given: str | None) -> bool:
        """The form's token is this session's (compared in constant time)."""
        return given is not None and hmac.compare_digest(given.encode(), self.csrf.encode())


def digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def open_session(
    session: Session, user: User, *, restricted: bool, timeouts: Timeouts, now: datetime
) -> Opened:
    token = secrets.token_urlsafe(TOKEN_BYTES)
    csrf = secrets.token_urlsafe(TOKEN_BYTES)
    session.add(
        ConsoleSession(
            id=digest(token),
            user_id=user.id,
            subject=user_identity(user.username),
            csrf=csrf,
            restricted=restricted,
            created_at=now,
            last_seen_at=now,
            expires_at=now + timeouts.absolute,
        )
    )
    session.flush()
    return Opened(token=token, csrf=csrf, restricted=restricted)


def visitor(
    session: Session, token: str | None, *, timeouts: Timeouts, now: datetime
) -> Visitor | None:
    """The live session behind this cookie token, or None: unknown, idle too long, past its
    absolute end, or its person disabled or gone (an ended session is deleted)."""
    if not token or len(token) > 128:
        return None
    row = session.get(ConsoleSession, digest(token))
    if row is None:
        return None
    if now >= row.expires_at or now - row.last_seen_at >= timeouts.idle:
        session.delete(row)
        audit.record(session, at=now, kind="console.session_expired", subject=row.subject)
        return None
    decision = standing(session, identity=row.subject)
    user = session.get(User, row.user_id)
    if isinstance(decision, Denied) or user is None:
        session.delete(row)
        return None
    if (now - row.last_seen_at).total_seconds() >= TOUCH_SECONDS:
        row.last_seen_at = now
    principal = Principal(
        identity=row.subject, role=user.role, jti=row.id, restricted=row.restricted
    )
    return Visitor(principal=principal, user_id=user.id, csrf=row.csrf, session_id=row.id)


def end(session: Session, token: str | None) -> str | None:
    """End the session behind this token (logout); the identity it belonged to, if any."""
    if not token:
        return None
    row = session.get(ConsoleSession, digest(token))
    if row is None:
        return None
    session.delete(row)
    return row.subject


def purge_expired(session: Session, *, now: datetime) -> None:
    """Forget sessions past their absolute end (housekeeping at each login)."""
    session.execute(delete(ConsoleSession).where(ConsoleSession.expires_at <= now))


def open_count(session: Session, identity: str) -> int:
    return len(
        session.scalars(select(ConsoleSession.id).where(ConsoleSession.subject == identity)).all()
    )
