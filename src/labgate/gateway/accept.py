"""Accepting client connections: the TLS layer is the connection's protocol from its first byte.

Each accepted connection gets, in `connection_made` and so before the loop has read a byte, a TLS
protocol object of its own: the class the running loop's own `create_server(ssl=...)` uses, which
under uvloop is uvloop's compiled one (the gateway's largest per-byte and per-record saving) and
under the standard loop asyncio's. Nothing can read the ClientHello before it, which is what went
wrong when a plain connection was paused and upgraded later (uvloop reads right after
`connection_made`, whatever the protocol asked).

Building the TLS protocol here, rather than passing `ssl=` to the listener, keeps the handshake's
outcome in the gateway's hands: the listener would drop a failed handshake silently, while our
waiter says why it failed, so every failure is counted and logged with its reason. The connection
limit is judged before any TLS work, and the handshake timeout is the protocol's own.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from typing import Any, cast

_STREAM_LIMIT = 256 * 1024

OnAccept = Callable[[asyncio.Transport], None]


class _Accepting(asyncio.Protocol):
    """Hands a freshly accepted connection to the gateway, which installs the TLS layer at once."""

    def __init__(self, on_accept: OnAccept) -> None:
        self._on_accept = on_accept

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._on_accept(cast(asyncio.Transport, transport))  # uvloop's are not subclasses


async def listen(host: str, port: int, on_accept: OnAccept) -> asyncio.Server:
    loop = asyncio.get_running_loop()
    return await loop.create_server(lambda: _Accepting(on_accept), host, port, backlog=1024)


class Handshake:
    """The server side of one TLS handshake, started on a just-accepted connection."""

    def __init__(self, transport: asyncio.Transport, context: ssl.SSLContext, *, timeout: float):
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._waiter: asyncio.Future[None] = loop.create_future()
        self._reader = asyncio.StreamReader(limit=_STREAM_LIMIT, loop=loop)
        self._app = asyncio.StreamReaderProtocol(self._reader, loop=loop)
        self._tls: Any = _tls_protocol_class(loop)(
            loop,
            self._app,
            context,
            self._waiter,
            server_side=True,
            ssl_handshake_timeout=timeout,
        )
        transport.set_protocol(self._tls)
        self._tls.connection_made(transport)

    async def done(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """Wait for the handshake; raise ssl.SSLError (refused), TimeoutError (too slow) or
        OSError (connection lost)."""
        try:
            await self._waiter
        except ConnectionAbortedError as exc:
            # Both TLS protocols abort a handshake that outlives its timeout with this error.
            if "taking longer" in str(exc):
                raise TimeoutError(str(exc)) from exc
            raise
        tls = self._tls._get_app_transport()
        return self._reader, asyncio.StreamWriter(tls, self._app, self._reader, self._loop)


def _tls_protocol_class(loop: asyncio.AbstractEventLoop) -> Any:
    # Not public API in either library, but the class each loop's create_server(ssl=...) builds,
    # with the same constructor; uvloop's transports recognise their own and read into it
    # directly.
    if type(loop).__module__.startswith("uvloop"):
        from uvloop.loop import SSLProtocol as UvloopSSLProtocol  # type: ignore[attr-defined]

        return UvloopSSLProtocol
    from asyncio.sslproto import SSLProtocol

    return SSLProtocol
