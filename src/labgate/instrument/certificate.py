"""The simulator's server certificate: made at start, or read from files the operator gives.

The same certificate serves the modern TLS listener (Python `ssl`) and the legacy SSLv3/TLS 1.0
listener (`tlslite-ng`). That forces RSA: SSLv3 knows no ECDSA, and tlslite-ng only does RSA key
exchange with an RSA key. 2048 bits and SHA-256 keep rustls (inside qslib) content.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from labgate.instrument.errors import ConfigError
from labgate.instrument.storage import write_atomically

# A week is long enough for any demo or test run and short enough that a leaked key from a
# forgotten state dir is soon useless.
VALIDITY = datetime.timedelta(days=7)
RSA_BITS = 2048


@dataclass(frozen=True, slots=True, kw_only=True)
class CertificateFiles:
    """Where the PEM certificate and its key live."""

    cert: Path
    key: Path


def make_self_signed(directory: Path, *, hostname: str = "localhost") -> CertificateFiles:
    """Write a fresh self-signed server certificate and its 0600 key into `directory`."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=RSA_BITS)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)])
    now = datetime.datetime.now(datetime.UTC)
    names: list[x509.GeneralName] = [
        x509.DNSName(hostname),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        x509.IPAddress(ipaddress.ip_address("::1")),
    ]
    if hostname != "localhost":
        names.append(x509.DNSName("localhost"))
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
        # Not a CA: rustls refuses a CA certificate presented as the end entity, and a client
        # that trusts this file trusts exactly this one server.
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_encipherment=True,  # SSLv3 / TLS 1.0 RSA key exchange
                content_commitment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    files = CertificateFiles(cert=directory / "sim-cert.pem", key=directory / "sim-key.pem")
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    write_atomically(files.key, key_pem, mode=0o600)
    write_atomically(files.cert, certificate.public_bytes(serialization.Encoding.PEM), mode=0o644)
    return files


def check_given(cert: Path, key: Path) -> CertificateFiles:
    """Refuse certificate files that are missing or that the legacy listener cannot use."""
    for label, path in (("--cert", cert), ("--key", key)):
        if not path.is_file():
            raise ConfigError(f"{label} {path}: no such file; expected a PEM file")
    try:
        loaded = serialization.load_pem_private_key(key.read_bytes(), password=None)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"--key {key}: not an unencrypted PEM private key ({exc})") from None
    if not isinstance(loaded, rsa.RSAPrivateKey):
        raise ConfigError(
            f"--key {key}: a {type(loaded).__name__} key; expected RSA (SSLv3 needs RSA)"
        )
    if os.stat(key).st_mode & 0o077:
        raise ConfigError(f"--key {key}: readable by others; expected mode 0600")
    return CertificateFiles(cert=cert, key=key)
