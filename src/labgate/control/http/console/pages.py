"""Rendering console pages: Jinja2 with autoescape on, a strict policy on every page, and one
route class that turns domain errors into pages (the API's routes turn them into JSON).

Every page is served with `PAGE_POLICY`: scripts, styles and fetches from this origin only, forms
posting to this origin only, never framed. No template holds an inline script, inline style or
event-handler attribute (a test reads every template), so nothing needs `unsafe-inline`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Coroutine, Mapping
from datetime import datetime, timedelta
from typing import Any, TypeVar
from urllib.parse import quote

import jinja2
from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel, ValidationError

from labgate.control.errors import ControlError, InvalidInput, PasswordChangeRequired
from labgate.control.http.console.gate import CSRF_FIELD, LoginNeeded
from labgate.control.http.errors import status_of
from labgate.control.trail import READER_ROLES

_Model = TypeVar("_Model", bound=BaseModel)
PAGE_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
LOGIN_PATH = "/console/login"
PASSWORD_PATH = "/console/password"  # noqa: S105 (a path)
# (key, path, label, the roles it is shown to; None: everyone)
NAV = (
    ("dashboard", "/console", "Dashboard", None),
    ("instruments", "/console/instruments", "Instruments", None),
    ("people", "/console/people", "People", ("admin",)),
    ("devices", "/console/devices", "Devices", None),
    ("certificates", "/console/certificates", "Certificates", None),
    ("audit", "/console/audit", "Audit trail", READER_ROLES),
    ("account", "/console/account", "My account", None),
)


def when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC") if value is not None else "never"


def ago(value: datetime | None, now: datetime) -> str:
    """`3 min ago`, `2 h ago`, `5 days ago`; `never` for None."""
    if value is None:
        return "never"
    seconds = (now - value).total_seconds()
    if seconds < 60:
        return "just now"
    if seconds < 3600:
        return f"{int(seconds // 60)} min ago"
    if seconds < 48 * 3600:
        return f"{int(seconds // 3600)} h ago"
    return f"{int(seconds // 86400)} days ago"


def days_left(value: datetime | None, now: datetime) -> str:
    if value is None:
        return "none"
    left = value - now
    if left <= timedelta(0):
        return "ended"
    if left < timedelta(days=1):
        return f"{int(left.total_seconds() // 3600)} h"
    return f"{left.days} days"


@functools.cache
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("labgate.control.http", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["when"] = when
    env.globals["ago"] = ago
    env.globals["days_left"] = days_left
    env.globals["nav"] = NAV
    env.globals["csrf_field"] = CSRF_FIELD
    return env


def page(
    request: Request,
    template: str,
    *,
    status: int = 200,
    headers: Mapping[str, str] | None = None,
    **context: Any,
) -> HTMLResponse:
    visitor = getattr(request.state, "visitor", None)
    shown = {"notice": None, "here": None, **context}
    html = environment().get_template(template).render(visitor=visitor, **shown)
    given = {
        "Content-Security-Policy": PAGE_POLICY,
        # The browser then sends this origin in `Origin` with the page's forms (with
        # `no-referrer` it would send `null`); no other site is ever told where one came from.
        "Referrer-Policy": "same-origin",
        **(headers or {}),
    }
    return HTMLResponse(html, status_code=status, headers=given)


def see_other(path: str) -> RedirectResponse:
    return RedirectResponse(path, status_code=303)


def login_redirect(request: Request) -> RedirectResponse:
    wanted = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return see_other(f"{LOGIN_PATH}?next={quote(wanted, safe='')}")


class ConsoleRoute(APIRoute):
    """A console route: no session sends a page view to the login page, a session that may only
    change its password to that form, and a domain error becomes a page with its status."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def guarded(request: Request) -> Response:
            try:
                return await handler(request)
            except LoginNeeded:
                if request.method in ("GET", "HEAD"):
                    return login_redirect(request)
                return page(request, "console/refused.html", status=401, message=_ended())
            except PasswordChangeRequired:
                return see_other(PASSWORD_PATH)
            except RequestValidationError as error:  # a query value no page takes
                return page(request, "console/refused.html", status=422, message=_problems(error))
            except ControlError as error:
                return page(
                    request, "console/refused.html", status=status_of(error), message=str(error)
                )

        return guarded


def _problems(error: RequestValidationError) -> str:
    found = []
    for item in error.errors()[:5]:
        where = ".".join(str(part) for part in item.get("loc", ()) if part != "query")
        found.append(f"{where or 'request'}: {item.get('msg', 'invalid')}")
    return "; ".join(found) or "the request is invalid"


def _ended() -> str:
    return "Your console session has ended (logged out, timed out or disabled). Log in again."


# What a redirect after a successful form may announce: fixed texts, named in the query, so that
# nothing a link carries is ever shown as a message.
NOTICES = {
    "password-changed": "Your password is changed. Every other session of yours has ended.",
    "grant-added": "The grant is added; gateways have it with their next bundle.",
    "grant-changed": "The grant's level is changed; gateways have it with their next bundle.",
    "grant-removed": "The grant is removed; gateways drop it with their next bundle.",
    "certificate-revoked": "The certificate is revoked; gateways refuse it from their next bundle.",
    "device-revoked": "The device is revoked, with its tokens and certificates.",
    "code-approved": "Approved: the device finishes linking by itself.",
    "code-denied": "Denied: the device will not be linked.",
}


def notice(key: str | None) -> str | None:
    return NOTICES.get(key or "")


def parsed(model: type[_Model], fields: Mapping[str, object]) -> _Model:
    """A form's fields checked by the API's own request model (the same rules as the API)."""
    try:
        return model.model_validate(fields)
    except ValidationError as error:
        problems = []
        for item in error.errors()[:5]:
            where = ".".join(str(part) for part in item.get("loc", ())) or "form"
            problems.append(f"{where}: {item.get('msg', 'invalid')}")
        raise InvalidInput("; ".join(problems)) from None
