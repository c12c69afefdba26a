"""Accepting connections on both event loops: `labgate gateway` runs on uvloop (every other gateway
test does too), and a gateway embedded in another program runs on whatever loop that has. On the
standard loop, too, a client is served, a quick client's ClientHello is never lost, every refused
handshake is recorded with its reason, and a silent connection meets the handshake timeout."""

from __future__ import annotations

import json
import socket
import ssl
import time
from typing import Any


def _audit(gateway: Any, event: str) -> list[dict[str, Any]]:
    gateway.call(gateway.gateway.audit.flush())
    lines = gateway.gateway.audit.path.read_text().splitlines()
    return [r for r in map(json.loads, lines) if r.get("event") == event]


def test_standard_loop_serves_a_client_that_speaks_at_once(
    standard_gateway_factory: Any, pki: Any, raw_client: Any
) -> None:
    gateway = standard_gateway_factory()
    client = raw_client(gateway, pki, "alice")  # the ClientHello goes out as soon as it connects
    assert client.line().startswith(b"READy")
    assert client.ask("0 ACC -stealth=false -exclusive=false Observer") == b"OK 0"
    assert client.ask("1 OPEN").startswith(b"ERRor 1 [InsufficientAccess]")


def test_standard_loop_records_why_a_handshake_failed(
    standard_gateway_factory: Any, pki: Any
) -> None:
    gateway = standard_gateway_factory()
    context = ssl.create_default_context(cafile=str(pki.root))  # no client certificate
    try:
        with (
            socket.create_connection(gateway.address("qs5-plain"), timeout=10) as raw,
            context.wrap_socket(raw, server_hostname="qs5-plain") as tls,
        ):
            line = tls.recv(4096)
    except (ssl.SSLError, ConnectionResetError):  # the alert, or just the end of the stream
        line = b""
    assert line == b""
    deadline = time.monotonic() + 5
    while not (refusals := _audit(gateway, "handshake_failure")):
        assert time.monotonic() < deadline, "no refusal recorded"
        time.sleep(0.05)
    assert "peer did not return a certificate" in refusals[-1]["reason"].lower()


def test_standard_loop_drops_a_silent_connection(standard_gateway_factory: Any) -> None:
    gateway = standard_gateway_factory(extra_gateway="handshake_timeout = 0.3")
    with socket.create_connection(gateway.address("qs5-plain"), timeout=10) as silent:
        started = time.monotonic()
        assert silent.recv(1) == b""
        assert time.monotonic() - started < 5
    assert _audit(gateway, "handshake_failure")[-1]["kind"] == "handshake_timeout"
