"""Security headers on every response, and the request counter, as one plain ASGI middleware.

Plain ASGI rather than BaseHTTPMiddleware: it adds nothing but a few header tuples per response,
which keeps the per-request cost close to zero.
"""

from __future__ import annotations

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

        await self.app(scope, receive, send_with_headers)
