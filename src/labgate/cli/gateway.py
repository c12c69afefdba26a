"""`labgate gateway --config gateway.toml`: run the gateway until SIGINT or SIGTERM.

When every listener is up it prints one JSON line on stdout with the bound addresses; everything
else goes to stderr. SIGHUP reloads certificates, CRL and grants without dropping sessions.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Annotated

import typer

from labgate.cli.boundary import fail

ConfigOption = Annotated[
    Path,
    typer.Option(
        "--config",
        "-c",
        help="The gateway's TOML configuration (see the README for every option).",
        dir_okay=False,
    ),
]
LogLevelOption = Annotated[
    str, typer.Option("--log-level", help="debug, info, warning or error (on stderr).")
]


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def gateway(config: ConfigOption, log_level: LogLevelOption = "info") -> None:
    """Mutual TLS in front of instruments, every command checked against the caller's grant."""
    from labgate.gateway.auditchain import AuditError
    from labgate.gateway.config import load_config
    from labgate.gateway.errors import GatewayError

    if log_level.upper() not in LOG_LEVELS:
        raise fail(f"--log-level {log_level!r}: expected one of "
                   f"{', '.join(level.lower() for level in LOG_LEVELS)}", status=2)  # fmt: skip
    logging.basicConfig(
        stream=sys.stderr,
        level=log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if log_level.upper() != "DEBUG":
        # httpx says INFO for every request, so every bundle poll; its failures reach our log.
        for chatty in ("httpx", "httpcore"):
            logging.getLogger(chatty).setLevel(logging.WARNING)
    try:
        settings = load_config(config)
    except GatewayError as exc:
        raise fail(exc, status=2) from exc
    try:
        _run_loop(_serve(settings))
    except (GatewayError, AuditError) as exc:  # a certificate that does not load, a locked log
        raise fail(exc) from exc
    except OSError as exc:  # a listen address already taken, say
        raise fail(exc) from exc


def _run_loop(main: Coroutine[None, None, None]) -> None:
    # uvloop when installed: its compiled event loop and TLS protocol cost a fraction of the
    # standard loop's per connection, per command and per byte (see bench/README.md).
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
        return
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main)


async def _serve(settings: object) -> None:
    from labgate.gateway.config import GatewayConfig
    from labgate.gateway.reload import follow_control, refresh_bundle, watch
    from labgate.gateway.renewal import keep_renewed
    from labgate.gateway.server import Gateway
    from labgate.gateway.shipping import start_shipping, stop_shipping

    assert isinstance(settings, GatewayConfig)
    loop = asyncio.get_running_loop()
    stop, reload = asyncio.Event(), asyncio.Event()
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGHUP, reload.set)
    running = Gateway(settings)
    await running.start()
    # Grants from the control server are in force before anyone is told we are ready (if it
    # cannot be reached, the file's grants hold and the fetch is tried again every poll).
    await refresh_bundle(running)
    # What each instrument's password reaches is known (and grants above it warned about)
    # before the ready line; sessions that came first waited for it.
    await running.reach.settled()
    watcher = asyncio.create_task(watch(running, reload))
    follower = asyncio.create_task(follow_control(running))
    shipper = start_shipping(running)
    renewer = asyncio.create_task(keep_renewed(running))
    await asyncio.sleep(0)  # the watcher notes the files as they are before anyone is told
    sys.stdout.write(running.ready_line() + "\n")
    sys.stdout.flush()
    logging.getLogger("labgate.gateway").info("ready: %s", running.ready_line())
    try:
        await stop.wait()
    finally:
        watcher.cancel()
        follower.cancel()
        renewer.cancel()
        await asyncio.gather(watcher, follower, renewer, return_exceptions=True)
        await running.aclose()
        await stop_shipping(shipper)
        logging.getLogger("labgate.gateway").info("stopped; audit log flushed")
