"""`labgate agent`: run the device side, show its status, unlink it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from labgate.cli.group import Group

app = typer.Typer(
    cls=Group,
    help="The device agent: link this device, keep its certificate.",
    no_args_is_help=True,
)

DataDir = Annotated[
    Path,
    typer.Option("--data", metavar="DIR", help="The agent's data directory.", file_okay=False),
]


def _logging() -> None:
    import logging
    import sys

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log = logging.getLogger("labgate.agent")
    log.handlers[:] = [handler]
    log.setLevel(logging.INFO)
    log.propagate = False


@app.command("run")
def run(
    server: Annotated[str, typer.Option("--server", metavar="URL", help="The control server.")],
    server_ca: Annotated[
        Path,
        typer.Option(
            "--server-ca",
            metavar="FILE",
            help="CA certificate the server's is from.",
            exists=True,
            dir_okay=False,
            readable=True,
        ),
    ],
    data: DataDir,
    model: Annotated[str, typer.Option("--model", metavar="M", help="Device model.")] = (
        "labgate-agent"
    ),
    serial: Annotated[
        str, typer.Option("--serial", metavar="S", help="Device serial.", show_default="host name")
    ] = "",
    local_listen: Annotated[
        str,
        typer.Option(
            "--local-listen",
            metavar="HOST:PORT",
            help="Address of the local linking page (one interface, announced).",
        ),
    ] = "127.0.0.1:46001",
    local_networks: Annotated[
        str | None,
        typer.Option(
            "--local-networks",
            metavar="CIDR,...",
            help="Networks counted as local (the page answers only them).",
            show_default="RFC 1918, loopback, link-local, fc00::/7",
        ),
    ] = None,
    link_code: Annotated[
        bool, typer.Option("--link-code", help="Link by a code typed at the server.")
    ] = False,
    announcements: Annotated[
        int,
        typer.Option(
            "--announcements",
            metavar="N",
            min=1,
            help="Discovery window, in announcements (5 s apart).",
        ),
    ] = 120,
) -> None:
    """Run the agent: link this device, then keep its certificate and tokens fresh.

    Prints one JSON line on stdout when ready; logs (with reason codes) on stderr."""
    import asyncio
    import signal

    from labgate.agent.locality import default_networks, parse_networks
    from labgate.agent.runner import Agent, AgentOptions

    _logging()
    networks = parse_networks(local_networks.split(",")) if local_networks else default_networks()
    options = AgentOptions(
        server=server,
        server_ca=server_ca,
        data=data,
        model=model,
        serial=serial,
        local_listen=local_listen,
        local_networks=networks,
        link_code=link_code,
        announcements=announcements,
    )
    agent = Agent(options)

    def stopped(*_: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stopped)
    try:
        asyncio.run(agent.run())
    except KeyboardInterrupt:
        agent.stopped()
        raise typer.Exit(130) from None


@app.command("status")
def status(
    data: DataDir,
    json_output: Annotated[bool, typer.Option("--json", help="One JSON object.")] = False,
) -> None:
    """What the agent in DIR is doing: linked or not, its code, its certificate's end."""
    from labgate.agent.store import Store

    store = Store(data)
    shown = dict(store.status() or {"state": "never started"})
    linked = store.linked()
    if linked is not None:
        shown.update(
            state="linked",
            device_id=linked.device_id,
            identity=linked.identity,
            serial=linked.serial,
            not_after=linked.not_after.isoformat(),
        )
    if json_output:
        typer.echo(json.dumps(shown, sort_keys=True))
        return
    for key in (
        "state",
        "device_id",
        "identity",
        "instance_id",
        "local",
        "code",
        "verification_uri",
        "not_after",
        "reason",
        "updated_at",
    ):
        if shown.get(key) not in (None, ""):
            typer.echo(f"{key}: {shown[key]}")


@app.command("unlink")
def unlink(data: DataDir) -> None:
    """Unlink this device: the server revokes it, then the agent forgets its key and tokens."""
    import asyncio

    from labgate.agent.store import Store
    from labgate.agent.upkeep import unlink as do_unlink

    _logging()
    device_id = asyncio.run(do_unlink(Store(data)))
    typer.echo(f"unlinked device {device_id}; run the agent again to link anew")
