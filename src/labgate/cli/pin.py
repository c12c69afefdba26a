"""`labgate pin URL`: the `upstream_pin` of an instrument, read the way the gateway connects."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from labgate.cli.boundary import fail


def pin(
    url: Annotated[str, typer.Argument(metavar="URL", help="tls://HOST:PORT or sslv3://HOST:PORT")],
    json_output: Annotated[bool, typer.Option("--json", help="One JSON line.")] = False,
    timeout: Annotated[
        float, typer.Option(metavar="SECONDS", help="Seconds to connect and handshake.")
    ] = 10.0,
) -> None:
    """Connect to an instrument and print the pin of its certificate for `upstream_pin`.

    Run it on a network path you trust: the pin is whatever key answers now."""
    from labgate.gateway.config import parse_upstream
    from labgate.gateway.errors import GatewayError
    from labgate.gateway.probe import probe

    try:
        seen = probe(parse_upstream(url, "URL"), timeout=timeout)
    except GatewayError as exc:
        raise fail(exc) from None
    if json_output:
        typer.echo(
            json.dumps(
                {
                    "upstream": str(seen.upstream),
                    "pin": seen.pin,
                    "protocol": seen.protocol,
                    "subject": seen.subject,
                    "not_after": seen.not_after.isoformat(),
                }
            )
        )
        return
    typer.echo(f'upstream_pin = "{seen.pin}"')
    typer.echo(
        f"# {seen.upstream} spoke {seen.protocol}; certificate {seen.subject}, "
        f"valid until {seen.not_after:%Y-%m-%d}",
        err=True,
    )
