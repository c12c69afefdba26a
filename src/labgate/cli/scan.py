"""`labgate scan HOST[:PORT]...`: a gentle security scan of instrument endpoints."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from labgate.cli.boundary import fail


def scan(
    targets: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="HOST[:PORT]",
            help="HOST alone: its ports 7000, 7443 and 2323; HOST:PORT: that port.",
            show_default=False,
        ),
    ] = None,
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
    since: Annotated[
        Path | None,
        typer.Option(
            "--since",
            metavar="FILE",
            help="A previous --json report: show only new, changed and resolved findings; "
            "the exit status is by the new ones.",
            show_default="none: every finding is shown",
            dir_okay=False,
        ),
    ] = None,
    json_schema: Annotated[
        bool, typer.Option("--json-schema", help="Print the JSON report's JSON Schema and exit.")
    ] = False,
) -> None:
    """Scan instrument endpoints gently: at most one connection at a time.

    Exit status: 0 nothing above low, 1 medium or inconclusive, 2 high or critical (with
    --since: of the new findings)."""
    from labgate.scan.budget import Limits
    from labgate.scan.changes import PreviousReportError, compare, load_previous
    from labgate.scan.errors import TargetError
    from labgate.scan.report import as_json, exit_status, render
    from labgate.scan.scanner import known_from_gateway, scan_instrument
    from labgate.scan.targets import parse_targets

    if json_schema:
        from labgate.scan.reportschema import REPORT

        typer.echo(json.dumps(REPORT, indent=2))
        return
    if not targets:
        raise fail("name at least one HOST[:PORT] to scan", status=2)
    try:
        limits = Limits(per_second=rate, total=max_connections)
        parsed = parse_targets(targets)
        # Read before scanning: a bad baseline costs the instruments no connection.
        previous = load_previous(since) if since is not None else None
    except (TargetError, ValueError, PreviousReportError) as exc:
        raise fail(exc, status=2) from None
    known = known_from_gateway(config) if config is not None else None
    scans = [
        scan_instrument(target, limits=limits, known=known, check_passwords=passwords)
        for target in parsed
    ]
    report = as_json(scans)
    if since is not None and previous is not None:
        from rich.console import Console

        from labgate.scan.changes import render as render_changes

        changes = compare(previous, report)
        if json_output:
            report["exit_status"] = changes.exit_status
            report["since"] = changes.as_json(since)
            typer.echo(json.dumps(report, indent=2))
        else:
            render_changes(changes, since, Console())
        raise typer.Exit(changes.exit_status)
    if json_output:
        typer.echo(json.dumps(report, indent=2))
    else:
        from rich.console import Console

        render(scans, Console())
    raise typer.Exit(exit_status(scans))
