"""Connections to the instrument: plain TCP, TLS, or SSLv3/TLS 1.0 through tlslite-ng, each ending
with the instrument's greeting read and the gateway logged in, in the words of the instrument's
line protocol (see `protocol`).

The instrument's certificate is self-signed, so no chain can vouch for it: the gateway compares its
public key with the configured SPKI pin instead, before sending a byte. OpenSSL 3 cannot speak
SSLv3, so that kind goes through tlslite-ng, which is blocking: a handshake runs on a worker thread,
and afterwards two threads copy bytes between the tlslite connection and one end of a socket pair
whose other end asyncio reads like any socket. The rest of the gateway never knows the difference.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from labgate.gateway.config import FramingLimits, InstrumentConfig, UpstreamScheme
from labgate.gateway.errors import UpstreamError
from labgate.gateway.pins import check_pin
from labgate.gateway.protocol import LineProtocol, MessageDecoder, Piece, protocol_for
from labgate.scpi.access import AccessLevel
from labgate.scpi.errors import FramingError

_READ_SIZE = 256 * 1024
# A reply still incomplete at this size, inside a tag (a file's base64 body, say), is relayed to
# the client as it arrives instead of being held whole.
STREAM_OVER = 64 * 1024


class UpstreamSink(Protocol):
    """What a session does with its instrument connection (`InstrumentStream.attach`)."""

    def upstream_pieces(self, pieces: Sequence[Piece]) -> None: ...

    def upstream_closed(self, why: BaseException | None) -> None: ...  # None: a clean end

    def upstream_backed_up(self, backed_up: bool) -> None: ...


class InstrumentStream(asyncio.streams.FlowControlMixin, asyncio.Protocol):
    """The instrument's side of the connection: bytes go straight from the transport into the
    framing decoder.

    During the login, and while a connection waits warm between sessions, complete messages wait
    here for `messages()`, and reading pauses while they wait untaken. While a session is attached
    (`attach`), they go to it in the callback that received them, long ones in pieces as they
    arrive, and the session's client holds reading back when it reads slowly. No StreamReader in
    between: it would copy every byte twice more, which for a FILE:READ? of many megabytes was a
    tenth of the gateway's CPU.
    """

    def __init__(self, decoder: MessageDecoder) -> None:
        super().__init__()
        self.decoder = decoder
        self.transport: asyncio.Transport | None = None
        self._messages: deque[bytes] = deque()
        self._ended: BaseException | bool = False  # True at end of stream, or what broke it
        self._waiter: asyncio.Future[None] | None = None
        self._closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._sink: UpstreamSink | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            if self._sink is not None:
                # A session's reply of many megabytes goes on to the client as it arrives.
                pieces = self.decoder.feed_pieces(data, stream_over=STREAM_OVER)
                if pieces:
                    self._sink.upstream_pieces(pieces)
                return
            messages = self.decoder.feed(data)
        except FramingError as exc:
            assert self.transport is not None
            self.transport.pause_reading()  # nothing more of this stream can be understood
            self._end(exc)
            return
        if messages:
            self._messages.extend(messages)
            self._wake()
            assert self.transport is not None
            self.transport.pause_reading()

    def eof_received(self) -> bool:
        self._end(True)
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self._end(exc if exc is not None else True)
        if not self._closed.done():
            self._closed.set_result(None)

    def pause_writing(self) -> None:
        super().pause_writing()
        if self._sink is not None:
            self._sink.upstream_backed_up(True)

    def resume_writing(self) -> None:
        super().resume_writing()
        if self._sink is not None:
            self._sink.upstream_backed_up(False)

    def attach(self, sink: UpstreamSink) -> None:
        """Hand every later message straight to `sink` (a session), in the callback that
        received it; messages already waiting are handed over first."""
        self._sink = sink
        if self._messages:
            waiting = [(message, True, True) for message in self._messages]
            self._messages.clear()
            sink.upstream_pieces(waiting)
        if self._ended is not False:
            sink.upstream_closed(None if self._ended is True else self._ended)
        elif self.transport is not None:
            self.transport.resume_reading()

    def detach(self) -> None:
        """Back to waiting for `messages()` (the session has ended)."""
        self._sink = None
        if self.transport is not None and self._ended is False:
            self.transport.resume_reading()  # a client's back-pressure no longer applies

    def _get_close_waiter(self, stream: asyncio.StreamWriter) -> asyncio.Future[None]:
        # What StreamWriter.wait_closed() awaits (StreamReaderProtocol's hook of the same name).
        return self._closed

    async def messages(self) -> list[bytes]:
        """Every complete message received so far (waiting for one); [] at end of stream.
        Raises FramingError or the OSError that broke the connection."""
        while not self._messages:
            if self._ended is True:
                return []
            if self._ended:
                raise self._ended
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        taken = list(self._messages)
        self._messages.clear()
        if self.transport is not None and not self._ended:
            self.transport.resume_reading()
        return taken

    @property
    def quiet(self) -> bool:
        """Nothing received and untaken, not even part of a message, and the stream still open:
        what a warm connection must look like before it is lent again."""
        return (
            not self._messages
            and self._ended is False
            and not self.decoder.pending
            and not self.decoder.streaming
        )

    def put_back(self, messages: list[bytes]) -> None:
        """Messages taken but not used (read past the login's replies): they come out first."""
        self._messages.extendleft(reversed(messages))

    def _end(self, why: BaseException | bool) -> None:
        if self._ended is not False:
            return
        self._ended = why
        self._wake()
        if self._sink is not None:
            self._sink.upstream_closed(None if why is True else why)  # type: ignore[arg-type]

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)


