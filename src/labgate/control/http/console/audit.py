"""The audit trail (administrators and auditors, `trail.READER_ROLES`): the whole site's trail
searched server-side with the API's filters (time range, identity, instrument, command, decision,
source address, gateway, event), a page at a time; export of exactly the filtered set as CSV or
JSON lines; each instrument session as a transcript; where each gateway's chain stands. Every view
and export is itself recorded, by `labgate.control.trail`, as through the API.
"""

from __future__ import annotations

from typing import Annotated, Literal
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, Response, StreamingResponse

from labgate.control import audit, gatewaylogs, trail
from labgate.control.console import Visitor
from labgate.control.http.console.gate import Person
from labgate.control.http.console.pages import ConsoleRoute, page
from labgate.control.http.dependencies import RuntimeDep, SessionDep
from labgate.control.http.routers import trail as trail_routes

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)
FILTERS = ("since", "until", "identity", "instrument", "command", "decision", "source",
           "gateway", "event")  # fmt: skip
PAGE_SIZE = 50
Text = Annotated[str | None, Query(max_length=200)]


async def reader(visitor: Person) -> Visitor:
    visitor.principal.require_role(*trail.READER_ROLES)
    return visitor


Reader = Annotated[Visitor, Depends(reader)]


def _zoned(text: str | None) -> str | None:
    """A browser's `datetime-local` value has no zone: the form says UTC, so it is UTC."""
    if text and len(text) > 10 and not any(mark in text[10:] for mark in "Zz+-"):
        return text + "Z"
    return text


def chosen_filters(
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
    """The API's filters (`labgate.control.http.routers.trail.filters`), times read as UTC."""
    return trail_routes.filters(
        since=_zoned(since), until=_zoned(until), identity=identity, instrument=instrument,
        command=command, decision=decision, source=source, gateway=gateway, event=event,
    )  # fmt: skip


Filters = Annotated[trail.TrailFilter, Depends(chosen_filters)]


def _form_values(request: Request) -> dict[str, str]:
    return {name: request.query_params.get(name, "") for name in FILTERS}


@router.get("/console/audit", response_class=HTMLResponse)
def audit_page(
    request: Request,
    runtime: RuntimeDep,
    session: SessionDep,
    visitor: Reader,
    filters: Filters,
    after: Annotated[str | None, Query(max_length=200)] = None,
) -> Response:
    found = trail.search(
        session,
        filters,
        reader=visitor.principal.identity,
        reader_role=visitor.principal.role,
        now=runtime.clock(),
        after=after,
        limit=PAGE_SIZE,
    )
    given = {k: v for k, v in _form_values(request).items() if v}
    return page(
        request,
        "console/audit.html",
        here="audit",
        found=found,
        values=_form_values(request),
        query=urlencode(given),
        next_query=urlencode({**given, "after": found.next_cursor}) if found.next_cursor else None,
        paged=after is not None,
        decisions=trail.DECISIONS,
        heads=gatewaylogs.heads(session),
    )


@router.get("/console/audit/export", response_class=StreamingResponse)
def export(
    runtime: RuntimeDep,
    visitor: Reader,
    filters: Filters,
    format: Literal["csv", "jsonl"] = "csv",
) -> StreamingResponse:
    """As `GET /api/v1/audit/export`: exactly the filtered set, oldest first, streamed."""
    return trail_routes.export(visitor.principal, runtime, filters, format)


@router.get("/console/audit/sessions/{key}", response_class=HTMLResponse)
def transcript(
    key: str,
    request: Request,
    runtime: RuntimeDep,
    session: SessionDep,
    visitor: Reader,
) -> Response:
    shown = trail.transcript(
        session,
        key,
        reader=visitor.principal.identity,
        reader_role=visitor.principal.role,
        now=runtime.clock(),
    )
    return page(request, "console/transcript.html", here="audit", transcript=shown)


@router.get("/console/audit/server", response_class=HTMLResponse)
def server_events(
    request: Request,
    runtime: RuntimeDep,
    session: SessionDep,
    visitor: Reader,
    kind: Text = None,
    subject: Text = None,
    before: Annotated[int | None, Query(ge=1, le=2**62)] = None,
) -> Response:
    """The control server's own events (logins and refusals, accounts, grants, certificates,
    devices, reads of the trail), newest first; viewing them is recorded as well."""
    shown = audit.recent(
        session, kind=kind or None, subject=subject or None, before_id=before, limit=PAGE_SIZE
    )
    audit.record(
        session,
        at=runtime.clock(),
        kind="audit.viewed",
        subject=visitor.principal.identity,
        filters={k: v for k, v in (("kind", kind), ("subject", subject)) if v},
    )
    given = {k: v for k, v in (("kind", kind), ("subject", subject)) if v}
    older = urlencode({**given, "before": shown[-1].id}) if len(shown) == PAGE_SIZE else None
    return page(
        request,
        "console/server_events.html",
        here="audit",
        events=shown,
        kind=kind or "",
        subject=subject or "",
        query=urlencode(given),
        older=older,
        paged=before is not None,
    )
