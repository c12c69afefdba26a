"""Accepting client connections and upgrading them to TLS without losing their first bytes.

`asyncio.start_server` starts reading at once, so a ClientHello that arrives before the handler
calls `start_tls` lands in the stream's buffer and the handshake waits forever (the real client,
quick to speak, hits this every time). Here the accepted transport is paused in `connection_made`,
before any byte can be read, and the TLS layer is put on top of it from there. Upgrading the
connection ourselves (rather than giving the listener an SSL context) is what lets the gateway
see, count and log every handshake failure with its reason.

This needs the standard asyncio loop: uvloop starts reading right after `connection_made`
whatever the protocol asked, so the ClientHello is read (and lost) before the upgrade.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable, Coroutine
from typing import Any, cast

_STREAM_LIMIT = 256 * 1024

OnConnection = Callable[[asyncio.Transport], Coroutine[Any, Any, None]]


class _Paused(asyncio.Protocol):
    """Holds a freshly accepted connection still until the handler has upgraded it."""

    def __init__(self, on_connection: OnConnection, tasks: set[asyncio.Task[None]]) -> None:
        self._on_connection = on_connection
        self._tasks = tasks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        stream = cast(asyncio.Transport, transport)  # uvloop's transports are not subclasses
        stream.pause_reading()
        task = asyncio.get_running_loop().create_task(self._on_connection(stream))
        self._tasks.add(task)  # kept, so the task is neither collected nor forgotten at shutdown
        task.add_done_callback(self._tasks.discard)


async def listen(
    host: str, port: int, on_connection: OnConnection, tasks: set[asyncio.Task[None]]
) -> asyncio.Server:
    loop = asyncio.get_running_loop()
    return await loop.create_server(lambda: _Paused(on_connection, tasks), host, port, backlog=1024)


async def upgrade(
    transport: asyncio.Transport, context: ssl.SSLContext, *, timeout: float
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Run the server side of the TLS handshake; raise ssl.SSLError, TimeoutError or OSError."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=_STREAM_LIMIT, loop=loop)
    protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
    tls = await loop.start_tls(
        transport, protocol, context, server_side=True, ssl_handshake_timeout=timeout
    )
    if tls is None:  # the connection closed during the handshake
        raise ConnectionResetError("connection closed during the TLS handshake")
    protocol.connection_made(tls)
    return reader, asyncio.StreamWriter(tls, protocol, reader, loop)
