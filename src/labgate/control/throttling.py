"""Failed-login counters in the database, judged by `labgate.auth.throttle`.

Counters are keyed `pair:<name>@<source>`, `address:<source>` and `account:<name>`, with the
canonical user name and the socket's peer address (never a forwarded header; an IPv6 peer
counts as its /64). They live in the database, so every replica throttles and locks alike. A
failure is counted with one upsert per key, never read-add-write.

Every failure also deletes (at most `PURGE_PER_FAILURE`) rows quiet for `QUIET_DAY`: by then
every rule counts them as zero, so deleting them changes no decision. What one source can add
in a day is bounded by its own address counter (20 free failures, then delays up to 15
minutes, about 125 failures and two rows each), so a spray of unknown names from one source
leaves a bounded table instead of one that grows for good.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, case, delete, or_, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from labgate.auth.decisions import Denied
from labgate.auth.throttle import (
    ADDRESS_RULE,
    PAIR_RULE,
    QUIET_DAY,
    FailureCounter,
    LoginCounters,
    ThrottleRule,
    account_rule,
    check_login,
)
from labgate.auth.usernames import MAX_USERNAME, canonical_username
from labgate.control.errors import AccountLocked, Throttled
from labgate.control.settings import ControlSettings
from labgate.control.tables import FailedLogins

# Stale rows deleted by one failed login: more than the three one failure can add.
PURGE_PER_FAILURE = 100

# IPv6 hosts usually hold a whole /64: counting each of its addresses apart would give one
# attacker 2**64 fresh sources.
IPV6_SOURCE_PREFIX = 64


@dataclass(frozen=True, slots=True, kw_only=True)
class LoginKeys:
    """The counter keys of one login attempt; `pair` and `address` are None without a source."""

    account: str
    pair: str | None = None
    address: str | None = None

    @classmethod
    def of(cls, username: str, address: str | None = None) -> LoginKeys:
        # Canonical, and bounded: a longer name is no user's, and the key column is 200 long.
        name = canonical_username(username)[:MAX_USERNAME]
        if address is None:
            return cls(account=f"account:{name}")
        source = source_of(address)
        return cls(
            account=f"account:{name}", pair=f"pair:{name}@{source}", address=f"address:{source}"
        )

    @classmethod
    def for_password_change(cls, username: str) -> LoginKeys:
        """Old-password guesses from sessions: the account's lock, and delays of their own.

        A stolen session must not get unthrottled guesses at the password it would need to
        take the account over; all sessions of one account share this one pair counter.
        """
        name = canonical_username(username)[:MAX_USERNAME]
        return cls(account=f"account:{name}", pair=f"pair:{name}@password-change")

    def all(self) -> list[str]:
        return [key for key in (self.account, self.pair, self.address) if key is not None]


def source_of(address: str) -> str:
    """The throttled source for a peer address: the address, or an IPv6 address's /64."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address[:80]
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/{IPV6_SOURCE_PREFIX}", strict=False))
    return str(ip)


def account_rule_for(settings: ControlSettings) -> ThrottleRule:
    return account_rule(
        lock_after=settings.lockout_threshold,
        lock_for=timedelta(seconds=settings.lockout_seconds),
    )


def _rule_for(key: str, settings: ControlSettings) -> ThrottleRule:
    if key.startswith("address:"):
        return ADDRESS_RULE
    if key.startswith("pair:"):
        return PAIR_RULE
    return account_rule_for(settings)


def counter(session: Session, key: str | None) -> FailureCounter:
    if key is None:
        return FailureCounter()
    row = session.scalar(select(FailedLogins).where(FailedLogins.key == key))
    if row is None:
        return FailureCounter()
    return FailureCounter(failures=row.failures, last_failure_at=row.last_failure_at)


def require_allowed(
    session: Session, keys: LoginKeys, settings: ControlSettings, *, now: datetime
) -> None:
    """Raise Throttled or AccountLocked when an attempt for these keys may not proceed now."""
    counters = LoginCounters(
        account=counter(session, keys.account),
        pair=counter(session, keys.pair),
        address=counter(session, keys.address),
    )
    decision = check_login(counters, now=now, account=account_rule_for(settings))
    if not isinstance(decision, Denied):
        return
    wait = decision.retry_after.total_seconds() if decision.retry_after else 1.0
    if decision.reason == "locked":
        raise AccountLocked(
            f"{decision.detail}; the lock ends in {wait:.0f} s (or when the host's operator "
            "runs `labgate server unlock`)",
            retry_after=wait,
        )
    raise Throttled(f"{decision.detail}; retry in {wait:.0f} s", retry_after=wait)


def record_failure(
    session: Session, keys: LoginKeys, settings: ControlSettings, *, now: datetime
) -> None:
    """Count one failure on each key, in one upsert each (no read-add-write race)."""
    dialect = session.get_bind().dialect.name
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    for key in keys.all():
        rule = _rule_for(key, settings)
        forgotten = []
        if rule.forget_after is not None:
            forgotten.append(FailedLogins.last_failure_at <= now - rule.forget_after)
        if rule.lock_after is not None and rule.lock_for is not None:
            forgotten.append(
                and_(
                    FailedLogins.failures >= rule.lock_after,
                    FailedLogins.last_failure_at <= now - rule.lock_for,
                )
            )
        failures = FailedLogins.failures + 1
        if forgotten:
            failures = case((or_(*forgotten), 1), else_=failures)
        statement = insert(FailedLogins).values(key=key, failures=1, last_failure_at=now)
        session.execute(
            statement.on_conflict_do_update(
                index_elements=[FailedLogins.key],
                set_={"failures": failures, "last_failure_at": now},
            )
        )
    purge_quiet(session, now=now, limit=PURGE_PER_FAILURE)


def purge_quiet(session: Session, *, now: datetime, limit: int) -> int:
    """Delete at most `limit` counters quiet for `QUIET_DAY` (every rule's zero); the count.

    Rows another transaction holds are skipped (PostgreSQL's SKIP LOCKED), so this never waits
    on, or deadlocks with, a concurrent login's upsert; the next failure takes them."""
    quiet = (
        select(FailedLogins.key)
        .where(FailedLogins.last_failure_at <= now - QUIET_DAY)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    result = session.execute(
        delete(FailedLogins).where(FailedLogins.key.in_(quiet.scalar_subquery()))
    )
    return int(getattr(result, "rowcount", 0) or 0)


def clear_after_success(session: Session, keys: LoginKeys) -> None:
    """The password was right: reset the account and this source's pair, never the address."""
    clear(session, *(key for key in (keys.account, keys.pair) if key is not None))


def clear(session: Session, *keys: str) -> None:
    session.execute(delete(FailedLogins).where(FailedLogins.key.in_(keys)))


def unlock(session: Session, username: str) -> int:
    """Lift every lock and delay on this account, from every source; the rows removed."""
    name = canonical_username(username)
    result = session.execute(
        delete(FailedLogins).where(
            or_(
                FailedLogins.key == f"account:{name}",
                FailedLogins.key.like(f"pair:{_like_escape(name)}@%", escape="\\"),
            )
        )
    )
    return int(getattr(result, "rowcount", 0) or 0)


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
