"""The dashboard and "My account"."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response

from labgate.control import accounts, certificates, console, overview
from labgate.control.http.console.gate import Person
from labgate.control.http.console.pages import ConsoleRoute, notice, page
from labgate.control.http.dependencies import RuntimeDep, SessionDep

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)


@router.get("/console", response_class=HTMLResponse)
def dashboard(
    request: Request, runtime: RuntimeDep, session: SessionDep, visitor: Person
) -> Response:
    now = runtime.clock()
    facts = overview.overview(
        session,
        runtime.ca.inventory,
        visitor.principal,
        accounts.find_user(session, visitor.username),
        gateway_instruments=runtime.settings.gateway_instruments,
        now=now,
    )
    return page(request, "console/dashboard.html", here="dashboard", facts=facts, now=now)


@router.get("/console/account", response_class=HTMLResponse)
def account(
    request: Request,
    runtime: RuntimeDep,
    session: SessionDep,
    visitor: Person,
    notice_key: Annotated[str | None, Query(alias="notice", max_length=40)] = None,
) -> Response:
    now = runtime.clock()
    mine = certificates.list_certificates(
        session,
        runtime.ca.inventory,
        visitor.principal,
        identity=visitor.principal.identity,
        now=now,
    )
    return page(
        request,
        "console/account.html",
        here="account",
        certificates=sorted(mine, key=lambda r: r.not_after, reverse=True),
        sessions=console.open_count(session, visitor.principal.identity),
        notice=notice(notice_key),
        now=now,
    )
