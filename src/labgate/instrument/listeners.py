"""The simulator's three doors: plain TCP, TLS 1.2/1.3, and legacy SSLv3/TLS 1.0.

Every door hands the same thing to the session code: an asyncio stream pair, the listener's name
and the peer's address. Plain and TLS are asyncio servers. Legacy TLS needs `tlslite-ng` (OpenSSL 3
cannot speak SSLv3), which is blocking: each legacy connection gets a bridge thread pair that
shuttles bytes between the tlslite connection and one end of a socket pair, and the session reads
the other end through asyncio like any other connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from tlslite.api import HandshakeSettings, TLSConnection, X509CertChain, parsePEMKey

from labgate.instrument.certificate import CertificateFiles

log = logging.getLogger("labgate.instrument")

Handler = Callable[
    [asyncio.StreamReader, asyncio.StreamWriter, str, str], Coroutine[Any, Any, None]
]

# A client that cannot finish a handshake in this long is not coming (qslib allows itself 10 s).
HANDSHAKE_SECONDS = 10.0
BRIDGE_CHUNK = 64 * 1024
ACCEPT_BACKOFF_SECONDS = 0.1


# Arrival times kept for whoever checks a client's connection rate (a scanner's, in tests).
ARRIVALS_KEPT = 10_000

# How long a legacy bridge waits for its session to close after the client has gone: the session
# reads the end at once, so this bounds only a session that is stuck.
SESSION_END_SECONDS = 5.0


@dataclass(slots=True)
class ConnectionGate:
    """Counts connections across all listeners, from the TCP accept on (a TLS connection still
    in its handshake holds a slot, as on the instrument); refuses past `limit`; remembers the
    peak, the total and when each arrived (`time.monotonic()`)."""

    limit: int
    active: int = 0
    peak: int = 0
    refused: int = 0
    accepted: int = 0
    arrivals: deque[float] = field(default_factory=lambda: deque(maxlen=ARRIVALS_KEPT))

    def admit(self) -> bool:
        self.accepted += 1
        self.arrivals.append(time.monotonic())
        if self.active >= self.limit:
            self.refused += 1
            return False
        self.active += 1
        self.peak = max(self.peak, self.active)
        return True

    def release(self) -> None:
        self.active -= 1


def tls_context(files: CertificateFiles) -> ssl.SSLContext:
    """Server context for the modern listener: TLS 1.2 and 1.3 only."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(files.cert, files.key)
    return context


def peer_of(writer: asyncio.StreamWriter) -> str:
    address = writer.get_extra_info("peername")
    if isinstance(address, tuple) and len(address) >= 2:
        return f"{address[0]}:{address[1]}"
    return str(address)


async def open_stream_listener(host: str, port: int, name: str, handler: Handler) -> asyncio.Server:
    """A TCP listener; a TLS one too: its handler calls `handshake` once it has counted the
    connection, so that connections which never finish a handshake are counted as well."""

    async def accepted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # Cancelled at shutdown only; asyncio would log a cancelled connection task as an error.
        with contextlib.suppress(asyncio.CancelledError):
            await handler(reader, writer, name, peer_of(writer))

    return await asyncio.start_server(accepted, host, port)


async def handshake(writer: asyncio.StreamWriter, context: ssl.SSLContext) -> bool:
    """The server side of a TLS handshake on an accepted connection; False if it failed."""
    try:
        await writer.start_tls(context, ssl_handshake_timeout=HANDSHAKE_SECONDS)
    except (ssl.SSLError, OSError, TimeoutError, asyncio.IncompleteReadError) as exc:
        log.info("tls handshake failed: %s", type(exc).__name__)
        return False
    return True


