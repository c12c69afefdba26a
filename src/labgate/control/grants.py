"""Grants: which principal may use which instrument at which access level."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from labgate.control import audit
from labgate.control.errors import Conflict, NotFound
from labgate.control.principals import Principal
from labgate.control.standing import record_change
from labgate.control.tables import Grant


def create_grant(
    session: Session, principal: Principal, *, who: str, instrument: str, level: str, now: datetime
) -> Grant:
    grant = Grant(principal=who, instrument=instrument, level=level, created_at=now)
    session.add(grant)
    try:
        session.flush()
    except IntegrityError:
        session.rollback()
        raise Conflict(f"{who} already has a grant on {instrument!r}; delete it first") from None
    record_change(session)
    audit.record(
        session,
        at=now,
        kind="grant.created",
        subject=who,
        instrument=instrument,
        level=level,
        by=principal.identity,
    )
    return grant


def visible_grants(session: Session, principal: Principal) -> list[Grant]:
    """All grants for an administrator; a principal's own grants for anyone else."""
    query = select(Grant).order_by(Grant.id)
    if not principal.is_admin:
        query = query.where(Grant.principal == principal.identity)
    return list(session.scalars(query))


def delete_grant(session: Session, principal: Principal, grant_id: int, *, now: datetime) -> None:
    grant = session.get(Grant, grant_id)
    if grant is None:
        raise NotFound(f"no grant with id {grant_id}")
    session.delete(grant)
    record_change(session)
    audit.record(
        session,
        at=now,
        kind="grant.deleted",
        subject=grant.principal,
        instrument=grant.instrument,
        by=principal.identity,
    )


def change_level(
    session: Session, principal: Principal, grant_id: int, *, level: str, now: datetime
) -> Grant:
    """Set a grant's level (to lower it, most often): the next bundle carries the new level."""
    grant = session.get(Grant, grant_id)
    if grant is None:
        raise NotFound(f"no grant with id {grant_id}")
    if grant.level == level:
        return grant
    before, grant.level = grant.level, level
    record_change(session)
    audit.record(
        session,
        at=now,
        kind="grant.changed",
        subject=grant.principal,
        instrument=grant.instrument,
        level=level,
        was=before,
        by=principal.identity,
    )
    return grant
