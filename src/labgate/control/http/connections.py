"""Connections to the control server: a cap per source address, and deadlines for slow clients.

uvicorn bounds the size of a request's headers (`h11_max_incomplete_event_size`) and the idle
time between requests (`timeout_keep_alive`), but nothing bounds the time a client may take to
send them: a connection that trickles a header line every few seconds, or that never finishes
its TLS handshake, is held for ever (slowloris). uvicorn also hands the protocol a connection
only once TLS is up, so a cap per address applied there would come too late.

So this protocol takes the connection at TCP accept, before TLS:
1. The source (the peer address; an IPv6 peer counts as its /64) may hold at most
   `per_address` connections; one more is aborted at once, before any TLS work is spent on it.
2. It installs the TLS layer itself (the loop's own TLS protocol class, as the gateway does),
   then hands the TLS transport to uvicorn's h11 protocol, with the verified client
   certificate in the request state.
3. From accept to the end of the first request's headers: `header_seconds` (handshake
   included); for each later request on the connection, from its first byte to the end of its
   headers, the same. Then `body_seconds` for the whole body. A client over either deadline is
   cut off (aborted: a slow client gets no graceful TLS shutdown to stall on either).
Between requests uvicorn's keep-alive timeout applies as before.

Each accepted connection costs a dictionary update and two timers; `bench/server.py` compares
it with uvicorn terminating TLS itself.
"""

from __future__ import annotations

import asyncio
import functools
import ssl
from dataclasses import dataclass
from typing import Any, ClassVar

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from labgate.control.http.dependencies import PEER_CERTIFICATE
from labgate.control.throttling import source_of
from labgate.posture.mode import SecureConfig


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectionLimits:
    """Deadlines (seconds) and the per-address cap; the settings choose them."""

    header_seconds: float = 10.0
    body_seconds: float = 30.0
    per_address: int = 64
    # [secure] fw: sources outside its client_networks are aborted at accept (None: any source).
    secure: SecureConfig | None = None

    def __post_init__(self) -> None:
        if self.header_seconds <= 0 or self.body_seconds <= 0 or self.per_address < 1:
            raise ValueError(
                f"connection limits must be positive, got header {self.header_seconds} s, "
                f"body {self.body_seconds} s, {self.per_address} per address"
            )


class AddressSlots:
    """How many connections each source holds now (one event loop: no lock needed)."""

    def __init__(self, per_address: int) -> None:
        self.per_address = per_address
        self.held: dict[str, int] = {}

    def acquire(self, source: str) -> bool:
        count = self.held.get(source, 0)
        if count >= self.per_address:
            return False
        self.held[source] = count + 1
        return True

    def release(self, source: str) -> None:
        count = self.held.get(source, 0) - 1
        if count > 0:
            self.held[source] = count
        else:
            self.held.pop(source, None)


def guarded_protocol(
    context: ssl.SSLContext | None, limits: ConnectionLimits
) -> type[GuardedProtocol]:
    """A protocol class for one server: its TLS context, its limits, its own slot table."""
    return type(
        "GuardedProtocol",
        (GuardedProtocol,),
        {"tls": context, "limits": limits, "slots": AddressSlots(limits.per_address)},
    )


