"""Who may pass into the console: the session cookie, the CSRF token and the Origin check.

- The session cookie is `__Host-labgate-session`: `Secure`, `HttpOnly`, `SameSite=Strict`,
  `Path=/`, no `Domain`; it holds a random token whose session lives in the database
  (`labgate.control.console`), with idle and absolute timeouts.
- Every POST must come from this origin (`Origin` equal to `https://` + the `Host` it was sent
  to, and `Sec-Fetch-Site`, when sent, `same-origin`) and carry the session's synchronizer token
  (compared in constant time). The login form, before any session exists, carries a token that
  must equal its own `__Host-labgate-login` cookie.
- Roles are the API's: the same `Principal`, the same `require_role`, the same domain functions.
"""

from __future__ import annotations

import hmac
import secrets
from typing import Annotated
from urllib.parse import parse_qsl

from fastapi import Depends, Request
from starlette.responses import Response

from labgate.control import console
from labgate.control.console import Timeouts, Visitor
from labgate.control.errors import AuthenticationFailed, Forbidden, PasswordChangeRequired
from labgate.control.http.dependencies import RuntimeDep, SessionDep
from labgate.control.settings import ControlSettings
from labgate.control.transactions import keep_on_error

SESSION_COOKIE = "__Host-labgate-session"
LOGIN_COOKIE = "__Host-labgate-login"
CSRF_FIELD = "csrf"
CSRF_HEADER = "x-csrf-token"
FORM_TYPE = "application/x-www-form-urlencoded"
MAX_FIELDS = 32
LOGIN_COOKIE_SECONDS = 3600


class LoginNeeded(AuthenticationFailed):
    """No live console session: the browser is sent to the login page."""

    code = "login_needed"


class RequestRefused(Forbidden):
    """A POST from another origin, without its CSRF token, or not a form."""

    code = "request_refused"


def timeouts(settings: ControlSettings) -> Timeouts:
    return Timeouts.of(settings.console_idle_in_force, settings.console_session_seconds)


def set_cookie(response: Response, name: str, value: str, *, max_age: int | None) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path="/",
        secure=True,
        httponly=True,
        samesite="strict",
    )


def clear_cookie(response: Response, name: str) -> None:
    response.delete_cookie(name, path="/", secure=True, httponly=True, samesite="strict")


def new_login_token() -> str:
    return secrets.token_urlsafe(32)


def any_visitor(request: Request, runtime: RuntimeDep, session: SessionDep) -> Visitor:
    """The person behind the session cookie, including a session that may only change its
    password; otherwise LoginNeeded (an ended session's deletion is kept)."""
    found = console.visitor(
        session,
        request.cookies.get(SESSION_COOKIE),
        timeouts=timeouts(runtime.settings),
        now=runtime.clock(),
    )
    if found is None:
        keep_on_error(session)
        raise LoginNeeded("log in to use the console")
    request.state.visitor = found
    return found


AnyVisitor = Annotated[Visitor, Depends(any_visitor)]


async def full_visitor(visitor: AnyVisitor) -> Visitor:
    if visitor.principal.restricted:
        raise PasswordChangeRequired("change your one-time password first")
    return visitor


Person = Annotated[Visitor, Depends(full_visitor)]


async def admin_visitor(visitor: Person) -> Visitor:
    visitor.principal.require_role("admin")
    return visitor


AdminPerson = Annotated[Visitor, Depends(admin_visitor)]


def require_same_origin(request: Request, *, origin_required: bool = True) -> None:
    """Refuse a request another site's page made. Browsers send `Origin` with every POST; with
    a same-origin GET they may leave it out (the CSRF header then stands alone)."""
    origin = request.headers.get("origin")
    host = request.headers.get("host")
    if origin is None and not origin_required:
        pass
    elif origin is None or host is None or origin != f"https://{host}":
        raise RequestRefused("refused: this request did not come from a page of this console")
    fetch_site = request.headers.get("sec-fetch-site")
    if fetch_site is not None and fetch_site != "same-origin":
        raise RequestRefused("refused: this request did not come from a page of this console")


async def read_form(request: Request) -> dict[str, str]:
    """The posted form (URL-encoded), after the Origin check; each field given at most once."""
    require_same_origin(request)
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != FORM_TYPE:
        raise RequestRefused(f"refused: expected a form ({FORM_TYPE})")
    try:
        pairs = parse_qsl(
            (await request.body()).decode("utf-8"),
            keep_blank_values=True,
            max_num_fields=MAX_FIELDS,
        )
    except (UnicodeDecodeError, ValueError):
        raise RequestRefused("refused: the form could not be read") from None
    fields: dict[str, str] = {}
    for name, value in pairs:
        if name in fields:
            raise RequestRefused(f"refused: the form gives {name!r} more than once")
        fields[name] = value
    return fields


def require_csrf(visitor: Visitor, given: str | None) -> None:
    if not visitor.csrf_matches(given):
        raise RequestRefused(
            "refused: the form's security token is missing or out of date; reload the page"
        )


def login_token_matches(request: Request, given: str | None) -> bool:
    cookie = request.cookies.get(LOGIN_COOKIE)
    return (
        cookie is not None
        and given is not None
        and hmac.compare_digest(cookie.encode(), given.encode())
    )


async def posted(request: Request, visitor: Person) -> dict[str, str]:
    """A form posted by a full session, from this origin, with its CSRF token."""
    fields = await read_form(request)
    require_csrf(visitor, fields.get(CSRF_FIELD))
    return fields


Posted = Annotated[dict[str, str], Depends(posted)]


async def posted_by_any(request: Request, visitor: AnyVisitor) -> dict[str, str]:
    """As `posted`, also from a session that may only change its password."""
    fields = await read_form(request)
    require_csrf(visitor, fields.get(CSRF_FIELD))
    return fields


PostedByAny = Annotated[dict[str, str], Depends(posted_by_any)]


async def scripted(request: Request, visitor: Person) -> Visitor:
    """A JSON call from the console's own script: same origin, CSRF token in a header (which
    another site's page cannot set without a CORS preflight, and none is ever allowed)."""
    require_same_origin(request, origin_required=request.method not in ("GET", "HEAD"))
    require_csrf(visitor, request.headers.get(CSRF_HEADER))
    return visitor


Scripted = Annotated[Visitor, Depends(scripted)]
