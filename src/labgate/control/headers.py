"""The outermost layer of every response: security headers, the request counter, and the last
word on an unexpected exception (a JSON 500 with the headers, never a trace).

Plain ASGI rather than BaseHTTPMiddleware: it adds nothing but a few header tuples per response,
which keeps the per-request cost close to zero. Starlette's own error middleware sits outside
the user middleware, so a 500 it produced would lack these headers; catching here prevents that.
"""

from __future__ import annotations

import json
import logging

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from labgate.control.metrics import Metrics

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
log = logging.getLogger("labgate.control")
INTERNAL_ERROR = json.dumps(
    {"code": "internal_error", "message": "the server could not handle this request"}
).encode()
_OURS = {name for name, _ in SECURITY_HEADERS}
# Metric labels come from this set only, so a client cannot grow the label space.
_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})


class SecurityHeaders:
    def __init__(self, app: ASGIApp, *, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method = scope["method"] if scope["method"] in _METHODS else "OTHER"

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                kept = [(k, v) for k, v in message.get("headers", []) if k.lower() not in _OURS]
                message["headers"] = kept + list(SECURITY_HEADERS)
                self.metrics.requests.labels(method, str(message["status"])).inc()
            await send(message)

        started = False

        async def tracked(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send_with_headers(message)

        try:
            await self.app(scope, receive, tracked)
        except Exception as error:
            # The trace goes to the server log only; the client learns nothing about the inside.
            log.exception("unhandled %s on %s %s", type(error).__name__, method, scope["path"])
            if started:
                raise
            await send_with_headers(
                {"type": "http.response.start", "status": 500,
                 "headers": [(b"content-type", b"application/json")]}
            )  # fmt: skip
            await send_with_headers({"type": "http.response.body", "body": INTERNAL_ERROR})
