"""`labgate demo`: every part on free loopback ports, and the qslib lines that reach them."""

from __future__ import annotations

import json
import signal
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from labgate.cli.boundary import fail

if TYPE_CHECKING:
    from labgate.demo.stack import RunningDemo


def demo(
    state_dir: Annotated[
        Path | None,
        typer.Option(
            metavar="DIR",
            help="Where the demo keeps its CA, certificates, logs and instrument files.",
            show_default="$XDG_STATE_HOME/labgate/demo",
        ),
    ] = None,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print one JSON line with every address and path.")
    ] = False,
) -> None:
    """Start a simulated instrument behind the gateway, with certificates for you; Ctrl-C stops."""
    from labgate.demo import stack
    from labgate.demo.children import ChildFailed
    from labgate.demo.enrolment import EnrolmentFailed

    directory = state_dir or stack.default_state_dir()
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    try:
        with stack.running(directory) as running:
            if json_output:
                typer.echo(json.dumps(running.summary()))
            else:
                _explain(running)
            while not stop.wait(0.5):
                for child in running.children:
                    if child.process.poll() is not None:
                        typer.echo(
                            f"{child.name} stopped (status {child.process.returncode}); "
                            f"see {child.log_path}",
                            err=True,
                        )
                        raise typer.Exit(1)
    except (ChildFailed, EnrolmentFailed) as exc:
        raise fail(exc) from None
    if not json_output:
        typer.echo("Stopped. The audit log stays; check it with: labgate audit verify "
                   f"{directory / 'gateway' / 'audit.jsonl'}", err=True)  # fmt: skip


def _explain(running: RunningDemo) -> None:
    from rich.console import Console
    from rich.panel import Panel
    from rich.table import Table

    from labgate.demo.stack import BUNDLE_POLL_S, INSTRUMENT

    console = Console(soft_wrap=True)
    where = Table(show_header=True, header_style="bold", box=None)
    where.add_column("part", no_wrap=True)
    where.add_column("address", no_wrap=True)
    instruments = running.gateway.get("instruments", {})
    assert isinstance(instruments, dict)
    for name, address in instruments.items():
        where.add_row(f"gateway for {name} (mutual TLS)", str(address))
    if running.gateway.get("metrics"):
        where.add_row("gateway metrics", f"http://{running.gateway['metrics']}/metrics")
    where.add_row("control server (HTTPS API)", str(running.server.get("url")))
    where.add_row("device agent (linked by code)", f"device {running.agent.get('device_id')}")
    for name in ("plain", "tls", "legacy"):
        if running.simulator.get(name):
            where.add_row(f"instrument, {name} (unprotected)", str(running.simulator[name]))
    console.print(Panel(where, title="labgate demo", expand=False))
    console.print(
        "The instrument's own ports have only its weak passwords, and Controller there is root: "
        "a lab firewalls them off and goes through the gateway.\n"
    )

    host, port = running.instrument_address()
    operator, observer = running.identities
    code = f"""from qslib import Machine

m = Machine("{host}", port={port}, ssl=True,
            client_certificate_path="{operator.pem}",
            server_ca_file="{running.root_ca}", tls_server_name="{INSTRUMENT}")
with m:
    print(m.machine_status())
    m.drawer_open()    # {operator.level}: allowed

# With the {observer.level} certificate, status still works; drawer_open() fails with
# qslib's access error, and the instrument never sees the command:
#   client_certificate_path="{observer.pem}"
"""
    console.print("Reach it with qslib (copy these lines into Python):\n")
    console.print(code, highlight=False, markup=False)
    body = '{"username": "admin", "password": "..."}'
    console.print(
        f"Log in to the control server as admin; the password is in {running.admin_password}:\n"
        f"  curl --cacert {running.root_ca} -H 'Content-Type: application/json' \\\n"
        f"       -d '{body}' {running.server.get('url')}/api/v1/auth/login\n"
        "The gateway takes its grants from the server's signed bundle every "
        f"{BUNDLE_POLL_S} s: delete a grant there, and that session ends.\n",
        highlight=False,
        markup=False,
    )
    url = running.server.get("url")
    console.print(
        f"A simulated device's agent linked itself by code (approved as admin); its key and "
        f"certificate are in {running.agent.get('data')}. Link a second one in the browser:\n"
        f"  labgate agent run --server {url} --server-ca {running.root_ca} \\\n"
        f"      --data {running.state_dir / 'device-2'} --local-listen 127.0.0.1:0\n"
        f"then open {url}/link, log in as admin and press Link (or `labgate link --server {url} "
        f"--server-ca {running.root_ca}`).\n",
        highlight=False,
        markup=False,
    )
    shipped = running.release
    console.print(
        f"The device then received an install_release job (job {shipped.get('job_id')}) and "
        f"installed signed release {shipped.get('version')} ({shipped.get('target')}) into its "
        f"slot {shipped.get('slot')}, verified by python-tuf against the root it trusts. "
        f"Repository: {shipped.get('repository')} (labgate release show --repo ...).\n",
        highlight=False,
        markup=False,
    )
    console.print(
        f"Audit log: {running.audit_log}    part logs: {running.logs}\nCtrl-C stops everything."
    )
