"""Real TLS handshakes on loopback with certificates from the CA, and the ones that must fail."""

from __future__ import annotations

import socket
import ssl
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from labgate.pki import CertificateAuthority, Profile
from labgate.pki.tlsconfig import client_context, server_context

TIMEOUT = 20


@dataclass
class Outcome:
    client_error: BaseException | None
    server_error: BaseException | None
    peer_certificate: Any

    @property
    def ok(self) -> bool:
        return self.client_error is None and self.server_error is None


def handshake(
    server: ssl.SSLContext, client: ssl.SSLContext, hostname: str = "localhost"
) -> Outcome:
    """One connection over 127.0.0.1; the server answers b"ok" only after verifying the client."""
    outcome = Outcome(None, None, None)
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.settimeout(TIMEOUT)
        port = listener.getsockname()[1]

        def serve() -> None:
            try:
                conn, _ = listener.accept()
                conn.settimeout(TIMEOUT)
                with server.wrap_socket(conn, server_side=True) as tls:
                    outcome.peer_certificate = tls.getpeercert()
                    tls.sendall(b"ok")
            except (ssl.SSLError, OSError) as exc:
                outcome.server_error = exc

        thread = threading.Thread(target=serve)
        thread.start()
        try:
            with (
                socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as raw,
                client.wrap_socket(raw, server_hostname=hostname) as tls,
            ):
                # In TLS 1.3 the server judges the client's certificate after the client's
                # handshake ends: a refusal arrives as an alert on this read.
                if tls.recv(2) != b"ok":
                    raise ConnectionError("server closed without answering")
        except (ssl.SSLError, OSError) as exc:
            outcome.client_error = exc
        thread.join(TIMEOUT)
    return outcome


@dataclass
class Material:
    root: Path
    server: Any
    client: Any


@pytest.fixture
def material(ca: CertificateAuthority, to_files: Any) -> Material:
    return Material(
        root=ca.directory / "root.crt",
        server=to_files(ca.issue(Profile.SERVER, "bench-host", dns=["localhost"]), "server"),
        client=to_files(ca.issue(Profile.CLIENT, "alice"), "alice"),
    )


def _server(m: Material, files: Any = None, crl: Path | None = None) -> ssl.SSLContext:
    files = files or m.server
    return server_context(chain=files.crt, key=files.key, client_ca=m.root, crl=crl)


def _client(m: Material, files: Any = None, check_hostname: bool = True) -> ssl.SSLContext:
    files = files or m.client
    return client_context(ca=m.root, chain=files.crt, key=files.key, check_hostname=check_hostname)


def test_server_and_client_certificates_from_the_ca_complete_a_handshake(
    material: Material,
) -> None:
    outcome = handshake(_server(material), _client(material))
    assert outcome.ok, outcome
    assert outcome.peer_certificate is not None
    sans = outcome.peer_certificate["subjectAltName"]
    assert ("URI", "labgate:user:alice") in sans


def test_combined_pem_works_as_a_client_certificate(material: Material) -> None:
    client = client_context(ca=material.root, chain=material.client.pem)
    assert handshake(_server(material), client).ok


def test_client_certificate_offered_as_a_server_certificate_is_refused(
    material: Material,
) -> None:
    # Hostname checking off: the only thing left to fail on is the certificate's purpose.
    outcome = handshake(_server(material, material.client), _client(material, check_hostname=False))
    assert isinstance(outcome.client_error, ssl.SSLCertVerificationError)
    assert "unsuitable certificate purpose" in outcome.client_error.verify_message


def test_server_certificate_offered_as_a_client_certificate_is_refused(
    material: Material,
) -> None:
    outcome = handshake(_server(material), _client(material, material.server))
    assert isinstance(outcome.server_error, ssl.SSLCertVerificationError)
    assert "unsuitable certificate purpose" in outcome.server_error.verify_message


def test_expired_server_certificate_is_refused(
    material: Material, past_ca: Any, to_files: Any
) -> None:
    old = to_files(past_ca(5).issue(Profile.SERVER, "old", dns=["localhost"], days=1), "old")
    outcome = handshake(_server(material, old), _client(material))
    assert isinstance(outcome.client_error, ssl.SSLCertVerificationError)
    assert "certificate has expired" in outcome.client_error.verify_message


