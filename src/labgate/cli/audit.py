"""`labgate audit`: check the gateway's hash-chained audit log.

`labgate audit verify FILE` exits 0 with a one-line summary when every line links to the one
before, and 1 naming the first line that was edited, removed, reordered or cut short (for a cut
last line, as a crash mid-write leaves, it also says whether every record before it is intact).
"""

from __future__ import annotations

import itertools
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
    from labgate.gateway.auditchain import Problem
    from labgate.gateway.auditchain import verify as verify_chain

    with file.open("rb") as lines:
        result = verify_chain(lines)
    if result.ok:
        typer.echo(f"{file}: {result.summary()}")
        return
    message = f"{file}: {result.summary()}"
    if result.problem is Problem.TRUNCATED and result.line > 1:
        # Only a last line can lack its newline: a write cut short (a crash, a kill, a full
        # disk). Say whether everything before it holds, so the damage is seen to end there.
        with file.open("rb") as lines:
            before = verify_chain(itertools.islice(lines, result.line - 1))
        if before.ok:
            message += (
                f"; the {result.line - 1} records before it are intact (seq 0-{before.last_seq}, "
                f"head sha256:{before.head}), the last line is a write cut short"
            )
    typer.echo(message, err=True)
    raise typer.Exit(1)
