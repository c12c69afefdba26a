"""Who gets in: every way a client certificate can fail is tried from the client's side, with real
TLS on loopback and the `openssl s_client` a person would use."""

from __future__ import annotations

import json
import socket
import ssl
import subprocess
import time
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


def _forged_client(pki: Any, directory: Path, name: str, uris: list[str]) -> Path:
    """A client certificate signed by the trusted issuing CA, as this CA never issues: SAN URIs
    as given (a misissued or tampered-with profile). Returns the qslib-style combined PEM."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    issuing_key = serialization.load_pem_private_key(
        (pki.directory / "ca" / "issuing.key").read_bytes(), password=None
    )
    issuing = x509.load_pem_x509_certificate(pki.ca.issuing_pem)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(issuing.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuing.public_key()),  # type: ignore[arg-type]
            critical=False,
        )
    )
    if uris:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(u) for u in uris]),
            critical=False,
        )
    certificate = builder.sign(issuing_key, hashes.SHA256())  # type: ignore[arg-type]
    pem = directory / f"{name}.pem"
    pem.write_bytes(
        certificate.public_bytes(serialization.Encoding.PEM)
        + pki.ca.issuing_pem
        + key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return pem


def test_a_certificate_naming_two_identities_is_refused_saying_so(
    gateway: Any, pki: Any, raw_client: Any, simulator: Any, tmp_path: Path
) -> None:
    # Both identities have grants: a certificate that names them both may be neither.
    pem = _forged_client(pki, tmp_path, "two-faced", ["labgate:user:olive", "labgate:user:alice"])
    mark = len(simulator.received())
    line = raw_client(gateway, pki, "olive", pem=pem).refused()
    assert line.startswith(b"ERRor 0 [AccessDenied]"), line
    assert b"2 labgate: SAN URIs" in line
    assert b"labgate:user:olive, labgate:user:alice" in line
    assert b"carries no labgate" not in line
    assert simulator.received()[mark:] == []
    refused = [e for e in _audit(gateway) if e.get("event") == "refused"]
    assert refused[-1]["kind"] == "identity"
    assert "exactly one must name its holder" in refused[-1]["reason"]


def test_a_certificate_naming_nobody_is_refused_saying_so(
    gateway: Any, pki: Any, raw_client: Any, tmp_path: Path
) -> None:
    pem = _forged_client(pki, tmp_path, "anonymous", ["https://example.test/alice"])
    line = raw_client(gateway, pki, "olive", pem=pem).refused()
    assert line.startswith(b"ERRor 0 [AccessDenied]"), line
    assert b"carries no labgate: SAN URI" in line


def test_a_grant_withdrawn_during_the_wait_for_the_instrument_is_refused_with_its_reason(
    gateway_factory: Any,
    pki: Any,
    raw_client: Any,
    config_writer: Any,
    simulator: Any,
    tmp_path: Path,
) -> None:
    from labgate.gateway.config import load_config

    one_slot = "max_upstream = 1\nupstream_wait = 20\nupstream_idle = 0"
    gateway = gateway_factory(extra_instrument=one_slot)
    holder = raw_client(gateway, pki, "alice")
    assert holder.line().startswith(b"READy")
    waiting = raw_client(gateway, pki, "olive")  # verified, admitted, now waiting for the slot
    deadline = time.monotonic() + 10
    while gateway.run(lambda: gateway.gateway.slots["qs5-plain"]._waiting) < 1:
        assert time.monotonic() < deadline, "the second client never waited for the slot"
        time.sleep(0.05)
    path = config_writer(tmp_path, pki, simulator, grants={"alice": "Controller"},
                         extra_instrument=one_slot)  # fmt: skip
    gateway.call(gateway.gateway.reload(load_config(path)))
    assert holder.ask("0 QUIT") == b"OK 0"  # the slot is free: the waiting one is judged again
    line = waiting.refused()
    assert line.startswith(b"ERRor 0 [AccessDenied]"), line
    assert b"no grant for labgate:user:olive" in line
    assert b"while waiting for the instrument" in line
