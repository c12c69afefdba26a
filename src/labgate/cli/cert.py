"""`labgate cert get`: a client certificate for the logged-in person, as one file for qslib."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from labgate.cli.group import Group

app = typer.Typer(
    cls=Group,
    help="Your client certificate, for qslib and other TLS clients.",
    no_args_is_help=True,
)


@app.command("get")
def get(
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            metavar="FILE",
            help="Where to write certificate, chain and key (one PEM file, 0600).",
            dir_okay=False,
            show_default="~/.config/labgate/me.pem",
        ),
    ] = None,
    renew: Annotated[
        bool,
        typer.Option("--renew", help="Keep renewing it (at 2/3 of its lifetime) until stopped."),
    ] = False,
) -> None:
    """Make a key here, have the server certify it for you, and write both to one file.

    Needs `labgate login` first.

    With --renew it stays, renews the file before it expires, and ends on Ctrl-C or SIGTERM."""
    import signal
    import threading

    from labgate.cli.login import store
    from labgate.login.certificate import CERTIFICATE_FILE, get_certificate
    from labgate.login.freshness import keep_fresh
    from labgate.login.prompting import TerminalPrompts
    from labgate.login.session import Authorised

    saved = store()
    authorised = Authorised(saved)
    kept = get_certificate(authorised, out or saved.directory / CERTIFICATE_FILE)
    typer.echo(
        f"wrote {kept.path}: certificate for {kept.identity}, serial {kept.serial}, "
        f"valid until {kept.not_after:%Y-%m-%d %H:%M}Z"
    )
    if not renew:
        return
    stop = threading.Event()
    for number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(number, lambda *_: stop.set())
    kept = keep_fresh(authorised, kept, stop=stop, say=TerminalPrompts().say)
    typer.echo(f"stopped; {kept.path} is valid until {kept.not_after:%Y-%m-%d %H:%M}Z")