@dataclass(slots=True, kw_only=True)
class UpstreamConnection:
    """A logged-in connection to the instrument. `next_ident` is the first ident still unused."""

    stream: InstrumentStream
    writer: asyncio.StreamWriter
    greeting: bytes  # the instrument's greeting line, with its b"\n", to relay to the client
    protocol: LineProtocol  # the line protocol it speaks
    next_ident: int = 0

    @property
    def session_number(self) -> str | None:
        """The instrument's number for this connection (read from its greeting)."""
        return self.protocol.session_number(self.greeting)

    async def close(self, *, quit_timeout: float = 2.0) -> None:
        """Say QUIT and wait for the instrument to hang up, so its connection count has dropped
        before the slot is given to the next session."""
        try:
            if self.writer.transport.is_closing():
                return  # the instrument hung up already (a warm connection, say)
            self.writer.write(self.protocol.goodbye(self.next_ident))
            async with asyncio.timeout(quit_timeout):
                while await self.stream.messages():
                    pass
        except (OSError, TimeoutError, ssl.SSLError, FramingError):
            pass  # the instrument is gone or slow: closing our side is all that is left
        finally:
            self.writer.close()
            try:
                async with asyncio.timeout(quit_timeout):
                    await self.writer.wait_closed()
            except (OSError, TimeoutError, ssl.SSLError):
                pass


async def connect(
    instrument: InstrumentConfig,
    *,
    limits: FramingLimits,
    protocol: LineProtocol | None = None,
) -> UpstreamConnection:
    """Connect, check the pin, read the greeting and log in, all within `upstream_timeout`.
    `protocol`: the line protocol to speak (by default the one the instrument speaks)."""
    protocol = protocol or protocol_for(instrument)
    target = instrument.upstream.endpoint
    try:
        async with asyncio.timeout(instrument.upstream_timeout):
            stream, writer = await _open(instrument, protocol.decoder(limits))
            try:
                return await protocol.login(instrument, stream, writer)
            except BaseException:
                writer.close()
                raise
    except TimeoutError as exc:
        raise UpstreamError(
            f"instrument {instrument.name!r} at {target}: no greeting and login within "
            f"{instrument.upstream_timeout:g} s"
        ) from exc
    except (OSError, ssl.SSLError) as exc:
        raise UpstreamError(f"instrument {instrument.name!r} at {target}: {exc}") from exc


