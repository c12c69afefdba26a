"""Accepting client connections: the TLS layer is the connection's protocol from its first byte.

Each accepted connection gets, in `connection_made` and so before the loop has read a byte, a
protocol of ours that reads the ClientHello, then a TLS protocol object of its own: the class the
running loop's own `create_server(ssl=...)` uses, which under uvloop is uvloop's compiled one (the
gateway's largest per-byte and per-record saving) and under the standard loop asyncio's. Every
byte read goes to one of the two; none is lost between them, which is what went wrong when a plain
connection was paused and upgraded later (uvloop reads right after `connection_made`, whatever
the protocol asked).

Building the TLS protocol here, rather than passing `ssl=` to the listener, keeps the handshake's
outcome in the gateway's hands: the listener would drop a failed handshake silently, while our
waiter says why it failed, so every failure is counted and logged with its reason. The connection
limit is judged before any TLS work, and the handshake timeout is the protocol's own.

The ClientHello reader (see `clienthello`) keeps the server name the client sent, which OpenSSL
does not report for a resumed TLS 1.2 session, under a short deadline of its own, then hands the
bytes it read to the TLS protocol as the transport would.
"""

from __future__ import annotations

import asyncio
import functools
import ssl
from collections.abc import Callable
from typing import Any, Protocol, cast

from labgate.gateway.clienthello import Hello, Incomplete, read_hello

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


class Shed(Exception):
    """The gateway dropped this unfinished handshake to make way for a newer one."""


class HelloTimeout(TimeoutError):
    """No whole ClientHello arrived in time."""


class Handshake:
    """The server side of one TLS handshake, started on a just-accepted connection.

    First the ClientHello is read here (within `hello_timeout`; see `clienthello`): its server
    name is kept (`server_name`), and until it is whole the connection is `in_hello`, the first
    to be shed. Then the loop's TLS protocol takes the connection over, is handed the bytes read
    so far, and runs the handshake under its own timeout: what is left of `timeout`, which
    bounds the whole.
    """

    def __init__(
        self,
        transport: asyncio.Transport,
        context: ssl.SSLContext,
        *,
        timeout: float,
        hello_timeout: float,
    ) -> None:
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._transport = transport
        self._context = context
        self._timeout = timeout
        self._waiter: asyncio.Future[None] = loop.create_future()
        self._tls: Any = None
        self._shed: str | None = None
        self._hello = b""  # what was read of the ClientHello
        self.client = ClientSide(loop)
        self.server_name: str | None = None  # the name in the ClientHello, lower case
        self.in_hello = True
        self._started = loop.time()
        self._hello_timer = loop.call_later(
            min(hello_timeout, timeout), self._hello_late, hello_timeout
        )
        transport.set_protocol(_HelloReader(self))

    async def done(self) -> ClientSide:
        """Wait for the handshake; raise ssl.SSLError (refused), TimeoutError (too slow; a
        `HelloTimeout` for the ClientHello), `Shed`, or OSError (connection lost)."""
        try:
            await self._waiter
        except ConnectionAbortedError as exc:
            if self._shed is not None:
                raise Shed(self._shed) from exc
            # Both TLS protocols abort a handshake that outlives its timeout with this error.
            if "taking longer" in str(exc):
                raise TimeoutError(f"no TLS handshake within {self._timeout:g} s") from exc
            raise
        except (OSError, ssl.SSLError) as exc:
            if self._shed is not None:
                raise Shed(self._shed) from exc
            raise
        if self._shed is not None:  # shed between the handshake's end and this task's turn
            raise Shed(self._shed)
        return self.client

    def shed(self, reason: str) -> None:
        """Drop the connection now (`done` raises `Shed(reason)`)."""
        self._shed = reason
        self._hello_timer.cancel()
        if self._tls is None and not self._waiter.done():
            self._waiter.set_exception(Shed(reason))
        self._transport.abort()  # a TLS protocol wakes the waiter itself as the connection goes

    # ---------------------------------------------------------------- the ClientHello

    def _hello_data(self, data: bytes) -> None:
        if self._hello:  # a ClientHello in several reads: rare
            data = self._hello + data
        reading = read_hello(data)
        self._hello = data
        if isinstance(reading, Incomplete):
            return
        if isinstance(reading, Hello):
            self.server_name = reading.server_name
        self._start_tls()  # not a ClientHello: OpenSSL refuses it, with its own words

    def _hello_lost(self, exc: Exception | None) -> None:
        if self._tls is None and not self._waiter.done():
            self._hello_timer.cancel()
            self._waiter.set_exception(exc or ConnectionResetError("closed before its ClientHello"))

    def _hello_late(self, seconds: float) -> None:
        if self._tls is None and not self._waiter.done():
            late: TimeoutError = HelloTimeout(f"no TLS ClientHello within {seconds:g} s")
            if seconds >= self._timeout:
                late = TimeoutError(f"no TLS handshake within {self._timeout:g} s")
            self._waiter.set_exception(late)
            self._transport.abort()

    def _start_tls(self) -> None:
        self.in_hello = False
        self._hello_timer.cancel()
        self._tls = _tls_protocol_class(self._loop)(
            self._loop,
            self.client,
            self._context,
            self._waiter,
            server_side=True,
            # What is left of the whole handshake's time (a little, if the hello took it all).
            ssl_handshake_timeout=max(self._timeout - (self._loop.time() - self._started), 0.1),
        )
        self._transport.set_protocol(self._tls)
        self._tls.connection_made(self._transport)
        held, self._hello = self._hello, b""
        _feed(self._tls, held)


class _HelloReader(asyncio.Protocol):
    """The connection's protocol until its ClientHello is whole (`Handshake`)."""

    def __init__(self, handshake: Handshake) -> None:
        self._handshake = handshake

    def data_received(self, data: bytes) -> None:
        self._handshake._hello_data(data)

    def eof_received(self) -> bool:
        self._handshake._hello_lost(None)
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._handshake._hello_lost(exc)


def _feed(protocol: Any, data: bytes) -> None:
    """Hand bytes already read to a buffered protocol (both TLS protocols are), as the
    transport itself would."""
    view = memoryview(data)
    while view:
        buffer = protocol.get_buffer(len(view))
        count = min(len(buffer), len(view))
        if count == 0:
            return
        buffer[:count] = view[:count]
        protocol.buffer_updated(count)
        view = view[count:]


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
