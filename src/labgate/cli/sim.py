"""`labgate sim`: not built yet."""

from __future__ import annotations

import typer


def sim() -> None:
    """Not built yet."""
    typer.echo("labgate sim is not built yet", err=True)
    raise typer.Exit(2)
