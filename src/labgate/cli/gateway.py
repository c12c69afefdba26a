"""`labgate gateway`: not built yet."""

from __future__ import annotations

import typer


def gateway() -> None:
    """Not built yet."""
    typer.echo("labgate gateway is not built yet", err=True)
    raise typer.Exit(2)
