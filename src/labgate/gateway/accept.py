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
import functools
import ssl
from collections.abc import Callable
from typing import Any, Protocol, cast

# What a client may send before its session starts (the real one sends one short command).
_HOLD = 256 * 1024

OnAccept = Callable[[asyncio.Transport], None]


class _Accepting(asyncio.Protocol):
    """Hands a freshly accepted connection to the gateway, which installs the TLS layer at once."""

    def __init__(self, on_accept: OnAccept) -> None:
        self._on_accept = on_accept

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._on_accept(cast(asyncio.Transport, transport))  # uvloop's are not subclasses


async def listen(
    host: str, port: int, on_accept: OnAccept, *, start_serving: bool = True
) -> asyncio.Server:
    loop = asyncio.get_running_loop()
    return await loop.create_server(
        lambda: _Accepting(on_accept), host, port, backlog=1024, start_serving=start_serving
    )


class ClientSide(asyncio.Protocol):
    """The client's connection above the TLS layer, from its first decrypted byte.

    Until a session takes it over (`attach`), what the client sends is held here (reading pauses
    once `_HOLD` bytes wait) and `read()` serves whoever answers a refused client. From then on
    every byte and every flow-control signal goes straight to the session's callbacks: no task,
    no stream buffer and no wake-up stand between the TLS layer and the session filter.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.transport: asyncio.Transport | None = None
        self._held = bytearray()
        self._eof = False
        self._waiter: asyncio.Future[None] | None = None
        self._closed: asyncio.Future[None] = loop.create_future()
        self._sink: ClientSink | None = None
        self._drain: asyncio.Future[None] | None = None
        self._writing_paused = False

    # ---------------------------------------------------------------- protocol callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if self._sink is not None:
            self._sink.client_data(data)
            return
        self._held += data
        self._wake()
        if len(self._held) > _HOLD and self.transport is not None:
            self.transport.pause_reading()

    def eof_received(self) -> bool:
        self._eof = True
        if self._sink is not None:
            self._sink.client_closed(None)
        self._wake()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._eof = True
        if not self._closed.done():
            self._closed.set_result(None)
        if self._sink is not None:
            self._sink.client_closed(exc)
        self._wake()
        if self._drain is not None and not self._drain.done():
            self._drain.set_result(None)

    def pause_writing(self) -> None:
        self._writing_paused = True
        if self._sink is not None:
            self._sink.client_backed_up(True)

    def resume_writing(self) -> None:
        self._writing_paused = False
        if self._sink is not None:
            self._sink.client_backed_up(False)
        if self._drain is not None and not self._drain.done():
            self._drain.set_result(None)

    # ---------------------------------------------------------------- the session's side

    def attach(self, sink: ClientSink) -> None:
        """Hand every later byte to `sink`; what arrived before is handed over first."""
        self._sink = sink
        held, self._held = bytes(self._held), bytearray()
        if held:
            sink.client_data(held)
        if self._eof:
            sink.client_closed(None)
        elif self.transport is not None:
            self.transport.resume_reading()

    def detach(self) -> None:
        """Nothing more reaches the session (it has ended); later bytes are dropped."""
        self._sink = _DISCARD

    # ---------------------------------------------------------------- before a session

    async def read(self) -> bytes:
        """What the client sent so far (waiting for something); b"" at end of stream."""
        while not self._held and not self._eof:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        held, self._held = bytes(self._held), bytearray()
        if self.transport is not None and not self._eof:
            self.transport.resume_reading()
        return held

    def write(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data)

    async def drain(self) -> None:
        if self._writing_paused and not self._closed.done():
            self._drain = asyncio.get_running_loop().create_future()
            await self._drain

    def close(self) -> None:
        """Close after what was written has gone out."""
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        """Cut the connection at once, whatever was still to be sent."""
        if self.transport is not None:
            self.transport.abort()

    async def wait_closed(self) -> None:
        await asyncio.shield(self._closed)

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)


class ClientSink(Protocol):
    """What a session does with its client's connection (`ClientSide.attach`)."""

    def client_data(self, data: bytes) -> None: ...

    def client_closed(self, exc: Exception | None) -> None: ...

    def client_backed_up(self, backed_up: bool) -> None: ...


class _Discard:
    def client_data(self, data: bytes) -> None:
        pass

    def client_closed(self, exc: Exception | None) -> None:
        pass

    def client_backed_up(self, backed_up: bool) -> None:
        pass


_DISCARD = _Discard()


class Handshake:
    """The server side of one TLS handshake, started on a just-accepted connection."""

    def __init__(self, transport: asyncio.Transport, context: ssl.SSLContext, *, timeout: float):
        loop = asyncio.get_running_loop()
        self._waiter: asyncio.Future[None] = loop.create_future()
        self.client = ClientSide(loop)
        self._tls: Any = _tls_protocol_class(loop)(
            loop,
            self.client,
            context,
            self._waiter,
            server_side=True,
            ssl_handshake_timeout=timeout,
        )
        transport.set_protocol(self._tls)
        self._tls.connection_made(transport)

    async def done(self) -> ClientSide:
        """Wait for the handshake; raise ssl.SSLError (refused), TimeoutError (too slow) or
        OSError (connection lost)."""
        try:
            await self._waiter
        except ConnectionAbortedError as exc:
            # Both TLS protocols abort a handshake that outlives its timeout with this error.
            if "taking longer" in str(exc):
                raise TimeoutError(str(exc)) from exc
            raise
        return self.client


def _tls_protocol_class(loop: asyncio.AbstractEventLoop) -> Any:
    return _tls_protocol_class_for(uvloop=type(loop).__module__.startswith("uvloop"))


@functools.cache  # asked on every accepted connection; the import runs once
def _tls_protocol_class_for(*, uvloop: bool) -> Any:
    # Not public API in either library, but the class each loop's create_server(ssl=...) builds,
    # with the same constructor; uvloop's transports recognise their own and read into it
    # directly.
    if uvloop:
        from uvloop.loop import SSLProtocol as UvloopSSLProtocol  # type: ignore[attr-defined]

        return UvloopSSLProtocol
    from asyncio.sslproto import SSLProtocol

    return SSLProtocol
