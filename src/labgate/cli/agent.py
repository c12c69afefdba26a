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
    gateway: Annotated[
        list[str] | None,
        typer.Option(
            "--gateway",
            metavar="INSTRUMENT=HOST:PORT",
            help="Where the gateway serves an instrument, for instrument_action jobs (repeat).",
        ),
    ] = None,
    gateway_ca: Annotated[
        Path | None,
        typer.Option(
            "--gateway-ca",
            metavar="FILE",
            help="CA certificate the gateway's is from (with --gateway).",
            show_default="none; needed with --gateway",
            exists=True,
            dir_okay=False,
            readable=True,
        ),
    ] = None,
) -> None:
    """Run the agent: link this device, keep its certificate and tokens fresh, run its jobs.

    Prints one JSON line on stdout when ready; logs (with reason codes) on stderr."""
    import asyncio
    import signal

    from labgate.agent.locality import default_networks, parse_networks
    from labgate.agent.runner import Agent, AgentOptions

    _logging()
    _settle_slots(data)
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
        gateway=tuple(gateway or ()),
        gateway_ca=gateway_ca,
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


@app.command("releases")
def releases(
    data: DataDir,
    root: Annotated[
        Path,
        typer.Option(
            "--root",
            metavar="FILE",
            help="The release repository's root.json this device will trust.",
            exists=True,
            dir_okay=False,
            readable=True,
        ),
    ],
    model: Annotated[str, typer.Option("--model", metavar="M", help="Device model.")] = (
        "labgate-agent"
    ),
    install_command: Annotated[
        str | None,
        typer.Option(
            "--install-command",
            metavar="CMD",
            help="Install command; {ARTIFACT} and {SLOT} are replaced (no shell).",
            show_default="move the artifact into the slot",
        ),
    ] = None,
    health_command: Annotated[
        str | None,
        typer.Option(
            "--health-command",
            metavar="CMD",
            help="Health check run in the new slot; exit 0 is healthy.",
            show_default="the artifact is in the slot",
        ),
    ] = None,
    min_rate: Annotated[
        int, typer.Option("--min-rate", metavar="B/S", min=1, help="Slowest download allowed.")
    ] = 1024,
    rate_window: Annotated[
        float,
        typer.Option("--rate-window", metavar="S", min=0.1, max=3600, help="Over this many s."),
    ] = 60.0,
) -> None:
    """Set this device up for signed releases: the root it trusts, its model, its commands."""
    import shlex

    from labgate.agent.installation import ReleaseConfig, install_root

    config = ReleaseConfig(
        model=model,
        install_command=tuple(shlex.split(install_command or "")),
        health_command=tuple(shlex.split(health_command or "")),
        min_rate_bytes=min_rate,
        rate_window_seconds=rate_window,
    )
    install_root(data, root.read_bytes())
    config.save(data)
    typer.echo(f"releases: trusting {root.name} for model {model} in {data}")


@app.command("install")
def install(
    data: DataDir,
    target: Annotated[str, typer.Option("--target", metavar="PATH", help="Target path.")],
    length: Annotated[int, typer.Option("--length", metavar="N", min=1, help="Its length.")],
    sha256: Annotated[str, typer.Option("--sha256", metavar="HEX", help="Its SHA-256.")],
    server: Annotated[
        str | None,
        typer.Option(
            "--server", metavar="URL", help="The control server.", show_default="the linked one"
        ),
    ] = None,
    server_ca: Annotated[
        Path | None,
        typer.Option(
            "--server-ca",
            metavar="FILE",
            help="CA of the server's certificate.",
            show_default="the one linking pinned",
            dir_okay=False,
        ),
    ] = None,
    bundle: Annotated[
        Path | None,
        typer.Option(
            "--bundle",
            metavar="DIR",
            help="Install offline from a bundle.",
            show_default="online",
            file_okay=False,
            exists=True,
        ),
    ] = None,
    valid_at: Annotated[
        str | None,
        typer.Option(
            "--valid-at",
            metavar="TIME",
            help="With --bundle: judge expiry as of this ISO 8601 time.",
            show_default="none; needed with --bundle",
        ),
    ] = None,
) -> None:
    """Install a signed release into the other slot, check it, commit or roll back.

    Prints each step; exit status 0 when committed, 1 when refused, failed or rolled back."""
    import re
    from datetime import datetime

    from labgate.agent.controlclient import tls_context
    from labgate.agent.errors import InvalidOption
    from labgate.agent.installation import (
        Bundle,
        Online,
        ReleaseConfig,
        ReleaseInstall,
        Source,
    )
    from labgate.agent.store import SERVER_CA, Store
    from labgate.releases.verification import Binding

    if not re.fullmatch(r"[0-9a-f]{64}", sha256):
        raise InvalidOption(f"--sha256 {sha256[:80]!r} is not 64 lower-case hex digits")
    source: Source
    if bundle is not None:
        if server is not None:
            raise InvalidOption("--bundle and --server contradict each other; keep one")
        if valid_at is None:
            raise InvalidOption("--bundle needs --valid-at: the time its metadata is judged at")
        try:
            when = datetime.fromisoformat(valid_at)
        except ValueError:
            raise InvalidOption(f"--valid-at {valid_at!r} is not an ISO 8601 time") from None
        if when.tzinfo is None:
            raise InvalidOption(f"--valid-at {valid_at!r} has no time zone (add Z or +HH:MM)")
        typer.echo(f"offline install: metadata judged as of {when.isoformat()} (stated)", err=True)
        source = Bundle(directory=bundle, valid_at=when)
    else:
        store = Store(data)
        url = server or store.server_url()
        ca = server_ca or data / SERVER_CA
        source = Online(server_url=url, context=tls_context(ca))
    job = ReleaseInstall(
        data_dir=data,
        config=ReleaseConfig.load(data),
        source=source,
        binding=Binding(target_path=target, length=length, sha256=sha256),
        report=lambda step, details: typer.echo(
            f"{step}: " + " ".join(f"{k}={v}" for k, v in details.items())
        ),
    )
    outcome = job.run()
    if not outcome.committed:
        typer.secho(f"rolled back to slot {outcome.slot}: {outcome.reason}", err=True, fg="red")
        raise typer.Exit(1)
    typer.echo(f"release {outcome.version} committed in slot {outcome.slot}")


@app.command("boot")
def boot(data: DataDir) -> None:
    """What a device runs at start: settle a slot left on trial (health check, commit or go
    back to the last good slot)."""
    from labgate.agent.installation import ReleaseConfig

    typer.echo(ReleaseConfig.load(data).slots(data).boot())


def _settle_slots(data: Path) -> None:
    """At start, before anything else: a slot left on trial by a reboot is checked again."""
    from labgate.agent.installation import CONFIG, RELEASES, ReleaseConfig

    if (data / RELEASES / CONFIG).exists():
        settled = ReleaseConfig.load(data).slots(data).boot()
        if settled != "steady":
            typer.echo(f"releases: slot on trial {settled.replace('_', ' ')} at start", err=True)