def test_expired_client_certificate_is_refused(
    material: Material, past_ca: Any, to_files: Any
) -> None:
    old = to_files(past_ca(3).issue(Profile.CLIENT, "bob"), "bob")
    outcome = handshake(_server(material), _client(material, old))
    assert isinstance(outcome.server_error, ssl.SSLCertVerificationError)
    assert "certificate has expired" in outcome.server_error.verify_message
    assert outcome.client_error is not None


def test_client_certificate_from_another_ca_is_refused(
    material: Material, other_ca: CertificateAuthority, to_files: Any
) -> None:
    stranger = to_files(other_ca.issue(Profile.CLIENT, "alice"), "stranger")
    outcome = handshake(_server(material), _client(material, stranger))
    assert isinstance(outcome.server_error, ssl.SSLCertVerificationError)
    assert "unable to get local issuer certificate" in outcome.server_error.verify_message


def test_server_certificate_from_another_ca_is_refused(
    material: Material, other_ca: CertificateAuthority, to_files: Any
) -> None:
    stranger = to_files(other_ca.issue(Profile.SERVER, "h", dns=["localhost"]), "h")
    outcome = handshake(_server(material, stranger), _client(material))
    assert isinstance(outcome.client_error, ssl.SSLCertVerificationError)
    assert "unable to get local issuer certificate" in outcome.client_error.verify_message


def test_server_certificate_for_another_name_is_refused(material: Material) -> None:
    outcome = handshake(_server(material), _client(material), hostname="intranet.example")
    assert isinstance(outcome.client_error, ssl.SSLCertVerificationError)
    assert "Hostname mismatch" in outcome.client_error.verify_message


def test_client_without_a_certificate_is_refused(material: Material) -> None:
    outcome = handshake(_server(material), client_context(ca=material.root))
    assert isinstance(outcome.server_error, ssl.SSLError)
    assert "PEER_DID_NOT_RETURN_A_CERTIFICATE" in str(outcome.server_error)


def test_revoked_client_certificate_is_refused_with_the_crl(
    material: Material, ca: CertificateAuthority, to_files: Any, tmp_path: Path
) -> None:
    revoked = ca.issue(Profile.CLIENT, "mallory")
    mallory = to_files(revoked, "mallory")
    ca.revoke(revoked.serial, "keyCompromise")
    crl = tmp_path / "crl.pem"
    crl.write_bytes(ca.crl())
    outcome = handshake(_server(material, crl=crl), _client(material, mallory))
    assert isinstance(outcome.server_error, ssl.SSLCertVerificationError)
    assert "certificate revoked" in outcome.server_error.verify_message
    assert handshake(_server(material, crl=crl), _client(material)).ok


@pytest.mark.parametrize("profile", [Profile.GATEWAY, Profile.DEVICE])
def test_gateway_and_device_certificates_both_serve_and_authenticate(
    material: Material, ca: CertificateAuthority, to_files: Any, profile: Profile
) -> None:
    both = to_files(ca.issue(profile, "site-a", dns=["localhost"]), "both")
    assert handshake(_server(material, both), _client(material)).ok
    assert handshake(_server(material), _client(material, both)).ok


def test_tls_1_2_clients_are_held_to_the_same_rules(
    material: Material, past_ca: Any, to_files: Any
) -> None:
    def tls12(files: Any) -> ssl.SSLContext:
        context = _client(material, files)
        context.maximum_version = ssl.TLSVersion.TLSv1_2
        return context

    assert handshake(_server(material), tls12(material.client)).ok
    old = to_files(past_ca(3).issue(Profile.CLIENT, "bob"), "bob")
    outcome = handshake(_server(material), tls12(old))
    assert isinstance(outcome.server_error, ssl.SSLCertVerificationError)
    assert "certificate has expired" in outcome.server_error.verify_message
    assert isinstance(outcome.client_error, ssl.SSLError)
