"""`labgate demo`: not built yet."""

from __future__ import annotations

import typer


def demo() -> None:
    """Not built yet."""
    typer.echo("labgate demo is not built yet", err=True)
    raise typer.Exit(2)
