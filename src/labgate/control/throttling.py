"""Failed-login counters in the database, judged by `labgate.auth.throttle`.

Counters are keyed `account:<name>` and `address:<peer>` (the socket's peer address, never a
forwarded header) and live in the database, so every replica throttles and locks alike. A failure
is counted with one upsert per key, never read-add-write.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import case, delete, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from labgate.auth.decisions import Denied
from labgate.auth.throttle import (
    ACCOUNT_RULE,
    ADDRESS_RULE,
    FailureCounter,
    ThrottleRule,
    check_login,
)
from labgate.control.errors import AccountLocked, Throttled
from labgate.control.settings import ControlSettings
from labgate.control.tables import FailedLogins


def account_rule(settings: ControlSettings) -> ThrottleRule:
    return dataclasses.replace(ACCOUNT_RULE, lock_after=settings.lockout_threshold)


def _rule_for(key: str, settings: ControlSettings | None = None) -> ThrottleRule:
    if key.startswith("address:"):
        return ADDRESS_RULE
    return account_rule(settings) if settings else ACCOUNT_RULE


def counter(session: Session, key: str) -> FailureCounter:
    row = session.scalar(select(FailedLogins).where(FailedLogins.key == key))
    if row is None:
        return FailureCounter()
    return FailureCounter(failures=row.failures, last_failure_at=row.last_failure_at)


def require_allowed(
    session: Session, keys: Sequence[str], settings: ControlSettings, *, now: datetime
) -> None:
    """Raise Throttled or AccountLocked when an attempt for these keys may not proceed now."""
    account = counter(session, keys[0])
    address = counter(session, keys[1]) if len(keys) > 1 else FailureCounter()
    decision = check_login(account, address, now=now, account_rule=account_rule(settings))
    if not isinstance(decision, Denied):
        return
    if decision.reason == "locked":
        raise AccountLocked(
            f"{decision.detail}; an administrator must reset its password to unlock it"
        )
    wait = decision.retry_after.total_seconds() if decision.retry_after else 1.0
    raise Throttled(f"{decision.detail}; retry in {wait:.0f} s", retry_after=wait)


def record_failure(session: Session, keys: Sequence[str], *, now: datetime) -> None:
    """Count one failure on each key, in one upsert each (no read-add-write race)."""
    dialect = session.get_bind().dialect.name
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    for key in keys:
        rule = _rule_for(key)
        failures = FailedLogins.failures + 1
        if rule.forget_after is not None:
            failures = case(
                (FailedLogins.last_failure_at <= now - rule.forget_after, 1), else_=failures
            )
        statement = insert(FailedLogins).values(key=key, failures=1, last_failure_at=now)
        session.execute(
            statement.on_conflict_do_update(
                index_elements=[FailedLogins.key],
                set_={"failures": failures, "last_failure_at": now},
            )
        )


def clear(session: Session, *keys: str) -> None:
    session.execute(delete(FailedLogins).where(FailedLogins.key.in_(keys)))
