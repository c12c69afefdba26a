"""Linking on the local network (seed 004), with its published holes closed.

An agent announces its random per-start instance id from its network; a person logged in from
the same public address sees it (only if it is the one device announcing there, so a stranger
behind the same address cannot slip theirs in unnoticed), opens the agent's local page, which
hands the browser the agent's local secret, and posts that secret here. The secret is turned at
once into a proof bound to one verification (`labgate.auth.linkproof`) and forgotten; the agent,
and only the agent (it alone holds the announce token its first announcement got), fetches the
proof, checks it with one try, and either sends its CSR or refuses, which ends discovery for
this start.

Every step is keyed on the public address from `labgate.control.addresses` (the socket peer,
never a header the client wrote), every state change is one conditional UPDATE, and everything
lives in the database, so any replica may answer any step.
"""

from __future__ import annotations

import hmac
import secrets
from datetime import datetime, timedelta

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.sql import ColumnElement

from labgate.auth.codes import token_digest
from labgate.auth.decisions import Denied
from labgate.auth.linkproof import link_proof
from labgate.control import audit
from labgate.control.addresses import local_address_problem
from labgate.control.devices import new_device_id
from labgate.control.enrolment import enrol, may_link
from labgate.control.errors import (
    Conflict,
    Forbidden,
    Gone,
    InvalidInput,
    NotFound,
    Throttled,
)
from labgate.control.principals import user_identity
from labgate.control.runtime import Runtime
from labgate.control.schemas import Announcement, Enrolment
from labgate.control.settings import ControlSettings
from labgate.control.tables import DiscoveryPresence, LinkVerification, User

# How often an agent should announce (the window is counted by the agent in announcements).
ANNOUNCE_INTERVAL = 5
# Rows of presences long over are removed this long after their last announcement.
FORGET_AFTER = timedelta(days=1)
OPEN_STATES = ("queued", "delivered")


def announce(
    session: Session,
    settings: ControlSettings,
    body: Announcement,
    *,
    public_address: str,
    now: datetime,
) -> tuple[DiscoveryPresence, str | None]:
    """Record an announcement; the new announce token when this was the instance's first."""
    problem = local_address_problem(body.local_address)
    if problem is not None:
        raise InvalidInput(problem)
    row = session.get(DiscoveryPresence, body.instance_id)
    if row is None:
        if body.announce_token is not None:
            raise Conflict(
                f"instance {body.instance_id!r} is not known here; a token is only for the "
                "instance it was given to",
                code="instance_mismatch",
            )
        return _first_announcement(session, settings, body, public_address, now)
    if body.announce_token is None or not _token_matches(row, body.announce_token):
        raise Conflict(
            f"instance {body.instance_id!r} is already announced by someone holding its token",
            code="instance_mismatch",
        )
    _require_running(row, settings, now=now)
    row.last_seen_at = now
    row.public_address = public_address
    row.local_address = body.local_address
    row.hostname, row.model, row.serial = body.hostname, body.model, body.serial
    row.announcements = row.announcements + 1
    return row, None


def _first_announcement(
    session: Session,
    settings: ControlSettings,
    body: Announcement,
    public_address: str,
    now: datetime,
) -> tuple[DiscoveryPresence, str]:
    session.execute(
        delete(DiscoveryPresence).where(DiscoveryPresence.last_seen_at < now - FORGET_AFTER)
    )
    live = session.scalar(
        select(func.count())
        .select_from(DiscoveryPresence)
        .where(*_live(settings, now), DiscoveryPresence.public_address == public_address)
    )
    if (live or 0) >= settings.discovery_instances_per_address:
        raise Throttled(
            f"{live} instances already announce from {public_address}; at most "
            f"{settings.discovery_instances_per_address}",
            retry_after=float(settings.discovery_presence_seconds),
        )
    token = secrets.token_urlsafe(32)
    row = DiscoveryPresence(
        instance_id=body.instance_id,
        token_hash=token_digest(token),
        public_address=public_address,
        local_address=body.local_address,
        hostname=body.hostname,
        model=body.model,
        serial=body.serial,
        first_seen_at=now,
        last_seen_at=now,
        announcements=1,
        ended=None,
    )
    session.add(row)
    try:
        session.flush()
    except IntegrityError:
        raise Conflict(
            f"instance {body.instance_id!r} was announced at the same moment by another caller",
            code="instance_mismatch",
        ) from None
    return row, token


def _token_matches(row: DiscoveryPresence, token: str) -> bool:
    return hmac.compare_digest(row.token_hash.encode(), token_digest(token).encode())


