"""Devices: the list (one page at a time, filtered and sorted in the database, last seen with
stale ones highlighted, certificate days left), revoking one, and linking new ones by local
discovery or by code.

The linking page's script talks to three small JSON routes here, authenticated by the console
session and its CSRF token (in a header) instead of a bearer token; each calls the API's own
route function, so the rules (roles, the caller's address, throttles) are the API's.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response

from labgate.control import accounts, devices, overview
from labgate.control.http.console.gate import Person, Posted, Scripted
from labgate.control.http.console.pages import ConsoleRoute, notice, page, parsed, see_other
from labgate.control.http.dependencies import RuntimeDep, SessionDep
from labgate.control.http.routers import device_codes, discovery
from labgate.control.schemas import (
    DeviceCodeApproval,
    DeviceCodeInfo,
    DiscoveryOut,
    LinkQueued,
    LinkRequest,
    LinkStatus,
)

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)
# The script's routes answer in JSON, errors included (the API's error handlers).
script_router = APIRouter(include_in_schema=False)
PAGE_SIZE = 50
# The linking page opens the device's local page as a popup that posts the secret back to it.
LINK_HEADERS = {"Cross-Origin-Opener-Policy": "same-origin-allow-popups"}


@router.get("/console/devices", response_class=HTMLResponse)
def device_list(
    request: Request,
    runtime: RuntimeDep,
    session: SessionDep,
    visitor: Person,
    show: devices.Shown = "all",
    sort: devices.SortKey = "name",
    desc: bool = False,
    page_number: Annotated[int, Query(alias="page", ge=1, le=100_000)] = 1,
    notice_key: Annotated[str | None, Query(alias="notice", max_length=40)] = None,
) -> Response:
    now = runtime.clock()
    listed = devices.device_page(
        session,
        visitor.principal,
        accounts.find_user(session, visitor.username),
        shown=show,
        sort=sort,
        descending=desc,
        offset=(page_number - 1) * PAGE_SIZE,
        limit=PAGE_SIZE,
        now=now,
    )
    return page(
        request,
        "console/devices.html",
        here="devices",
        listed=listed,
        open_jobs=overview.open_jobs(session, [row.device.id for row in listed.rows]),
        show=show,
        sort=sort,
        desc=desc,
        page_number=page_number,
        pages=max(1, -(-listed.total // PAGE_SIZE)),
        online_window=devices.ONLINE_WINDOW,
        notice=notice(notice_key),
        now=now,
    )


@router.post("/console/devices/{device_id}/revoke")
def revoke(
    device_id: str, runtime: RuntimeDep, session: SessionDep, visitor: Person, _: Posted
) -> Response:
    owner = accounts.find_user(session, visitor.username)
    device = devices.device_for(session, visitor.principal, owner, device_id, change=False)
    devices.revoke_device(
        session, runtime.ca.inventory, visitor.principal, device, now=runtime.clock()
    )
    return see_other("/console/devices?notice=device-revoked")


# -- linking -----------------------------------------------------------------------------------


@router.get("/console/link", response_class=HTMLResponse)
def link_page(
    request: Request,
    visitor: Person,
    user_code: Annotated[str, Query(max_length=32)] = "",
    notice_key: Annotated[str | None, Query(alias="notice", max_length=40)] = None,
) -> Response:
    return page(
        request,
        "console/link.html",
        headers=LINK_HEADERS,
        here="devices",
        user_code=user_code,
        entered=None,
        notice=notice(notice_key),
    )


@router.post("/console/link/code", response_class=HTMLResponse)
def show_code(
    request: Request, runtime: RuntimeDep, session: SessionDep, visitor: Person, fields: Posted
) -> Response:
    """Which device asked for this code (an entry, counted when wrong, as the API's)."""
    typed = parsed(DeviceCodeApproval, {"user_code": fields.get("user_code", "")}).user_code
    info: DeviceCodeInfo = device_codes.show_code(
        typed, request, runtime, session, visitor.principal
    )
    return page(
        request,
        "console/link.html",
        headers=LINK_HEADERS,
        here="devices",
        user_code=typed,
        entered=info,
    )


@router.post("/console/link/code/decide")
def decide_code(
    request: Request, runtime: RuntimeDep, session: SessionDep, visitor: Person, fields: Posted
) -> Response:
    body = parsed(
        DeviceCodeApproval,
        {"user_code": fields.get("user_code", ""), "approve": fields.get("approve") == "yes"},
    )
    decided = device_codes.approve_code(body, request, runtime, session, visitor.principal)
    outcome = "code-approved" if decided.status == "approved" else "code-denied"
    return see_other(f"/console/link?notice={outcome}")


@script_router.get("/console/link/discovery", response_model=DiscoveryOut)
def discoverable(
    request: Request, runtime: RuntimeDep, session: SessionDep, visitor: Scripted
) -> DiscoveryOut:
    return discovery.list_discoverable(request, runtime, session, visitor.principal)


@script_router.post("/console/link/{instance_id}", response_model=LinkQueued, status_code=202)
def request_link(
    instance_id: str,
    body: LinkRequest,
    request: Request,
    runtime: RuntimeDep,
    session: SessionDep,
    visitor: Scripted,
) -> LinkQueued:
    return discovery.request_link(instance_id, body, request, runtime, session, visitor.principal)


@script_router.get("/console/link/{instance_id}", response_model=LinkStatus)
def link_status(
    instance_id: str, runtime: RuntimeDep, session: SessionDep, visitor: Scripted
) -> LinkStatus:
    return discovery.link_status(instance_id, runtime, session, visitor.principal)
