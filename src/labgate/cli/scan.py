"""`labgate scan HOST[:PORT]...`: a gentle security scan of instrument endpoints."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from labgate.cli.boundary import fail


def scan(
    targets: Annotated[
        list[str],
        typer.Argument(
            metavar="HOST[:PORT]",
            help="HOST alone: its ports 7000, 7443 and 2323; HOST:PORT: that port.",
        ),
    ],
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            metavar="FILE",
            help="A gateway configuration: upstream pins to compare, instrument names.",
            show_default="none: no pins compared",
            dir_okay=False,
        ),
    ] = None,
    json_output: Annotated[bool, typer.Option("--json", help="JSON on stdout.")] = False,
    max_connections: Annotated[
        int,
        typer.Option("--max-connections", metavar="N", help="Connections per instrument, at most."),
    ] = 40,
    rate: Annotated[
        float, typer.Option("--rate", metavar="PER_SECOND", help="New connections per second.")
    ] = 2.0,
    passwords: Annotated[
        bool,
        typer.Option(
            "--passwords/--no-passwords",
            help="Check weak passwords by CHAL?/AUTH (no password is sent).",
        ),
    ] = True,
) -> None:
    """Scan instrument endpoints gently: at most one connection at a time.

    Exit status: 0 nothing above low, 1 medium or inconclusive, 2 high or critical."""
    from labgate.scan.budget import Limits
    from labgate.scan.errors import TargetError
    from labgate.scan.report import as_json, exit_status, render
    from labgate.scan.scanner import known_from_gateway, scan_instrument
    from labgate.scan.targets import parse_targets

    try:
        limits = Limits(per_second=rate, total=max_connections)
        parsed = parse_targets(targets)
    except (TargetError, ValueError) as exc:
        raise fail(exc, status=2) from None
    known = known_from_gateway(config) if config is not None else None
    scans = [
        scan_instrument(target, limits=limits, known=known, check_passwords=passwords)
        for target in parsed
    ]
    if json_output:
        typer.echo(json.dumps(as_json(scans), indent=2))
    else:
        from rich.console import Console

        render(scans, Console())
    raise typer.Exit(exit_status(scans))