class LegacyListener:
    """SSLv3 and TLS 1.0 through tlslite-ng, like firmware 1.3.4 and later."""

    def __init__(self, files: CertificateFiles, handler: Handler) -> None:
        self._chain = X509CertChain()
        self._chain.parsePemList(files.cert.read_text())
        self._key = parsePEMKey(files.key.read_text(), private=True)
        self._handler = handler
        self._socket: socket.socket | None = None
        self._accepting: asyncio.Task[None] | None = None
        # Touched by bridge threads and by the loop: guarded.
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self, host: str, port: int) -> tuple[str, int]:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        listening = socket.socket(family, socket.SOCK_STREAM)
        listening.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listening.bind((host, port))
        listening.listen(128)
        listening.setblocking(False)
        self._socket = listening
        self._accepting = asyncio.create_task(self._accept_loop(listening))
        bound = listening.getsockname()
        return bound[0], bound[1]

    async def _accept_loop(self, listening: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                client, address = await loop.sock_accept(listening)
                await self._adopt(client, f"{address[0]}:{address[1]}")
            except OSError as exc:  # out of descriptors, say: keep serving the others
                log.warning("legacy listener: %s", exc)
                await asyncio.sleep(ACCEPT_BACKOFF_SECONDS)

    async def _adopt(self, client: socket.socket, peer: str) -> None:
        client.setblocking(True)
        near, far = socket.socketpair()
        # `far` belongs to the asyncio stream from here on; the bridge owns `client` and `near`.
        with self._open_lock:
            self._open.update((client, near))
        threading.Thread(
            target=self._bridge, args=(client, near), name="labgate-legacy", daemon=True
        ).start()
        reader, writer = await asyncio.open_connection(sock=far)
        task = asyncio.create_task(self._handler(reader, writer, "legacy", peer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _bridge(self, client: socket.socket, near: socket.socket) -> None:
        """Handshake, then copy bytes both ways until either side ends (runs on its own thread)."""
        connection = TLSConnection(client)
        client.settimeout(HANDSHAKE_SECONDS)
        try:
            settings = HandshakeSettings()
            settings.minVersion = (3, 0)
            settings.maxVersion = (3, 1)
            connection.handshakeServer(
                certChain=self._chain, privateKey=self._key, settings=settings
            )
            client.settimeout(None)
        except Exception as exc:  # any handshake failure ends this connection only
            log.info("legacy handshake failed: %s", type(exc).__name__)
            self._end_session(near)
            self._close(client, near)
            return
        outward = threading.Thread(
            target=self._copy_out, args=(connection, near, client), daemon=True
        )
        outward.start()
        try:
            while True:
                data = connection.read()
                if not data:
                    break
                near.sendall(data)
        except Exception as exc:  # the peer vanished or sent garbage: end this connection
            log.debug("legacy connection ended: %s", type(exc).__name__)
        finally:
            # The session ends first, then the client's socket (closed by _copy_out once the
            # session has closed its side): the connection is counted as open for as long as
            # the client can see it open, as on the instrument.
            with contextlib.suppress(OSError):
                near.shutdown(socket.SHUT_WR)

    def _end_session(self, near: socket.socket) -> None:
        """Tell the session its client is gone and wait (bounded) until it has closed."""
        with contextlib.suppress(OSError):
            near.shutdown(socket.SHUT_WR)
            near.settimeout(SESSION_END_SECONDS)
            while near.recv(BRIDGE_CHUNK):
                pass

    def _copy_out(self, connection: Any, near: socket.socket, client: socket.socket) -> None:
        try:
            while data := near.recv(BRIDGE_CHUNK):
                connection.write(data)
            with contextlib.suppress(Exception):
                connection.close()
        except Exception as exc:  # the client or the session went away
            log.debug("legacy connection ended: %s", type(exc).__name__)
        finally:
            self._close(client, near)

    def _close(self, *sockets: socket.socket) -> None:
        for each in sockets:
            with contextlib.suppress(OSError):
                each.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                each.close()
            with self._open_lock:
                self._open.discard(each)

    async def aclose(self) -> None:
        if self._accepting is not None:
            self._accepting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._accepting
        if self._socket is not None:
            self._socket.close()
        with self._open_lock:
            still_open = list(self._open)
        for each in still_open:
            self._close(each)
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