class GuardedProtocol(H11Protocol):
    """uvicorn's h11 protocol behind the cap and the deadlines above (see the module doc).

    One object sees the connection twice: `connection_made` with the raw TCP transport at
    accept (phase "new"), where it installs the TLS layer with itself as the application
    protocol, and again with the TLS transport once the handshake is done (phase "handshake").
    """

    tls: ClassVar[ssl.SSLContext | None] = None
    limits: ClassVar[ConnectionLimits] = ConnectionLimits()
    slots: ClassVar[AddressSlots]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._phase = "new"  # new -> refused | handshake -> open -> closed
        self._source = ""
        self._raw: asyncio.Transport | None = None
        self._header_timer: asyncio.TimerHandle | None = None
        self._body_timer: asyncio.TimerHandle | None = None

    # Accept, cap, handshake.

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        if self._phase == "handshake":
            self._open(transport)  # the TLS layer calls this once the handshake is done
            return
        peer = transport.get_extra_info("peername")
        secure = self.limits.secure
        if secure is not None and not secure.admits_source(str(peer[0]) if peer else ""):
            self._phase = "refused"  # [secure] fw: before any TLS byte, and before a slot
            transport.abort()
            return
        self._source = source_of(str(peer[0])) if peer else "unknown"
        if not self.slots.acquire(self._source):
            self._phase = "refused"
            transport.abort()
            return
        self._phase = "handshake"
        self._raw = transport
        self._header_timer = self.loop.call_later(self.limits.header_seconds, self._header_late)
        if self.tls is None:
            self._open(transport)
            return
        # The TLS layer becomes the connection's protocol before the loop has read a byte
        # (uvloop reads right after connection_made, so pausing and upgrading later loses the
        # ClientHello); it calls connection_made again with the TLS transport.
        waiter = self.loop.create_future()
        waiter.add_done_callback(self._handshake_ended)
        layer = _tls_protocol_class(self.loop)(
            self.loop,
            self,
            self.tls,
            waiter,
            server_side=True,
            ssl_handshake_timeout=self.limits.header_seconds,
        )
        transport.set_protocol(layer)
        layer.connection_made(transport)

    def _handshake_ended(self, waiter: asyncio.Future[None]) -> None:
        if waiter.cancelled() or waiter.exception() is not None:
            if self._raw is not None:
                self._raw.abort()
            self._finish()

    def _open(self, transport: asyncio.Transport) -> None:
        if self._phase != "handshake":
            transport.abort()
            return
        self._phase = "open"
        ssl_object = transport.get_extra_info("ssl_object")
        certificate = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
        if certificate:
            self.app_state = {**self.app_state, PEER_CERTIFICATE: certificate}
        super().connection_made(transport)

    # Data and deadlines.

    def data_received(self, data: bytes) -> None:
        if self._phase != "open":
            return
        super().data_received(data)
        self._watch()

    def _watch(self) -> None:
        """Arm or clear the deadlines for where the client is in its request."""
        state = self.conn.their_state
        if state is h11.IDLE:
            if self._header_timer is None:
                self._header_timer = self.loop.call_later(
                    self.limits.header_seconds, self._header_late
                )
            return
        self._header_timer = _cancel(self._header_timer)
        if state is h11.SEND_BODY:
            if self._body_timer is None:
                self._body_timer = self.loop.call_later(self.limits.body_seconds, self._body_late)
            return
        self._body_timer = _cancel(self._body_timer)

    def _header_late(self) -> None:
        self._header_timer = None
        if self._phase == "handshake":
            if self._raw is not None:
                self._raw.abort()
            self._finish()
        elif self._phase == "open" and self.conn.their_state is self.conn.our_state is h11.IDLE:
            self.transport.abort()  # headers unfinished, and no response of ours on its way

    def _body_late(self) -> None:
        self._body_timer = None
        if self._phase == "open" and self.conn.their_state is h11.SEND_BODY:
            self.transport.abort()

    # Teardown: the slot is given back exactly once, whichever way the connection ends.

    def connection_lost(self, exc: Exception | None) -> None:
        phase = self._phase
        self._finish()
        if phase == "open":
            super().connection_lost(exc)

    def eof_received(self) -> None:
        if self._phase == "open":
            super().eof_received()

    def _finish(self) -> None:
        if self._phase in ("handshake", "open"):
            self.slots.release(self._source)
        if self._phase != "refused":
            self._phase = "closed"
        self._header_timer = _cancel(self._header_timer)
        self._body_timer = _cancel(self._body_timer)


def _cancel(timer: asyncio.TimerHandle | None) -> asyncio.TimerHandle | None:
    """Cancel `timer` if there is one; None, to store in its place."""
    if timer is not None:
        timer.cancel()
    return None


def _tls_protocol_class(loop: asyncio.AbstractEventLoop) -> Any:
    return _tls_protocol_class_for(uvloop=type(loop).__module__.startswith("uvloop"))


@functools.cache  # asked on every accepted connection; the import runs once
def _tls_protocol_class_for(*, uvloop: bool) -> Any:
    # As labgate.gateway.accept does: not public API in either library, but the class each
    # loop's own create_server(ssl=...) builds, with the same constructor.
    if uvloop:
        from uvloop.loop import SSLProtocol as UvloopSSLProtocol  # type: ignore[attr-defined]

        return UvloopSSLProtocol
    from asyncio.sslproto import SSLProtocol

    return SSLProtocol
