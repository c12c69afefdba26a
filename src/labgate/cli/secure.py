"""`labgate secure [+|-]pwd|fw|full|all --config FILE`: the enhanced-security mode's switches.

No switch: print what is on (`all`, the switches on, or `none`). Switches: rewrite the file's
`[secure]` table atomically (the rest of the file kept byte for byte); a running gateway reloads it
on its own. `--check`: re-verify each switch that is on from observable facts and exit 1 naming
every drift (for cron or a monitoring probe); exit 0 when all hold.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from labgate.cli.boundary import fail

if TYPE_CHECKING:
    from labgate.posture.mode import SecureConfig


def secure(
    config: Annotated[
        Path,
        typer.Option(
            "--config",
            "-c",
            metavar="FILE",
            help="The gateway's (or control server's) TOML configuration.",
            dir_okay=False,
        ),
    ],
    switches: Annotated[
        list[str] | None,
        typer.Argument(metavar="[+|-]pwd|fw|full|all", help="Switches to turn on (+) or off (-)."),
    ] = None,
    check: Annotated[
        bool, typer.Option("--check", help="Re-verify each switch from observable facts.")
    ] = False,
) -> None:
    """Enhanced security: strong passwords (pwd), allowed networks only (fw), no Full or
    Administrator over the network (full)."""
    from labgate.posture.mode import SwitchError, parse_switches
    from labgate.posture.table import TableError, apply_switches, with_table

    try:
        parsed = parse_switches(switches or [])
    except SwitchError as exc:
        raise fail(exc, status=2) from None
    if check and switches:
        raise fail("--check takes no switches", status=2)
    if check:
        raise typer.Exit(_check(config))
    text = config.read_text(encoding="utf-8")
    mode = _mode_of(config, text)
    if not switches:
        typer.echo(mode.describe())
        if not mode.present:
            typer.echo("(no [secure] table: this configuration keeps what it had)", err=True)
        return
    new = apply_switches(mode, parsed)
    try:
        edited = with_table(text, new)
    except TableError as exc:
        raise fail(f"{config}: {exc}") from None
    from labgate.pki.atomic import write_atomic

    write_atomic(config, edited.encode("utf-8"), mode=config.stat().st_mode & 0o777)
    typer.echo(new.describe())


def _mode_of(config: Path, text: str) -> SecureConfig:
    import tomllib

    from labgate.posture.mode import SecureConfig

    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise fail(f"{config} is not valid TOML: {exc}") from None
    try:
        return SecureConfig.from_table(raw.get("secure"))
    except ValueError as exc:
        raise fail(f"{config}: [secure]: {exc}") from None


def _check(config: Path) -> int:
    import tomllib

    text = config.read_text(encoding="utf-8")
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise fail(f"{config} is not valid TOML: {exc}", status=2) from None
    if "gateway" in raw:
        from labgate.gateway.config import load_config
        from labgate.gateway.drift import check_gateway

        report = check_gateway(load_config(config))
    elif config.name == "server.toml":
        from labgate.control.drift import check_server
        from labgate.control.settings import ControlSettings

        report = check_server(ControlSettings.load(config.parent))
    else:
        raise fail(
            f"{config} is neither a gateway configuration ([gateway]) nor a control server's "
            "server.toml",
            status=2,
        )
    typer.echo(f"on: {report.on}")
    for note in report.notes:
        typer.echo(f"note: {note}")
    for finding in report.verified:
        typer.echo(f"ok    {finding.switch}: {finding.text}")
    for finding in report.drift:
        typer.echo(f"DRIFT {finding.switch}: {finding.text}")
    return 1 if report.drift else 0
