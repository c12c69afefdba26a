"""`labgate sim`: run a simulated QuantStudio instrument until SIGINT or SIGTERM.

When every listener is up it prints one JSON line on stdout, e.g.
`{"plain": "127.0.0.1:41234", "tls": "127.0.0.1:41235", "legacy": null, "tls_cert": "PATH"}`;
logs for people go to stderr.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from labgate.cli.boundary import fail

HostOption = Annotated[str, typer.Option(metavar="ADDRESS", help="Address to listen on.")]
PlainOption = Annotated[str, typer.Option("--plain-port", help="Plain port; 0 = free, off.")]
TlsOption = Annotated[str, typer.Option("--tls-port", help="TLS 1.2/1.3 port; 0 = free, off.")]
LegacyOption = Annotated[
    str, typer.Option("--legacy-port", help="SSLv3/TLS 1.0 port; 0 = free, off.")
]
SecretsOption = Annotated[
    Path | None,
    typer.Option(
        "--secrets",
        metavar="FILE",
        help=r"TOML of \[\[password]] tables (level, secret).",
        show_default="random, written to the state directory",
        dir_okay=False,
    ),
]
LimitOption = Annotated[
    str, typer.Option("--access-limit", metavar="LEVEL", help="Level reachable without a password.")
]
StateOption = Annotated[
    Path | None,
    typer.Option(
        "--state-dir",
        metavar="DIR",
        help="Files, command log, certificate, generated passwords.",
        show_default="$XDG_STATE_HOME/labgate/sim",
        file_okay=False,
    ),
]
ConnectionsOption = Annotated[
    int, typer.Option("--max-connections", min=1, metavar="N", help="Connections held at once.")
]
IdleOption = Annotated[
    str,
    typer.Option(
        "--idle-timeout",
        metavar="SECONDS",
        help="Seconds a silent client is kept before it is hung up on; off: never.",
    ),
]
ScaleOption = Annotated[
    float,
    typer.Option(
        "--time-scale", min=0.001, metavar="FACTOR", help="Simulated seconds per real second."
    ),
]
CertOption = Annotated[
    Path | None,
    typer.Option(
        "--cert",
        metavar="FILE",
        help="PEM RSA server certificate to present.",
        show_default="one made at start",
        dir_okay=False,
    ),
]
KeyOption = Annotated[
    Path | None,
    typer.Option(
        "--key",
        metavar="FILE",
        help="Its PEM private key (mode 0600).",
        show_default="made with --cert",
        dir_okay=False,
    ),
]


def _default_state_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "labgate" / "sim"


def _port(flag: str, text: str) -> int | None:
    if text.lower() == "off":
        return None
    if text.isdigit() and 0 <= int(text) <= 65535:
        return int(text)
    raise typer.BadParameter(
        f"{text!r}: expected a port number, 0 for a free port, or off", param_hint=flag
    )


def _seconds(flag: str, text: str) -> float | None:
    if text.lower() == "off":
        return None
    try:
        seconds = float(text)
    except ValueError:
        seconds = 0.0
    if not seconds > 0 or seconds == float("inf"):
        raise typer.BadParameter(
            f"{text!r}: expected a positive number of seconds, or off", param_hint=flag
        )
    return seconds


def sim(
    host: HostOption = "127.0.0.1",
    plain_port: PlainOption = "7000",
    tls_port: TlsOption = "7443",
    legacy_port: LegacyOption = "off",
    secrets: SecretsOption = None,
    access_limit: LimitOption = "Observer",
    state_dir: StateOption = None,
    max_connections: ConnectionsOption = 64,
    idle_timeout: IdleOption = "600",
    time_scale: ScaleOption = 1.0,
    cert: CertOption = None,
    key: KeyOption = None,
) -> None:
    """A QuantStudio qPCR instrument simulator that the real qslib client accepts."""
    from labgate.instrument import ConfigError, SimulatorConfig
    from labgate.instrument.serving import serve_until_signalled
    from labgate.scpi.access import AccessLevel

    logging.basicConfig(
        stream=sys.stderr,
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        limit = AccessLevel.parse(access_limit)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--access-limit") from None
    try:
        config = SimulatorConfig(
            state_dir=state_dir or _default_state_dir(),
            host=host,
            plain_port=_port("--plain-port", plain_port),
            tls_port=_port("--tls-port", tls_port),
            legacy_port=_port("--legacy-port", legacy_port),
            secrets_file=secrets,
            access_limit=limit,
            max_connections=max_connections,
            idle_timeout=_seconds("--idle-timeout", idle_timeout),
            time_scale=time_scale,
            cert=cert,
            key=key,
        )
        if host not in ("127.0.0.1", "::1", "localhost"):
            logging.getLogger("labgate.instrument").warning(
                "listening on %s: the simulator's passwords are as weak as the instrument's", host
            )
        raise typer.Exit(serve_until_signalled(config))
    except ConfigError as exc:
        raise fail(exc, status=2) from exc
    except OSError as exc:  # a port already taken, say
        raise fail(exc) from exc