def _live(settings: ControlSettings, now: datetime) -> tuple[ColumnElement[bool], ...]:
    return (
        DiscoveryPresence.ended.is_(None),
        DiscoveryPresence.last_seen_at
        > now - timedelta(seconds=settings.discovery_presence_seconds),
        DiscoveryPresence.first_seen_at
        > now - timedelta(seconds=settings.discovery_lifetime_seconds),
    )


def _require_running(row: DiscoveryPresence, settings: ControlSettings, *, now: datetime) -> None:
    if row.ended is not None:
        raise Gone(
            f"discovery for instance {row.instance_id!r} has ended ({row.ended})", code=row.ended
        )
    if now - row.first_seen_at >= timedelta(seconds=settings.discovery_lifetime_seconds):
        raise Gone(
            f"discovery for instance {row.instance_id!r} is over: at most "
            f"{settings.discovery_lifetime_seconds} s from its first announcement",
            code="window_closed",
        )


def expires_at(row: DiscoveryPresence, settings: ControlSettings) -> datetime:
    return row.first_seen_at + timedelta(seconds=settings.discovery_lifetime_seconds)


def verification_pending(session: Session, instance_id: str, *, now: datetime) -> bool:
    return _open_verification(session, instance_id, now=now) is not None


def _open_verification(
    session: Session, instance_id: str, *, now: datetime
) -> LinkVerification | None:
    return session.scalar(
        select(LinkVerification)
        .where(
            LinkVerification.instance_id == instance_id,
            LinkVerification.state.in_(OPEN_STATES),
            LinkVerification.expires_at > now,
        )
        .order_by(LinkVerification.created_at.desc())
        .limit(1)
    )


def discoverable(
    session: Session, settings: ControlSettings, *, public_address: str, now: datetime
) -> tuple[bool, list[DiscoveryPresence]]:
    """(crowded, the instances shown) for a person at `public_address`."""
    rows = list(
        session.scalars(
            select(DiscoveryPresence)
            .where(*_live(settings, now), DiscoveryPresence.public_address == public_address)
            .order_by(DiscoveryPresence.first_seen_at)
            .limit(settings.discovery_max_per_address + 1)
        )
    )
    if len(rows) > settings.discovery_max_per_address:
        return True, []
    return False, rows


def link_page(row: DiscoveryPresence) -> str:
    return f"http://{row.local_address}/link?instance_id={row.instance_id}"


def request_link(
    session: Session,
    runtime: Runtime,
    user: User,
    *,
    instance_id: str,
    secret: str,
    public_address: str,
    now: datetime,
) -> LinkVerification:
    """Queue a verification for the agent; the secret leaves this function only as a proof."""
    settings = runtime.settings
    decision = may_link(session, runtime, user, now=now)
    if isinstance(decision, Denied):
        raise Forbidden(f"cannot link devices: {decision.detail}", code="access_denied")
    crowded, shown = discoverable(session, settings, public_address=public_address, now=now)
    row = session.get(DiscoveryPresence, instance_id)
    if row is not None and row.public_address == public_address:
        _require_running(row, settings, now=now)
    if crowded or row is None or row not in shown:
        raise NotFound(
            f"no device {instance_id!r} is discoverable from {public_address}",
            code="not_discoverable",
        )
    until = now + timedelta(seconds=settings.link_verification_seconds)
    held = session.execute(
        update(DiscoveryPresence)
        .where(
            DiscoveryPresence.instance_id == instance_id,
            or_(
                DiscoveryPresence.link_pending_until.is_(None),
                DiscoveryPresence.link_pending_until <= now,
            ),
        )
        .values(link_pending_until=until)
    )
    if getattr(held, "rowcount", 0) != 1 or _open_verification(session, instance_id, now=now):
        raise Conflict(
            f"a link for {instance_id!r} is already waiting for its device",
            code="verification_pending",
        )
    session.execute(
        delete(LinkVerification).where(LinkVerification.expires_at < now - FORGET_AFTER)
    )
    verification_id = secrets.token_urlsafe(24)
    device_id = new_device_id()
    verification = LinkVerification(
        id=verification_id,
        instance_id=instance_id,
        device_id=device_id,
        proof=link_proof(
            secret, instance_id=instance_id, verification_id=verification_id, device_id=device_id
        ),
        user_id=user.id,
        state="queued",
        created_at=now,
        expires_at=until,
    )
    session.add(verification)
    session.flush()
    audit.record(
        session,
        at=now,
        kind="link.requested",
        subject=user_identity(user.username),
        instance_id=instance_id,
        public_address=public_address,
    )
    return verification


