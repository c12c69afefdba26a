"""`labgate audit`: check the gateway's hash-chained audit log.

`labgate audit verify FILE` exits 0 with a one-line summary when every line links to the one
before, and 1 naming the first line that was edited, removed, reordered or cut short.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from labgate.cli.group import Group

app = typer.Typer(
    cls=Group, help="Check the gateway's tamper-evident audit log.", no_args_is_help=True
)


@app.callback()
def audit() -> None:
    """Check the gateway's tamper-evident audit log."""


@app.command("verify")
def verify(
    file: Annotated[
        Path,
        typer.Argument(
            metavar="FILE",
            exists=True,
            dir_okay=False,
            readable=True,
            help="The audit log (JSON lines).",
        ),
    ],
) -> None:
    """Prove the log intact, or name the first line that was edited, removed or reordered."""
    from labgate.gateway.auditchain import verify as verify_chain

    with file.open("rb") as lines:
        result = verify_chain(lines)
    if result.ok:
        typer.echo(f"{file}: {result.summary()}")
        return
    typer.echo(f"{file}: {result.summary()}", err=True)
    raise typer.Exit(1)
