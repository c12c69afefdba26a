"""Logging in to the console, out of it, and the password change (forced after a one-time
password, or by choice from "My account")."""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response

from labgate.control import audit, console, sessions
from labgate.control.errors import AccountLocked, AuthenticationFailed, PasswordRejected, Throttled
from labgate.control.http.console.gate import (
    CSRF_FIELD,
    LOGIN_COOKIE,
    LOGIN_COOKIE_SECONDS,
    SESSION_COOKIE,
    AnyVisitor,
    PostedByAny,
    RequestRefused,
    clear_cookie,
    login_token_matches,
    new_login_token,
    read_form,
    set_cookie,
    timeouts,
)
from labgate.control.http.console.pages import PASSWORD_PATH, ConsoleRoute, page, see_other
from labgate.control.http.dependencies import RuntimeDep, SessionDep
from labgate.control.http.routers.auth import peer_address
from labgate.control.runtime import Runtime
from labgate.control.tables import User

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)

HOME = "/console"
# Where a login may lead: a console path (with a plain query), never another site.
_NEXT = re.compile(r"^/console(/[A-Za-z0-9/_.-]*)?(\?[A-Za-z0-9=&_%.+-]*)?$")


def safe_next(value: str | None) -> str:
    return value if value and _NEXT.fullmatch(value) and "//" not in value else HOME


def _login_page(
    request: Request, *, next_path: str, message: str | None = None, status: int = 200
) -> HTMLResponse:
    token = new_login_token()
    response = page(
        request,
        "console/login.html",
        status=status,
        login_token=token,
        next_path=next_path,
        message=message,
    )
    set_cookie(response, LOGIN_COOKIE, token, max_age=LOGIN_COOKIE_SECONDS)
    return response


@router.get("/console/login", response_class=HTMLResponse)
def login_form(
    request: Request, next: Annotated[str | None, Query(max_length=512)] = None
) -> Response:
    return _login_page(request, next_path=safe_next(next))


@router.post("/console/login", response_class=HTMLResponse)
async def login(request: Request, runtime: RuntimeDep, session: SessionDep) -> Response:
    fields = await read_form(request)
    next_path = safe_next(fields.get("next"))
    if not login_token_matches(request, fields.get(CSRF_FIELD)):
        raise RequestRefused(
            "refused: the login form's security token is missing or out of date; reload the page"
        )
    username, password = fields.get("username", ""), fields.get("password", "")
    if not username or not password or len(username) > 256 or len(password) > 1024:
        return _login_page(request, next_path=next_path, message="Give a user name and password.")
    try:
        user, restricted = sessions.check_login(
            session,
            runtime,
            username=username,
            password=password,
            address=peer_address(request),
            via="console",
        )
    except (AuthenticationFailed, AccountLocked, Throttled) as error:
        return _login_page(request, next_path=next_path, message=str(error), status=401)
    console.purge_expired(session, now=runtime.clock())
    response = see_other(PASSWORD_PATH if restricted else next_path)
    _begin(response, session, runtime, user, restricted)
    clear_cookie(response, LOGIN_COOKIE)
    return response


def _begin(
    response: Response, session: SessionDep, runtime: Runtime, user: User, restricted: bool
) -> None:
    opened = console.open_session(
        session,
        user,
        restricted=restricted,
        timeouts=timeouts(runtime.settings),
        now=runtime.clock(),
    )
    set_cookie(response, SESSION_COOKIE, opened.token, max_age=None)


@router.post("/console/logout")
def logout(
    request: Request, runtime: RuntimeDep, session: SessionDep, visitor: AnyVisitor, _: PostedByAny
) -> Response:
    console.end(session, request.cookies.get(SESSION_COOKIE))
    audit.record(
        session,
        at=runtime.clock(),
        kind="logout",
        subject=visitor.principal.identity,
        via="console",
    )
    response = see_other("/console/login")
    clear_cookie(response, SESSION_COOKIE)
    return response


@router.get("/console/password", response_class=HTMLResponse)
def password_form(request: Request, visitor: AnyVisitor) -> Response:
    return page(request, "console/password.html", forced=visitor.principal.restricted, message=None)


@router.post("/console/password", response_class=HTMLResponse)
def change_password(
    request: Request,
    runtime: RuntimeDep,
    session: SessionDep,
    visitor: AnyVisitor,
    fields: PostedByAny,
) -> Response:
    old, new = fields.get("old_password", ""), fields.get("new_password", "")
    forced = visitor.principal.restricted
    if new != fields.get("repeat_password", ""):
        return page(
            request,
            "console/password.html",
            status=422,
            forced=forced,
            message="The new password and its repetition differ.",
        )
    try:
        user = sessions.replace_password(
            session, runtime, visitor.principal, old_password=old, new_password=new
        )
    except (AuthenticationFailed, PasswordRejected, Throttled) as error:
        status = 401
        if isinstance(error, PasswordRejected):
            session.rollback()  # nothing was changed; nothing is kept
            status = 422
        return page(
            request, "console/password.html", status=status, forced=forced, message=str(error)
        )
    # Every session of this person ended with the change; this browser gets a new one.
    response = see_other("/console/account?notice=password-changed")
    _begin(response, session, runtime, user, False)
    return response