def agent_presence(
    session: Session, settings: ControlSettings, instance_id: str, token: str, *, now: datetime
) -> DiscoveryPresence:
    """The presence whose announce token this is, still running; else instance_mismatch."""
    row = session.get(DiscoveryPresence, instance_id)
    if row is None or not _token_matches(row, token):
        raise NotFound(
            f"no instance {instance_id!r} holding this announce token", code="instance_mismatch"
        )
    _require_running(row, settings, now=now)
    return row


def fetch_verification(
    session: Session, settings: ControlSettings, instance_id: str, token: str, *, now: datetime
) -> LinkVerification | None:
    """The open verification for the agent (marked delivered), or None."""
    agent_presence(session, settings, instance_id, token, now=now)
    verification = _open_verification(session, instance_id, now=now)
    if verification is not None and verification.state == "queued":
        verification.state = "delivered"
    return verification


def _claim(
    session: Session, instance_id: str, verification_id: str, *, to: str, now: datetime
) -> LinkVerification:
    """Move an open verification to `to` in one conditional UPDATE, or say why not."""
    moved = session.execute(
        update(LinkVerification)
        .where(
            LinkVerification.id == verification_id,
            LinkVerification.instance_id == instance_id,
            LinkVerification.state.in_(OPEN_STATES),
            LinkVerification.expires_at > now,
        )
        .values(state=to)
    )
    verification = session.get(LinkVerification, verification_id)
    if getattr(moved, "rowcount", 0) == 1 and verification is not None:
        session.refresh(verification)
        return verification
    if verification is None or verification.instance_id != instance_id:
        raise Gone(
            f"no verification {verification_id!r} for this instance", code="verification_expired"
        )
    if verification.state not in OPEN_STATES:
        raise Conflict(
            f"verification {verification_id!r} was already answered", code="verification_used"
        )
    raise Gone(
        f"verification {verification_id!r} expired at {verification.expires_at.isoformat()}",
        code="verification_expired",
    )


def complete(
    session: Session,
    runtime: Runtime,
    *,
    instance_id: str,
    token: str,
    verification_id: str,
    csr_pem: str,
    now: datetime,
) -> Enrolment:
    """The agent checked the proof: the device, its certificate and bound tokens."""
    row = agent_presence(session, runtime.settings, instance_id, token, now=now)
    verification = _claim(session, instance_id, verification_id, to="linked", now=now)
    owner = session.get(User, verification.user_id)
    decision = may_link(session, runtime, owner, now=now)
    if isinstance(decision, Denied) or owner is None:
        raise Forbidden(f"the person who linked may not now: {decision}", code="access_denied")
    ended = session.execute(
        update(DiscoveryPresence)
        .where(DiscoveryPresence.instance_id == instance_id, DiscoveryPresence.ended.is_(None))
        .values(ended="already_linked")
    )
    if getattr(ended, "rowcount", 0) != 1:
        raise Gone(f"discovery for {instance_id!r} has ended", code="already_linked")
    return enrol(
        session,
        runtime,
        owner=owner,
        device_id=verification.device_id,
        name=row.hostname,
        csr_pem=csr_pem,
        via="discovery",
        now=now,
    )


def refuse(
    session: Session,
    settings: ControlSettings,
    *,
    instance_id: str,
    token: str,
    verification_id: str,
    reason: str,
    now: datetime,
) -> None:
    """The proof did not match: discovery for this start is over (one try)."""
    row = agent_presence(session, settings, instance_id, token, now=now)
    _claim(session, instance_id, verification_id, to="refused", now=now)
    row.ended = reason
    audit.record(
        session,
        at=now,
        kind="link.refused",
        subject=f"instance:{instance_id}",
        reason=reason,
        public_address=row.public_address,
    )


def link_status(
    session: Session, user: User, instance_id: str, *, now: datetime
) -> LinkVerification:
    verification = session.scalar(
        select(LinkVerification)
        .where(LinkVerification.instance_id == instance_id, LinkVerification.user_id == user.id)
        .order_by(LinkVerification.created_at.desc())
        .limit(1)
    )
    if verification is None:
        raise NotFound(f"no link of yours for {instance_id!r}")
    return verification


def shown_state(verification: LinkVerification, *, now: datetime) -> str:
    if verification.state in OPEN_STATES and verification.expires_at <= now:
        return "expired"
    return verification.state
