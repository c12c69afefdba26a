"""`labgate server run`: the application on uvicorn over HTTPS, announced by one JSON line.

TLS: the server certificate made by init; a client certificate is optional at the handshake
(browsers and API clients log in with passwords), but when one is presented it must chain to our
CA, and it reaches the application as the DER bytes of the verified peer certificate. Gateways and
certificate-bound device tokens depend on it.

The TLS handshake is run by `labgate.control.http.connections`, not by uvicorn, so that a cap per
source address and deadlines for slow clients apply from the moment a connection is accepted.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import os
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn

from labgate.control.errors import ConfigurationError
from labgate.control.http.app import create_app
from labgate.control.http.connections import ConnectionLimits, GuardedProtocol, guarded_protocol
from labgate.control.http.servedtls import ServedCertificate, keep_certificate, tls_context
from labgate.control.layout import ca_root_path
from labgate.control.runtime import Clock, Runtime, utc_now
from labgate.control.settings import ControlSettings, host_and_port
from labgate.posture.mode import LEGACY_NOTICE

Announce = Callable[[dict[str, Any]], None]
# How long run_in_thread waits for the socket to listen.
STARTUP_SECONDS = 30


def connection_limits(settings: ControlSettings) -> ConnectionLimits:
    return ConnectionLimits(
        header_seconds=settings.http_header_timeout_seconds,
        body_seconds=settings.http_body_timeout_seconds,
        per_address=settings.http_connections_per_address,
        secure=settings.secure if settings.secure.fw else None,
    )


def uvicorn_config(settings: ControlSettings, app: Any, *, listen: str) -> uvicorn.Config:
    host, port = host_and_port(listen)
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        # TLS is done by the protocol (see the module docstring), so uvicorn gets no ssl_*.
        http=guarded_protocol(tls_context(settings), connection_limits(settings)),
        log_config=None,
        log_level="warning",
        access_log=False,
        server_header=False,
        # uvicorn would otherwise take the client address from X-Forwarded-For when the peer is
        # 127.0.0.1; throttling must key on the socket's real peer.
        proxy_headers=False,
        lifespan="on",
        timeout_graceful_shutdown=5,
    )


def run(settings: ControlSettings, *, listen: str, announce: Announce | None = None) -> None:
    """Serve until SIGINT/SIGTERM; `announce` gets the bound address once the socket listens."""
    # Bound here, not by uvicorn: an address in use is then one OSError naming it, where uvicorn
    # would log it and leave through SystemExit and a page of traceback.
    refuse_unconfigured_listen(settings, listen)
    if not settings.secure.present:
        logging.getLogger("labgate.control").info("%s", LEGACY_NOTICE)  # once, at start
    listening = bind(listen)
    try:
        app = create_app(settings)
        server = uvicorn.Server(uvicorn_config(settings, app, listen=listen))
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            runner.run(_serve(server, app, announce or print_ready, listening))
    finally:
        listening.close()


def refuse_unconfigured_listen(settings: ControlSettings, listen: str) -> None:
    """[secure] fw: a `--listen` on every address is refused as `listen` in the file is."""
    host, _ = host_and_port(listen)
    try:
        every = ipaddress.ip_address(host).is_unspecified
    except ValueError:
        every = False
    if settings.secure.fw and every:
        raise ConfigurationError(
            f"listen {listen!r} is every address, which [secure] fw refuses; "
            "name the address to listen on"
        )


def bind(listen: str) -> socket.socket:
    """A listening TCP socket on HOST:PORT, or an OSError that names the address."""
    host, port = host_and_port(listen)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.create_server((host, port), family=family, backlog=2048)
    except OSError as error:
        # create_server's own message repeats the address as a Python tuple; say it once.
        reason = os.strerror(error.errno) if error.errno else str(error)
        raise OSError(error.errno, f"cannot listen on {listen}: {reason}") from None


async def _serve(
    server: uvicorn.Server, app: Any, announce: Announce, listening: socket.socket
) -> None:
    task = asyncio.create_task(_serve_and_keep(server, app, [listening]))
    while not server.started:
        if task.done():
            await task
            return
        await asyncio.sleep(0.02)
    host, port = server.servers[0].sockets[0].getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    announce({"event": "ready", "host": host, "port": port, "url": f"https://{shown}:{port}"})
    await task


async def _serve_and_keep(
    server: uvicorn.Server, app: Any, sockets: list[socket.socket] | None = None
) -> None:
    """uvicorn's serve, with the server certificate's upkeep beside it (`servedtls`)."""
    runtime = app.state.runtime
    assert isinstance(runtime, Runtime)
    protocol = server.config.http
    assert isinstance(protocol, type) and issubclass(protocol, GuardedProtocol)
    served = ServedCertificate(runtime.settings, protocol)
    upkeep = asyncio.create_task(
        keep_certificate(served, runtime.ca, runtime.clock, runtime.metrics.certificate_renewals)
    )
    try:
        await server.serve(sockets=sockets)
    finally:
        upkeep.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await upkeep


@dataclass(frozen=True, slots=True, kw_only=True)
class RunningServer:
    """A server started by `run_in_thread`: where it listens and what clients trust."""

    url: str
    port: int
    ca_root: Path


@contextmanager
def run_in_thread(
    settings: ControlSettings, *, listen: str = "127.0.0.1:0", clock: Clock = utc_now
) -> Iterator[RunningServer]:
    """The same server as `run`, on a thread of its own (for the demo and for tests)."""
    refuse_unconfigured_listen(settings, listen)
    app = create_app(settings, clock=clock)
    server = uvicorn.Server(uvicorn_config(settings, app, listen=listen))
    thread = threading.Thread(target=lambda: asyncio.run(_serve_and_keep(server, app)), daemon=True)
    thread.start()
    deadline = time.monotonic() + STARTUP_SECONDS
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.02)
    if not server.started:
        server.should_exit = True
        raise ConfigurationError(f"the control server did not start on {listen}")
    host, port = server.servers[0].sockets[0].getsockname()[:2]
    try:
        yield RunningServer(
            url=f"https://{host}:{port}", port=port, ca_root=ca_root_path(settings.data_dir)
        )
    finally:
        server.should_exit = True
        thread.join(timeout=2)
        if thread.is_alive():  # a client still holds a connection open: stop waiting for it
            server.force_exit = True
            thread.join(timeout=10)


def print_ready(event: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory
