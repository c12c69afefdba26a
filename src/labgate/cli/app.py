"""The root `labgate` command and the table of its sub-commands.

Each sub-command lives in a module of its own, named after it, and imports the part it drives
lazily inside the command, so `labgate --help` stays quick to start.
"""

from __future__ import annotations

import typer

from labgate import __version__
from labgate.cli import (
    agent,
    audit,
    ca,
    cert,
    demo,
    gateway,
    instrument,
    link,
    login,
    pin,
    release,
    scan,
    secure,
    server,
    sim,
)
from labgate.cli.group import Group

app = typer.Typer(
    cls=Group,
    name="labgate",
    help="Mutual TLS, per-command access levels and an audit log for lab instruments.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

app.command("demo")(demo.demo)
app.command("sim")(sim.sim)
app.command("gateway")(gateway.gateway)
app.command("pin")(pin.pin)
app.command("scan")(scan.scan)
app.command("link")(link.link)
app.command("login")(login.login)
app.command("logout")(login.logout)
# "-pwd" is a switch, not an option: unknown options are handed to the command as arguments.
app.command("secure", context_settings={"ignore_unknown_options": True})(secure.secure)
app.add_typer(ca.app, name="ca")
app.add_typer(cert.app, name="cert")
app.add_typer(audit.app, name="audit")
app.add_typer(server.app, name="server")
app.add_typer(instrument.app, name="instrument")
app.add_typer(agent.app, name="agent")
app.add_typer(release.app, name="release")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"labgate {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version."
    ),
) -> None:
    """labgate: mutual TLS, per-command access levels and an audit log for lab instruments."""


def main() -> None:
    app()