async def _open(
    instrument: InstrumentConfig, decoder: MessageDecoder
) -> tuple[InstrumentStream, asyncio.StreamWriter]:
    host, port = instrument.upstream.endpoint.host, instrument.upstream.endpoint.port
    scheme = instrument.upstream.scheme
    loop = asyncio.get_running_loop()
    stream = InstrumentStream(decoder)
    if scheme is UpstreamScheme.PLAIN:
        transport, _ = await loop.create_connection(lambda: stream, host, port)
    elif scheme is UpstreamScheme.TLS:
        assert instrument.upstream_pin is not None  # the config refuses tls without a pin
        transport, _ = await loop.create_connection(
            lambda: stream, host, port, ssl=pin_only_context(), server_hostname=None
        )
        der = transport.get_extra_info("ssl_object").getpeercert(binary_form=True)
        try:
            check_pin(der, expected=instrument.upstream_pin, instrument=instrument.name)
        except UpstreamError:
            transport.close()
            raise
    else:
        inner = await asyncio.to_thread(_legacy_handshake, instrument)
        transport, _ = await loop.create_connection(lambda: stream, sock=inner)
    return stream, asyncio.StreamWriter(transport, stream, None, loop)


def pin_only_context() -> ssl.SSLContext:
    # Chain and host name are not checked on purpose: a self-signed instrument certificate has no
    # chain, and its name is whatever the factory put there. The pin check after the handshake is
    # what identifies the instrument.
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def _legacy_handshake(instrument: InstrumentConfig) -> socket.socket:
    """Blocking: SSLv3/TLS 1.0 handshake with tlslite-ng, pin check, then the bridge threads.
    Returns the asyncio end of the socket pair."""
    endpoint = instrument.upstream.endpoint
    raw = socket.create_connection((endpoint.host, endpoint.port), instrument.upstream_timeout)
    try:
        connection, der = legacy_client_handshake(raw)
        assert instrument.upstream_pin is not None
        check_pin(der, expected=instrument.upstream_pin, instrument=instrument.name)
    except BaseException:
        raw.close()
        raise
    raw.settimeout(None)
    inner, outer = socket.socketpair()
    threading.Thread(target=_copy_from_tls, args=(connection, outer), daemon=True).start()
    threading.Thread(target=_copy_to_tls, args=(outer, connection), daemon=True).start()
    return inner


def legacy_client_handshake(raw: socket.socket) -> tuple[Any, bytes | None]:
    """Blocking: a tlslite-ng client handshake on `raw` that admits SSLv3 (what firmware 1.3.4
    and later speaks) up to TLS 1.2. Returns the TLS connection and the leaf certificate's DER
    (None when the server sent none); the caller checks the pin. No chain or name is checked:
    the instrument's certificate is self-signed, and its key is what identifies it."""
    from tlslite import HandshakeSettings, TLSConnection

    connection = TLSConnection(raw)
    settings = HandshakeSettings()
    settings.minVersion = (3, 0)
    settings.maxVersion = (3, 3)
    connection.handshakeClientCert(settings=settings)
    chain = connection.session.serverCertChain
    der = bytes(chain.x509List[0].bytes) if chain and chain.x509List else None
    return connection, der


def _copy_from_tls(connection: object, pair: socket.socket) -> None:
    try:
        while data := connection.read():  # type: ignore[attr-defined]
            pair.sendall(data)
    except Exception:  # noqa: S110 - any failure of either side ends the stream, as EOF does
        pass
    finally:
        with contextlib.suppress(OSError):
            pair.shutdown(socket.SHUT_WR)


def _copy_to_tls(pair: socket.socket, connection: object) -> None:
    try:
        while data := pair.recv(_READ_SIZE):
            connection.write(data)  # type: ignore[attr-defined]
    except Exception:  # noqa: S110 - as above
        pass
    finally:
        with contextlib.suppress(Exception):  # the peer may be gone already
            connection.close()  # type: ignore[attr-defined]
        pair.close()


async def highest_level(
    upstream: UpstreamConnection, instrument: InstrumentConfig, *, up_to: AccessLevel
) -> AccessLevel:
    """The highest access level, at most `up_to`, that the gateway's login (the instrument's
    password, or none) reaches on the instrument, as its line protocol asks it.

    A grant above it cannot be served (the instrument would refuse the session's level), so the
    gateway warns about such grants and caps sessions to it. Raises UpstreamError when the
    instrument fails."""
    return await upstream.protocol.highest_level(upstream, instrument, up_to)
