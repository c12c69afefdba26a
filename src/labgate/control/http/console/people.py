"""People (administrators): create with a one-time password shown once, reset a password, and
disable, which is offboarding in one click, listing what it ended."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from labgate.control import accounts
from labgate.control.http.console.gate import AdminPerson, Posted
from labgate.control.http.console.pages import ConsoleRoute, page, parsed
from labgate.control.http.dependencies import RowId, RuntimeDep, SessionDep
from labgate.control.principals import ROLES, user_identity
from labgate.control.schemas import UserCreate

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)


def _list(request: Request, session: SessionDep, *, status: int = 200, **shown: Any) -> Response:
    return page(
        request,
        "console/people.html",
        status=status,
        here="people",
        people=accounts.list_users(session),
        roles=ROLES,
        **shown,
    )


@router.get("/console/people", response_class=HTMLResponse)
def people(request: Request, session: SessionDep, _: AdminPerson) -> Response:
    return _list(request, session)


@router.post("/console/people", response_class=HTMLResponse)
def create(
    request: Request, runtime: RuntimeDep, session: SessionDep, _: AdminPerson, fields: Posted
) -> Response:
    body = parsed(UserCreate, {"username": fields.get("username", ""), "role": fields.get("role")})
    user, password = accounts.create_user(
        session, runtime.rules, username=body.username, role=body.role, now=runtime.clock()
    )
    return _list(request, session, status=201, created=user, one_time_password=password)


@router.post("/console/people/{user_id}/password-reset", response_class=HTMLResponse)
def reset(
    user_id: RowId,
    request: Request,
    runtime: RuntimeDep,
    session: SessionDep,
    _: AdminPerson,
    __: Posted,
) -> Response:
    user, password = accounts.reset_password(session, runtime.rules, user_id, now=runtime.clock())
    return _list(request, session, reset=user, one_time_password=password)


@router.post("/console/people/{user_id}/disable", response_class=HTMLResponse)
def disable(
    user_id: RowId,
    request: Request,
    runtime: RuntimeDep,
    session: SessionDep,
    admin: AdminPerson,
    _: Posted,
) -> Response:
    """Offboarding in one transaction (`accounts.offboard`), as the API's `POST .../disable`."""
    done = accounts.offboard(
        session, runtime.ca.inventory, user_id, now=runtime.clock(), by=admin.principal.identity
    )
    return page(
        request,
        "console/offboarded.html",
        here="people",
        done=done,
        identity=user_identity(done.user.username),
    )
