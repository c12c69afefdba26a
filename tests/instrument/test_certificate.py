"""The server certificate: made at start, or the operator's own (--cert/--key), checked first."""

from __future__ import annotations

import os
import socket
import ssl
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from labgate.instrument import ConfigError, SimulatorConfig, run_in_thread
from labgate.instrument.certificate import check_given, make_self_signed


def test_made_certificate_is_rsa_not_a_ca_and_names_loopback(tmp_path: Path) -> None:
    files = make_self_signed(tmp_path)
    certificate = x509.load_pem_x509_certificate(files.cert.read_bytes())
    assert certificate.public_key().key_size == 2048  # type: ignore[union-attr]
    constraints = certificate.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.value.ca is False
    names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in names.get_values_for_type(x509.DNSName)
    assert stat.S_IMODE(os.stat(files.key).st_mode) == 0o600


def test_given_certificate_is_served(tmp_path: Path) -> None:
    given = make_self_signed(tmp_path / "mine")
    config = SimulatorConfig(
        state_dir=tmp_path / "state", plain_port=None, tls_port=0, cert=given.cert, key=given.key
    )
    with run_in_thread(config) as sim:
        assert sim.tls is not None and sim.tls_cert == given.cert
        context = ssl.create_default_context(cafile=str(given.cert))
        with (
            socket.create_connection(sim.tls, timeout=10) as sock,
            context.wrap_socket(sock, server_hostname="localhost") as tls,
        ):
            assert tls.recv(100).startswith(b"READy")
    assert not (tmp_path / "state" / "sim-key.pem").exists()


def test_a_non_rsa_key_is_refused_by_name(tmp_path: Path) -> None:
    key = tmp_path / "ec.pem"
    key.write_bytes(
        ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key.chmod(0o600)
    cert = make_self_signed(tmp_path / "other").cert
    with pytest.raises(ConfigError, match="expected RSA"):
        check_given(cert, key)


def test_a_key_readable_by_others_is_refused(tmp_path: Path) -> None:
    files = make_self_signed(tmp_path)
    files.key.chmod(0o644)
    with pytest.raises(ConfigError, match="0600"):
        check_given(files.cert, files.key)


def test_a_missing_certificate_is_named(tmp_path: Path) -> None:
    files = make_self_signed(tmp_path)
    with pytest.raises(ConfigError, match=r"--cert .*absent\.pem"):
        check_given(tmp_path / "absent.pem", files.key)
