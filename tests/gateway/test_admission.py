"""Who gets in: every way a client certificate can fail is tried from the client's side, with real
TLS on loopback and the `openssl s_client` a person would use."""

from __future__ import annotations

import json
import socket
import ssl
import subprocess
from pathlib import Path
from typing import Any

import pytest


def _context(pki: Any, who: str | None, *, ca: Path | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca or pki.root))
    if who is not None:
        client = pki.clients[who]
        context.load_cert_chain(str(client.pem))
    return context


def _first_line(
    gateway: Any, context: ssl.SSLContext, instrument: str = "qs5-plain", server_name: str = ""
) -> bytes:
    """Connect, handshake, and read the first line the gateway sends (b"" if it just closes)."""
    host, port = gateway.address(instrument)
    server_name = server_name or instrument
    with (
        socket.create_connection((host, port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname=server_name) as tls,
    ):
        data = b""
        while not data.endswith(b"\n"):
            chunk = tls.recv(4096)
            if not chunk:
                break
            data += chunk
        return data


def _audit(gateway: Any) -> list[dict[str, Any]]:
    gateway.call(gateway.gateway.audit.flush())
    lines = gateway.gateway.audit.path.read_text().splitlines()
    return [json.loads(line) for line in lines]


def _refused(gateway: Any, context: ssl.SSLContext, **where: str) -> str:
    """Try to get in; return the gateway's logged reason for refusing (the test fails if the
    client got a greeting). The client sees an alert or just the end of the stream."""
    try:
        line = _first_line(gateway, context, **where)
    except (ssl.SSLError, ConnectionResetError):
        line = b""
    assert not line.startswith(b"READy")
    refusals = [e for e in _audit(gateway) if e.get("event") == "handshake_failure"]
    assert refusals, "no refusal recorded"
    return str(refusals[-1]["reason"])


def test_granted_client_gets_the_instruments_greeting(gateway: Any, pki: Any) -> None:
    assert _first_line(gateway, _context(pki, "alice")).startswith(b"READy ")


def test_client_without_certificate_is_refused(gateway: Any, pki: Any) -> None:
    assert "peer did not return a certificate" in _refused(gateway, _context(pki, None)).lower()


def test_certificate_from_another_ca_is_refused(gateway: Any, pki: Any) -> None:
    assert "unable to get local issuer" in _refused(gateway, _context(pki, "stranger"))


def test_expired_certificate_is_refused(gateway: Any, pki: Any) -> None:
    assert "certificate has expired" in _refused(gateway, _context(pki, "expired"))


def test_revoked_certificate_is_refused(gateway: Any, pki: Any) -> None:
    assert "certificate revoked" in _refused(gateway, _context(pki, "revoked"))


def test_server_certificate_is_refused_as_a_client_certificate(gateway: Any, pki: Any) -> None:
    assert "unsuitable certificate purpose" in _refused(gateway, _context(pki, "server-cert"))


def test_identity_without_grant_is_refused_before_the_instrument_is_contacted(
    gateway: Any, pki: Any, simulator: Any, raw_client: Any
) -> None:
    mark = len(simulator.received())
    line = raw_client(gateway, pki, "nobody").refused()
    assert line.startswith(b"ERRor 0 [AccessDenied]")
    assert b"labgate:user:nobody" in line
    assert simulator.received()[mark:] == []
    refused = [e for e in _audit(gateway) if e.get("event") == "refused"]
    assert refused[-1]["identity"] == "labgate:user:nobody"
    assert refused[-1]["kind"] == "no_grant"


def _s_client(
    gateway: Any, pki: Any, *flags: str, who: str | None = "alice"
) -> subprocess.CompletedProcess[str]:
    host, port = gateway.address("qs5-plain")
    command = ["openssl", "s_client", "-connect", f"{host}:{port}", "-servername", "qs5-plain",
               "-CAfile", str(pki.root), "-verify_return_error", "-ign_eof", *flags]  # fmt: skip
    if who is not None:
        client = pki.clients[who]
        # -cert sends the leaf alone; -cert_chain adds the issuing CA the gateway needs.
        command += [
            "-cert",
            str(client.crt),
            "-cert_chain",
            str(client.crt),
            "-key",
            str(client.key),
        ]
    return subprocess.run(
        command, input="0 QUIT\n", capture_output=True, text=True, timeout=30, check=False
    )


def test_openssl_tls11_is_refused(gateway: Any, pki: Any) -> None:
    result = _s_client(gateway, pki, "-tls1_1")
    assert "READy" not in result.stdout
    assert result.returncode != 0


@pytest.mark.parametrize("version", ["-tls1_2", "-tls1_3"])
def test_openssl_tls12_and_tls13_with_client_certificate_work(
    gateway: Any, pki: Any, version: str
) -> None:
    result = _s_client(gateway, pki, version)
    assert "READy -session=" in result.stdout, result.stderr
    assert "OK 0" in result.stdout


def test_shared_listener_picks_the_instrument_by_server_name(
    gateway_factory: Any, pki: Any
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    shared = f'listen = "127.0.0.1:{port}"'
    running = gateway_factory(shared_listen=shared)
    assert running.gateway.addresses["qs5-plain"] == running.gateway.addresses["qs5-tls"]
    context = _context(pki, "alice")
    assert _first_line(running, context, "qs5-plain").startswith(b"READy")
    assert _first_line(running, context, "qs5-tls").startswith(b"READy")
    reason = _refused(running, context, instrument="qs5-plain", server_name="localhost")
    assert "server name (SNI) names no instrument" in reason
