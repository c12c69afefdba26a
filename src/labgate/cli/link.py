"""`labgate link`: link a device on this network from the command line (no browser)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def link(
    server: Annotated[str, typer.Option("--server", metavar="URL", help="The control server.")],
    server_ca: Annotated[
        Path | None,
        typer.Option(
            "--server-ca",
            metavar="FILE",
            help="CA certificate of the server.",
            exists=True,
            dir_okay=False,
            show_default="the system's",
        ),
    ] = None,
    username: Annotated[
        str, typer.Option("--user", metavar="NAME", help="Your account.")
    ] = "admin",
    instance: Annotated[
        str | None,
        typer.Option(
            "--instance",
            metavar="ID",
            help="Which device, when several announce.",
            show_default="the only one announcing",
        ),
    ] = None,
) -> None:
    """Find the device announcing from this network and link it to your account.

    The password is asked for on the terminal (never an argument)."""
    import ssl

    import httpx

    from labgate.agent import headless
    from labgate.agent.errors import AgentError

    password = typer.prompt(f"password for {username}", hide_input=True)
    verify = ssl.create_default_context(cafile=str(server_ca)) if server_ca else True
    with httpx.Client(base_url=server.rstrip("/"), verify=verify, timeout=30.0) as http:
        token = headless.login(http, username, password)
        del password
        found = headless.discover(http, token)
        if instance is not None:
            found = [f for f in found if f.instance_id == instance]
        if not found:
            raise AgentError("no device announces from this network (or not that --instance)")
        if len(found) > 1:
            ids = ", ".join(f.instance_id for f in found)
            raise AgentError(f"several devices announce ({ids}); choose one with --instance")
        device = found[0]
        typer.echo(
            f"linking {device.model} serial {device.serial} ({device.hostname}) at "
            f"{device.local_address}",
            err=True,
        )
        state = headless.link(http, token, device)
    if state.get("state") != "linked":
        raise AgentError(f"the link did not finish: {state.get('state')}")
    typer.echo(f"linked device {state.get('device_id')}")
