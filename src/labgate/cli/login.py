"""`labgate login` and `labgate logout`: a person's login at the control server."""

from __future__ import annotations

import getpass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from labgate.login.store import LoginStore


def login(
    url: Annotated[str, typer.Argument(metavar="URL", help="The control server (https://...).")],
    server_ca: Annotated[
        Path | None,
        typer.Option(
            "--server-ca",
            metavar="FILE",
            help="CA certificate the server's must chain to (kept for later commands).",
            exists=True,
            dir_okay=False,
            show_default="the system's",
        ),
    ] = None,
    user: Annotated[
        str | None,
        typer.Option("--user", metavar="NAME", help="Your account.", show_default="your login"),
    ] = None,
) -> None:
    """Log in and keep the tokens (0600) in your configuration directory.

    The password is asked for without echo, never taken as an argument.

    When standard input is not a terminal, each answer is read as one line from it.

    A first login with a one-time password asks for a new one, twice."""
    from labgate.login.prompting import TerminalPrompts
    from labgate.login.session import log_in

    prompts = TerminalPrompts()
    username = user or getpass.getuser()
    saved = store()
    done = log_in(saved, url=url, server_ca=server_ca, username=username, prompts=prompts)
    typer.echo(f"logged in as {done.username} at {done.server} (tokens in {saved.path})")


def logout() -> None:
    """End the login on the server and remove its tokens here."""
    from labgate.login.session import log_out

    saved = store()
    ended = log_out(saved)
    if ended is None:
        typer.echo(f"not logged in ({saved.path} does not exist)")
        return
    typer.echo(f"logged out {ended.username} at {ended.server}")


def store() -> LoginStore:
    """The login in the user's configuration directory; warnings go to stderr."""
    from labgate.login.prompting import TerminalPrompts
    from labgate.login.store import LoginStore, config_dir

    return LoginStore(config_dir(), warn=TerminalPrompts().say)
