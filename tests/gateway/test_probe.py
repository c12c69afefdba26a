"""`labgate pin`: the pin it reads is the one the gateway then accepts, on TLS and SSLv3."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from typer.testing import CliRunner

from labgate.cli.app import app
from labgate.gateway.config import Endpoint, Upstream, UpstreamScheme
from labgate.gateway.errors import UpstreamError
from labgate.gateway.pins import spki_pin
from labgate.gateway.probe import probe


def _upstream(scheme: UpstreamScheme, address: tuple[str, int]) -> Upstream:
    return Upstream(scheme=scheme, endpoint=Endpoint(host=address[0], port=address[1]))


def _expected_pin(simulator: Any) -> str:
    cert = x509.load_pem_x509_certificate(simulator.tls_cert.read_bytes())
    return spki_pin(cert.public_bytes(Encoding.DER))


def test_probe_reads_the_pin_over_modern_tls(simulator: Any) -> None:
    seen = probe(_upstream(UpstreamScheme.TLS, simulator.tls))
    assert seen.pin == _expected_pin(simulator)
    assert seen.protocol in ("TLSv1.2", "TLSv1.3")


def test_probe_reads_the_pin_over_sslv3_which_openssl_3_cannot(simulator: Any) -> None:
    seen = probe(_upstream(UpstreamScheme.SSLV3, simulator.legacy))
    assert seen.pin == _expected_pin(simulator)
    assert seen.protocol in ("SSLv3", "TLSv1.0")


def test_plain_upstream_has_nothing_to_pin(simulator: Any) -> None:
    with pytest.raises(UpstreamError, match="plain TCP"):
        probe(_upstream(UpstreamScheme.PLAIN, simulator.plain))


def test_a_plain_port_spoken_to_as_tls_is_a_clear_error(simulator: Any) -> None:
    with pytest.raises(UpstreamError, match=str(simulator.plain[1])):
        probe(_upstream(UpstreamScheme.TLS, simulator.plain), timeout=5)


def test_nothing_listening_is_a_clear_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    with pytest.raises(UpstreamError, match=f"127.0.0.1:{port}"):
        probe(_upstream(UpstreamScheme.TLS, ("127.0.0.1", port)), timeout=5)


def test_cli_prints_a_line_to_paste_into_the_config(simulator: Any) -> None:
    host, port = simulator.legacy
    result = CliRunner().invoke(app, ["pin", f"sslv3://{host}:{port}"])
    assert result.exit_code == 0, result.output
    assert f'upstream_pin = "{_expected_pin(simulator)}"' in result.stdout


def test_cli_refuses_an_unknown_scheme_naming_it() -> None:
    result = CliRunner().invoke(app, ["pin", "ssh://127.0.0.1:22"])
    assert result.exit_code == 1
    assert "unknown scheme 'ssh'" in result.stderr


def test_cli_as_a_real_process_prints_json(simulator: Any) -> None:
    host, port = simulator.tls
    proc = subprocess.run(
        [sys.executable, "-m", "labgate", "pin", "--json", f"tls://{host}:{port}"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["pin"] == _expected_pin(simulator)
