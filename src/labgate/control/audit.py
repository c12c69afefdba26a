"""Audit events in the database, written in the same transaction as the change they record."""

from __future__ import annotations

import json
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from labgate.control.tables import AuditEvent


def record(session: Session, *, at: datetime, kind: str, subject: str, **detail: object) -> None:
    """Add one event; the caller's commit makes it durable together with the change itself."""
    session.add(AuditEvent(at=at, kind=kind, subject=subject, detail=json.dumps(detail)))


def events(session: Session, *, kind: str | None = None) -> list[AuditEvent]:
    query = select(AuditEvent).order_by(AuditEvent.id)
    if kind is not None:
        query = query.where(AuditEvent.kind == kind)
    return list(session.scalars(query))


def recent(
    session: Session,
    *,
    kind: str | None = None,
    subject: str | None = None,
    before_id: int | None = None,
    limit: int = 50,
) -> list[AuditEvent]:
    """One page of the control server's own events, newest first (keyset on the id: the page
    after is `before_id` = the last id shown)."""
    query = select(AuditEvent).order_by(AuditEvent.id.desc()).limit(limit)
    if kind is not None:
        query = query.where(AuditEvent.kind == kind)
    if subject is not None:
        query = query.where(AuditEvent.subject == subject)
    if before_id is not None:
        query = query.where(AuditEvent.id < before_id)
    return list(session.scalars(query))
