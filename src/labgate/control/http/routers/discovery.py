"""`/api/v1/discovery`: announcements and verification polls from agents, the listing and the
link request from a person's browser (README: "Linking a device: the wire protocol")."""

from __future__ import annotations

import asyncio
import re
import time

from fastapi import APIRouter, Request, Response, status
from starlette.concurrency import run_in_threadpool

from labgate.control import accounts, discovery
from labgate.control.addresses import public_address
from labgate.control.errors import Forbidden, InvalidInput
from labgate.control.http.dependencies import CurrentPrincipal, RuntimeDep, SessionDep
from labgate.control.principals import Principal, user_identity
from labgate.control.runtime import Runtime
from labgate.control.schemas import (
    INSTANCE_ID_PATTERN,
    Announcement,
    AnnouncementOut,
    DiscoveredDevice,
    DiscoveryOut,
    Enrolment,
    LinkComplete,
    LinkEnded,
    LinkQueued,
    LinkRefuse,
    LinkRequest,
    LinkStatus,
    VerificationOut,
    VerificationPoll,
)
from labgate.control.settings import ControlSettings
from labgate.control.tables import User
from labgate.control.throttling import source_of
from labgate.control.transactions import unit_of_work

router = APIRouter(prefix="/api/v1/discovery", tags=["discovery"])

# How often a waiting verification poll looks in the database.
POLL_CHECK_SECONDS = 0.2


def _person(session: SessionDep, principal: Principal) -> User:
    if principal.kind != "user":
        raise Forbidden("only a person's session may link devices")
    user = accounts.find_user(session, principal.name)
    if user is None:
        raise Forbidden(f"{principal.identity} has no account here")
    return user


def _bucket(request: Request, settings: ControlSettings) -> str:
    """The public address discovery matches on: the address, or an IPv6 address's /64 (the
    devices of one IPv6 home or lab share its prefix, not an address as behind IPv4 NAT)."""
    return source_of(public_address(request, settings))


def _instance(instance_id: str) -> str:
    if re.fullmatch(INSTANCE_ID_PATTERN[1:-1], instance_id) is None:
        raise InvalidInput(f"instance id {instance_id[:80]!r} is not 22-64 base64url characters")
    return instance_id


@router.post("/announce", response_model=AnnouncementOut)
def announce(
    body: Announcement,
    request: Request,
    response: Response,
    runtime: RuntimeDep,
    session: SessionDep,
) -> AnnouncementOut:
    """An agent says it is here and unlinked; the first call returns its announce token."""
    now = runtime.clock()
    settings = runtime.settings
    row, token = discovery.announce(
        session, settings, body, public_address=_bucket(request, settings), now=now
    )
    if token is not None:
        response.status_code = status.HTTP_201_CREATED
    return AnnouncementOut(
        instance_id=row.instance_id,
        announce_token=token,
        public_address=row.public_address,
        interval=discovery.ANNOUNCE_INTERVAL,
        expires_at=discovery.expires_at(row, settings),
        verification_pending=discovery.verification_pending(session, row.instance_id, now=now),
    )


@router.get("", response_model=DiscoveryOut)
def list_discoverable(
    request: Request, runtime: RuntimeDep, session: SessionDep, principal: CurrentPrincipal
) -> DiscoveryOut:
    """The devices announcing from the caller's own public address (none when crowded)."""
    principal.require_role("admin", "operator")
    address = _bucket(request, runtime.settings)
    crowded, rows = discovery.discoverable(
        session, runtime.settings, public_address=address, now=runtime.clock()
    )
    return DiscoveryOut(
        public_address=address,
        crowded=crowded,
        devices=[
            DiscoveredDevice(
                instance_id=row.instance_id,
                local_address=row.local_address,
                hostname=row.hostname,
                model=row.model,
                serial=row.serial,
                first_seen_at=row.first_seen_at,
                last_seen_at=row.last_seen_at,
                link_page=discovery.link_page(row),
            )
            for row in rows
        ],
    )


