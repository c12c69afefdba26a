"""`labgate instrument setup NAME`: the instrument's own secrets and limits, set to match grants."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from labgate.cli.group import Group

app = typer.Typer(
    cls=Group,
    help="The instrument's own access settings, through the gateway's connection to it.",
    no_args_is_help=True,
)


@app.command("setup")
def setup(
    name: Annotated[str, typer.Argument(metavar="NAME", help=r"The \[\[instrument]]'s name.")],
    config: Annotated[
        Path,
        typer.Option(
            "--config", metavar="FILE", help="The gateway's configuration.", dir_okay=False
        ),
    ] = Path("gateway.toml"),
    apply_change: Annotated[
        bool, typer.Option("--apply", help="Make the change (default: print it only).")
    ] = False,
) -> None:
    """Set the instrument's password-free limits to Guest and its secrets to two new ones made
    here (the gateway's, at the highest grant, and one at Full for this command), printed first
    as a diff. Needs gateway.unsafe_allow_full = true while it runs."""
    import asyncio

    from labgate.gateway.audit import AuditLog
    from labgate.gateway.config import load_config
    from labgate.gateway.instrument_access import apply, plan

    loaded = load_config(config)
    chosen = asyncio.run(plan(loaded, name))
    typer.echo(chosen.diff())
    if not chosen.changes:
        typer.echo(f"instrument {name!r} already matches: nothing to change")
        return
    if not apply_change:
        typer.echo("dry run: nothing changed; run again with --apply to make this change")
        return
    with AuditLog(loaded.audit_log) as audit:
        asyncio.run(apply(loaded, chosen, audit))
    typer.echo(f"instrument {name!r} set up; the gateway logs in with {chosen.operating_file}")
