"""The site audit trail over HTTP: search, export, session transcripts, gateways' heads.

Admins and auditors only (`trail.READER_ROLES`); every read is itself recorded (see the domain
module `labgate.control.trail`).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from labgate.control import gatewaylogs, trail
from labgate.control.http.dependencies import (
    AdminPrincipal,
    CurrentPrincipal,
    RuntimeDep,
    SessionDep,
)
from labgate.control.principals import Principal

router = APIRouter(tags=["audit"])

Text = Annotated[str | None, Query(max_length=200)]
Cursor = Annotated[str | None, Query(max_length=200)]
Limit = Annotated[int, Query(ge=1, le=trail.MAX_PAGE)]


async def reader(principal: CurrentPrincipal) -> Principal:
    principal.require_role(*trail.READER_ROLES)
    return principal


Reader = Annotated[Principal, Depends(reader)]


def filters(
    since: Text = None,
    until: Text = None,
    identity: Text = None,
    instrument: Text = None,
    command: Text = None,
    decision: Text = None,
    source: Text = None,
    gateway: Text = None,
    event: Text = None,
) -> trail.TrailFilter:
    """The filters of a search or an export; each given one must match."""
    return trail.TrailFilter.parse(
        since=since, until=until, identity=identity, instrument=instrument, command=command,
        decision=decision, source=source, gateway=gateway, event=event,
    )  # fmt: skip


Filters = Annotated[trail.TrailFilter, Depends(filters)]


@router.get("/api/v1/audit/records")
def records(
    principal: Reader,
    runtime: RuntimeDep,
    session: SessionDep,
    chosen: Filters,
    after: Cursor = None,
    limit: Limit = 50,
) -> dict[str, Any]:
    """The records that match, newest first; `next` is the cursor of the next (older) page."""
    page = trail.search(
        session, chosen, reader=principal.identity, reader_role=principal.role,
        now=runtime.clock(), after=after, limit=limit,
    )  # fmt: skip
    return {"records": [r.public() for r in page.records], "next": page.next_cursor}


@router.get("/api/v1/audit/export", response_class=StreamingResponse)
def export(
    principal: Reader,
    runtime: RuntimeDep,
    chosen: Filters,
    format: Literal["csv", "jsonl"] = "jsonl",
) -> StreamingResponse:
    """Exactly the records that match, oldest first, as CSV or JSON lines (streamed)."""
    chunks = trail.export(
        runtime.sessions, chosen, fmt=format, reader=principal.identity,
        reader_role=principal.role, now=runtime.clock(),
    )  # fmt: skip
    media = "text/csv; charset=utf-8" if format == "csv" else "application/x-ndjson"
    name = f"audit.{format}"
    return StreamingResponse(
        chunks, media_type=media, headers={"Content-Disposition": f'attachment; filename="{name}"'}
    )


@router.get("/api/v1/audit/sessions/{key}")
def session_transcript(
    key: str, principal: Reader, runtime: RuntimeDep, session: SessionDep
) -> dict[str, Any]:
    """One instrument session's records in order: connect, commands, replies, disconnect."""
    return trail.transcript(
        session, key, reader=principal.identity, reader_role=principal.role, now=runtime.clock()
    ).public()


@router.get("/api/v1/instruments/{name}/sessions")
def instrument_sessions(
    name: str,
    principal: Reader,
    runtime: RuntimeDep,
    session: SessionDep,
    after: Cursor = None,
    limit: Limit = 50,
) -> dict[str, Any]:
    """The instrument's sessions, newest first."""
    page = trail.instrument_sessions(
        session, name, reader=principal.identity, reader_role=principal.role,
        now=runtime.clock(), after=after, limit=limit,
    )  # fmt: skip
    return {"sessions": [s.public() for s in page.sessions], "next": page.next_cursor}


@router.get("/api/v1/audit/gateways")
def gateway_heads(principal: Reader, session: SessionDep) -> dict[str, Any]:
    """Where each gateway's chain stands here, and its last divergence (a refused batch)."""
    return {"gateways": [h.public() for h in gatewaylogs.heads(session)]}


class Release(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(min_length=1, max_length=500)


@router.post("/api/v1/audit/gateways/{name}/release")
def release_log(
    name: str, body: Release, principal: AdminPrincipal, runtime: RuntimeDep, session: SessionDep
) -> dict[str, Any]:
    """Admins: end the gateway's held log as it stands, so its next new log is taken (a log
    whose end was lost to a crash). Recorded with who and why."""
    return gatewaylogs.release(
        session, name, by=principal.identity, reason=body.reason, now=runtime.clock()
    ).public()
