"""`labgate scan` through Typer's runner and once as a real process: the table, the JSON, the
exit status by the worst severity, and clear errors for bad arguments."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest
from typer.testing import CliRunner

from labgate.cli.app import app
from labgate.scan.errors import TargetError
from labgate.scan.targets import KNOWN_PORTS, parse_targets
from labgate.scpi.access import AccessLevel


def test_json_and_exit_status_by_the_worst_severity(simulator: Callable[..., Any]) -> None:
    with simulator(access_limit=AccessLevel.CONTROLLER, tls_port=None, legacy_port=None) as sim:
        result = CliRunner().invoke(
            app, ["scan", f"127.0.0.1:{sim.plain[1]}", "--json", "--rate", "20"]
        )
    assert result.exit_code == 2, result.output
    report = json.loads(result.output)
    assert report["schema"] == "labgate-scan/1"
    (instrument,) = report["instruments"]
    assert instrument["budget"]["connections"] == 1
    assert instrument["budget"]["total"] == 40
    port = instrument["ports"][0]
    assert port["banner"]["product"] == "QuantStudio3_5"
    assert port["scpi"]["password_free_limit"] == "Controller"
    severities = {f["id"]: f["severity"] for f in instrument["findings"]}
    assert severities["LG-SCPI-002"] == "critical"


def test_a_clean_endpoint_exits_zero(tmp_path: Any) -> None:
    # A TLS endpoint with Mozilla intermediate and no SCPI: labgate's own server profile.
    import socket
    import ssl
    import threading

    from labgate.pki.authority import CertificateAuthority
    from labgate.pki.profiles import Profile
    from labgate.pki.tlsconfig import intermediate_profile

    ca = CertificateAuthority.init(tmp_path / "ca", passphrase=None, unencrypted=True)
    issued = ca.issue(Profile.SERVER, "localhost", dns=["localhost"], ips=["127.0.0.1"])
    issued.write(tmp_path / "server")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    intermediate_profile(context)
    context.load_cert_chain(tmp_path / "server.crt", tmp_path / "server.key")
    server = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        while True:
            try:
                client, _ = server.accept()
            except OSError:
                return
            try:
                with context.wrap_socket(client, server_side=True) as tls:
                    tls.recv(1)
            except (OSError, ssl.SSLError):
                client.close()

    threading.Thread(target=serve, daemon=True).start()
    try:
        result = CliRunner().invoke(
            app, ["scan", f"127.0.0.1:{server.getsockname()[1]}", "--rate", "20"]
        )
    finally:
        server.close()
    assert result.exit_code == 0, result.output
    assert "LG-TLS" not in result.output and "LG-NET" not in result.output


@pytest.mark.parametrize(
    ("argument", "message"),
    [("host:99999", "port 99999"), ("ho st", "expected HOST"), ("[::1", "expected HOST")],
)
def test_bad_targets_are_named(argument: str, message: str) -> None:
    with pytest.raises(TargetError, match=message):
        parse_targets([argument])
    result = CliRunner().invoke(app, ["scan", argument])
    assert result.exit_code == 2
    assert message in result.output


def test_a_host_alone_means_the_instrument_ports_and_one_budget() -> None:
    (target,) = parse_targets(["qs5.lab", "qs5.lab:8000", "qs5.lab:7000"])
    assert target.ports == (*KNOWN_PORTS, 8000)


def test_a_budget_above_the_ceiling_is_refused() -> None:
    result = CliRunner().invoke(app, ["scan", "127.0.0.1", "--rate", "500"])
    assert result.exit_code == 2
    assert "per_second" in result.output


@pytest.mark.slow
def test_scan_as_a_real_process_prints_a_table(simulator: Callable[..., Any]) -> None:
    with simulator(tls_port=None) as sim:
        child = subprocess.run(
            [
                sys.executable,
                "-m",
                "labgate",
                "scan",
                f"127.0.0.1:{sim.plain[1]}",
                f"127.0.0.1:{sim.legacy[1]}",
                "--rate",
                "20",
            ],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "COLUMNS": "200"},
        )
    assert child.returncode == 2, child.stderr
    for expected in ("LG-TLS-001", "LG-SCPI-001", "[[instrument]]", "connections of 40"):
        assert expected in child.stdout
