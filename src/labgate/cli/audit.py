"""`labgate audit`: check the gateway's hash-chained audit log.

`labgate audit verify FILE` exits 0 with a one-line summary when every line links to the one
before, and 1 naming the first line that was edited, removed, reordered or cut short (for a cut
last line, as a crash mid-write leaves, it also says whether every record before it is intact).
With `--head SEQ:SHA256` (a head kept elsewhere, such as the control server's) it also exits 1
when the log no longer holds that record unchanged: cut short, or rewritten with a new chain.
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
    head: Annotated[
        str | None,
        typer.Option(
            metavar="SEQ:SHA256",
            show_default="none: only the chain is checked",
            help="A head kept elsewhere (from `verify` earlier, or the control server's "
            "`GET /api/v1/audit/gateways`): the log must still hold that record, unchanged.",
        ),
    ] = None,
) -> None:
    """Prove the log intact, or name the first line that was edited, removed or reordered."""
    from labgate.gateway.auditchain import Problem
    from labgate.gateway.auditchain import verify as verify_chain

    kept = _parse_head(head) if head is not None else None
    with file.open("rb") as lines:
        result = verify_chain(lines)
    if result.ok:
        if kept is not None:
            _check_head(file, kept)
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


def _parse_head(text: str) -> tuple[int, str]:
    seq, _, digest = text.partition(":")
    digest = digest.removeprefix("sha256:").lower()
    if not seq.isdigit() or len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise typer.BadParameter(
            f"{text!r} is not SEQ:SHA256 (a record number and 64 hex digits)", param_hint="--head"
        )
    return int(seq), digest


def _check_head(file: Path, kept: tuple[int, str]) -> None:
    """The record at the kept seq must hash to the kept head: else the log was cut short there
    or rewritten, however intact the chain that is left looks."""
    from labgate.gateway.auditchain import line_hash

    seq, digest = kept
    with file.open("rb") as lines:
        line = next(itertools.islice(lines, seq, seq + 1), None)
    if line is None:
        typer.echo(
            f"{file}: does not reach the kept head seq {seq}: the log was cut short after it "
            f"was kept (sha256:{digest})",
            err=True,
        )
        raise typer.Exit(1)
    found = line_hash(line)
    if found != digest:
        typer.echo(
            f"{file}: record seq {seq} hashes to sha256:{found}, the kept head is "
            f"sha256:{digest}: the log was rewritten from that record or before",
            err=True,
        )
        raise typer.Exit(1)
