"""The instrument side: a wrong pin or a wrong password is a refused session with the reason
logged (the pin that was seen, never the password); an instrument that is down is a clear error."""

from __future__ import annotations

import json
import logging
import socket
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from labgate.gateway.pins import spki_pin

WRONG_PIN = "sha256/" + "B" * 43 + "="


def _events(gateway: Any, kind: str) -> list[dict[str, Any]]:
    gateway.call(gateway.gateway.audit.flush())
    lines = gateway.gateway.audit.path.read_text().splitlines()
    return [e for e in map(json.loads, lines) if e.get("event") == kind]


def _real_pin(simulator: Any) -> str:
    cert = x509.load_pem_x509_certificate(Path(simulator.tls_cert).read_bytes())
    return spki_pin(cert.public_bytes(Encoding.DER))


@pytest.mark.parametrize("instrument", ["qs5-tls", "qs5-legacy"])
def test_wrong_pin_refuses_and_logs_the_pin_seen(
    gateway_factory: Any,
    pki: Any,
    raw_client: Any,
    simulator: Any,
    instrument: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    gateway = gateway_factory(upstream_pin=WRONG_PIN)
    mark = len(simulator.received())
    line = raw_client(gateway, pki, "alice", instrument).refused()
    assert line.startswith(b"ERRor 0 [IOError]")
    refused = _events(gateway, "refused")[-1]
    assert refused["kind"] == "upstream"
    assert _real_pin(simulator) in refused["reason"] and WRONG_PIN in refused["reason"]
    assert simulator.received()[mark:] == []  # not a byte of SCPI went to an unproven peer
    # An operator's problem: one warning naming the identity, the instrument and the pin seen.
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(
        f"(labgate:user:alice on {instrument}) refused" in w and _real_pin(simulator) in w
        for w in warned
    ), warned


def test_plain_upstream_is_unaffected_by_pins(
    gateway_factory: Any, pki: Any, raw_client: Any
) -> None:
    gateway = gateway_factory(upstream_pin=WRONG_PIN)
    assert raw_client(gateway, pki, "alice", "qs5-plain").line().startswith(b"READy")


def test_wrong_instrument_password_is_refused_and_never_logged(
    gateway_factory: Any, pki: Any, raw_client: Any
) -> None:
    gateway = gateway_factory(password="not-the-password-77")
    line = raw_client(gateway, pki, "alice").refused()
    assert line.startswith(b"ERRor 0 [IOError]")
    assert b"refused the gateway's password (AUTH)" in line
    gateway.call(gateway.gateway.audit.flush())
    assert b"not-the-password-77" not in gateway.gateway.audit.path.read_bytes()


def test_instrument_down_is_a_clear_error(
    gateway_factory: Any, pki: Any, raw_client: Any, tmp_path: Path
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # nothing listens here once the probe is closed

    class Down:
        plain = ("127.0.0.1", port)
        tls = ("127.0.0.1", port)
        legacy = ("127.0.0.1", port)
        tls_cert = Path(__file__)  # unused: the pin is given

    gateway = gateway_factory(Down(), upstream_pin=WRONG_PIN)
    line = raw_client(gateway, pki, "alice").refused()
    assert line.startswith(b"ERRor 0 [IOError]") and b"qs5-plain" in line
    assert _events(gateway, "refused")[-1]["kind"] == "upstream"


def test_pin_of_a_known_certificate(pki: Any) -> None:
    # The pin is the SHA-256 of the SubjectPublicKeyInfo, as `openssl pkey -pubout | sha256` gives.
    import base64
    import hashlib
    import subprocess

    cert = x509.load_pem_x509_certificate(pki.gateway_crt.read_bytes())
    spki_der = subprocess.run(
        ["openssl", "x509", "-pubkey", "-noout", "-in", str(pki.gateway_crt)],
        capture_output=True, check=True,
    ).stdout  # fmt: skip
    der = subprocess.run(
        ["openssl", "pkey", "-pubin", "-outform", "DER"],
        input=spki_der,
        capture_output=True,
        check=True,
    ).stdout
    expected = "sha256/" + base64.b64encode(hashlib.sha256(der).digest()).decode()
    assert spki_pin(cert.public_bytes(Encoding.DER)) == expected
