"""The outermost layer of every exchange: a bound on request bodies, security headers on every
response, the request counter, and the last word on an unexpected exception (a JSON 500 with the
headers, never a trace).

It also refuses what no route can use and no database can store, before any route sees it: a
path or query string holding NUL or another control character (PostgreSQL cannot store NUL in
text; nothing legitimate sends one). The log line for an unexpected exception names the route
template, never the path the client typed.

Plain ASGI rather than BaseHTTPMiddleware: it adds a few header tuples per response and nothing
else, which keeps the per-request cost close to zero. Starlette's own error middleware sits
outside user middleware, so a 500 it produced would lack these headers; catching here prevents
that.
"""

from __future__ import annotations

import json
import logging
import re
from urllib.parse import unquote_to_bytes

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from labgate.control.metrics import Metrics

# The largest legitimate body is a CSR (at most 16 KiB of PEM in JSON); nothing needs more.
MAX_BODY_BYTES = 64 * 1024
# Except a gateway's batch of audit lines (`POST /api/v1/gateways/{name}/audit`): up to 1000
# records of a few hundred bytes each, with room for a long one; the gateway sends at most this.
AUDIT_BATCH_BYTES = 1024 * 1024
_AUDIT_BATCH_PATH = re.compile(r"/api/v1/gateways/[^/]+/audit")

SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (
        b"content-security-policy",
        b"default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    ),
    (b"strict-transport-security", b"max-age=63072000; includeSubDomains"),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-store"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
)
_OURS = {name for name, _ in SECURITY_HEADERS}
# Headers a route may set for itself (a page's own CSP, opener policy, and the console's
# referrer policy: `no-referrer` would make a browser send `Origin: null` with its own forms);
# the rest are fixed.
_PAGE_MAY_SET = frozenset(
    {b"content-security-policy", b"cross-origin-opener-policy", b"referrer-policy"}
)
# Metric labels come from this set only, so a client cannot grow the label space.
_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})

log = logging.getLogger("labgate.control")


def _error(code: str, message: str) -> bytes:
    return json.dumps({"code": code, "message": message}).encode()


INTERNAL_ERROR = _error("internal_error", "the server could not handle this request")
TOO_LARGE = _error("too_large", f"request body is larger than {MAX_BODY_BYTES} bytes")
NO_SUCH_PATH = _error("not_found", "no such path (it holds a control character)")
BAD_QUERY = _error("invalid_request", "the query string holds a control character")


class BodyTooLarge(Exception):
    """The client sent more than MAX_BODY_BYTES."""


class Edge:
    def __init__(self, app: ASGIApp, *, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method = scope["method"] if scope["method"] in _METHODS else "OTHER"
        started = False
        refused = False  # answered 413 mid-body: whatever the application sends later is dropped

        async def send_with_headers(message: Message) -> None:
            nonlocal started
            if refused:
                return
            if message["type"] == "http.response.start":
                started = True
                given = message.get("headers", [])
                # A page may set its own policy (the linking page); every other header is ours.
                own = {k.lower(): v for k, v in given if k.lower() in _PAGE_MAY_SET}
                kept = [(k, v) for k, v in given if k.lower() not in _OURS]
                ours = [(k, own.get(k, v)) for k, v in SECURITY_HEADERS]
                message["headers"] = kept + ours
                self.metrics.requests.labels(method, str(message["status"])).inc()
            await send(message)

        async def answer(status: int, body: bytes) -> None:
            headers = [(b"content-type", b"application/json")]
            await send_with_headers(
                {"type": "http.response.start", "status": status, "headers": headers}
            )
            await send_with_headers({"type": "http.response.body", "body": body})

        if _has_control_character(scope["path"]):
            await answer(404, NO_SUCH_PATH)
            return
        if any(byte < 0x20 or byte == 0x7F for byte in unquote_to_bytes(scope["query_string"])):
            await answer(422, BAD_QUERY)
            return
        limit = MAX_BODY_BYTES
        if scope["method"] == "POST" and _AUDIT_BATCH_PATH.fullmatch(scope["path"]):
            limit = AUDIT_BATCH_BYTES
        if _declared_length(scope) > limit:
            await answer(413, TOO_LARGE)
            return
        received = 0

        async def bounded_receive() -> Message:
            nonlocal received, refused
            message = await receive()
            received += len(message.get("body", b""))
            if received > limit and not started:
                # Answer now: the framework turns any error raised while reading the body into
                # its own 400, which `refused` then keeps from reaching the client.
                await answer(413, TOO_LARGE)
                refused = True
                raise BodyTooLarge
            return message

        try:
            await self.app(scope, bounded_receive, send_with_headers)
        except BodyTooLarge:
            return
        except Exception as error:
            # The trace goes to the server log only; the client learns nothing about the inside.
            route = getattr(scope.get("route"), "path", "an unmatched path")
            log.exception("unhandled %s on %s %s", type(error).__name__, method, route)
            if started:
                raise
            await answer(500, INTERNAL_ERROR)


# Unicode categories Cc (C0, DEL, C1), Zl and Zp: what no path has a use for.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def _has_control_character(path: str) -> bool:
    return _CONTROL.search(path) is not None


def _declared_length(scope: Scope) -> int:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return MAX_BODY_BYTES + 1  # unreadable: treat as too large
    return 0