@router.post("/{instance_id}/link", response_model=LinkQueued, status_code=status.HTTP_202_ACCEPTED)
def request_link(
    instance_id: str,
    body: LinkRequest,
    request: Request,
    runtime: RuntimeDep,
    session: SessionDep,
    principal: CurrentPrincipal,
) -> LinkQueued:
    """The browser hands over the secret from the agent's local page; the agent is asked."""
    principal.require_role("admin", "operator")
    if body.instance_id != instance_id:
        raise InvalidInput(
            "the body's instance_id differs from the path's", code="instance_mismatch"
        )
    verification = discovery.request_link(
        session,
        runtime,
        _person(session, principal),
        instance_id=instance_id,
        secret=body.secret,
        public_address=_bucket(request, runtime.settings),
        now=runtime.clock(),
    )
    return LinkQueued(
        instance_id=instance_id,
        verification_id=verification.id,
        expires_at=verification.expires_at,
        state="queued",
    )


@router.get("/{instance_id}/link", response_model=LinkStatus)
def link_status(
    instance_id: str, runtime: RuntimeDep, session: SessionDep, principal: CurrentPrincipal
) -> LinkStatus:
    now = runtime.clock()
    verification = discovery.link_status(
        session, _person(session, principal), _instance(instance_id), now=now
    )
    state = discovery.shown_state(verification, now=now)
    return LinkStatus(
        instance_id=instance_id,
        state=state,  # type: ignore[arg-type]
        device_id=verification.device_id if state == "linked" else None,
    )


def _fetch(runtime: Runtime, instance_id: str, token: str) -> VerificationOut | None:
    with unit_of_work(runtime.sessions) as session:
        verification = discovery.fetch_verification(
            session, runtime.settings, instance_id, token, now=runtime.clock()
        )
        if verification is None:
            return None
        linker = session.get(User, verification.user_id)
        return VerificationOut(
            verification_id=verification.id,
            device_id=verification.device_id,
            proof=verification.proof,
            linked_by=user_identity(linker.username) if linker else "",
            expires_at=verification.expires_at,
        )


@router.post(
    "/{instance_id}/verification",
    response_model=VerificationOut,
    responses={204: {"description": "nothing queued within wait_seconds"}},
)
async def fetch_verification(
    instance_id: str, body: VerificationPoll, runtime: RuntimeDep
) -> VerificationOut | Response:
    """The agent's poll (a long poll up to `wait_seconds`) for a queued verification."""
    _instance(instance_id)
    deadline = time.monotonic() + body.wait_seconds
    while True:
        found = await run_in_threadpool(_fetch, runtime, instance_id, body.announce_token)
        if found is not None:
            return found
        if time.monotonic() >= deadline:
            return Response(status_code=status.HTTP_204_NO_CONTENT)
        await asyncio.sleep(min(POLL_CHECK_SECONDS, max(deadline - time.monotonic(), 0)))


@router.post(
    "/{instance_id}/complete", response_model=Enrolment, status_code=status.HTTP_201_CREATED
)
def complete(
    instance_id: str, body: LinkComplete, runtime: RuntimeDep, session: SessionDep
) -> Enrolment:
    """The agent's proof matched: its CSR becomes a device certificate and bound tokens."""
    return discovery.complete(
        session,
        runtime,
        instance_id=_instance(instance_id),
        token=body.announce_token,
        verification_id=body.verification_id,
        csr_pem=body.csr_pem,
        now=runtime.clock(),
    )


@router.post("/{instance_id}/refuse", response_model=LinkEnded)
def refuse(
    instance_id: str, body: LinkRefuse, runtime: RuntimeDep, session: SessionDep
) -> LinkEnded:
    """The agent's proof did not match: discovery for this start ends."""
    discovery.refuse(
        session,
        runtime.settings,
        instance_id=_instance(instance_id),
        token=body.announce_token,
        verification_id=body.verification_id,
        reason=body.reason,
        now=runtime.clock(),
    )
    return LinkEnded(reason=body.reason)
