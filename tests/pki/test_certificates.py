"""Issued certificates as `openssl`, an outside peer, reads and verifies them."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from labgate.pki import CertificateAuthority, KeyType, Profile


def openssl(*argv: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["openssl", *map(str, argv)], capture_output=True, text=True, timeout=60, check=False
    )


def verify(ca_dir: Path, *certs: Path, crl: Path | None = None) -> subprocess.CompletedProcess[str]:
    extra: list[object] = ["-crl_check", "-CRLfile", crl] if crl else []
    return openssl(
        "verify", "-CAfile", ca_dir / "root.crt", "-untrusted", ca_dir / "issuing.crt",
        *extra, *certs,
    )  # fmt: skip


@pytest.mark.parametrize("profile", list(Profile))
def test_openssl_verify_accepts_every_profile(
    ca: CertificateAuthority, to_files: Any, profile: Profile
) -> None:
    files = to_files(
        ca.issue(
            profile,
            "holder-1",
            dns=["holder-1.lab.example"] if profile is not Profile.CLIENT else [],
        ),
        "leaf",
    )
    result = verify(ca.directory, files.crt)
    assert result.returncode == 0, result.stderr
    assert f"{files.crt}: OK" in result.stdout


@pytest.mark.parametrize("profile", list(Profile))
def test_openssl_verify_with_purpose_matches_the_profile(
    ca: CertificateAuthority, to_files: Any, profile: Profile
) -> None:
    dns = ["h.lab.example"] if profile is not Profile.CLIENT else []
    files = to_files(ca.issue(profile, "h", dns=dns), "leaf")
    as_server = verify_purpose(ca.directory, files.crt, "sslserver")
    as_client = verify_purpose(ca.directory, files.crt, "sslclient")
    assert (as_server.returncode == 0) == (profile is not Profile.CLIENT), as_server.stderr
    assert (as_client.returncode == 0) == (profile is not Profile.SERVER), as_client.stderr


def verify_purpose(ca_dir: Path, cert: Path, purpose: str) -> subprocess.CompletedProcess[str]:
    return openssl(
        "verify", "-purpose", purpose, "-x509_strict", "-CAfile", ca_dir / "root.crt",
        "-untrusted", ca_dir / "issuing.crt", cert,
    )  # fmt: skip


def test_openssl_refuses_a_certificate_from_another_ca(
    ca: CertificateAuthority, other_ca: CertificateAuthority, to_files: Any
) -> None:
    files = to_files(other_ca.issue(Profile.CLIENT, "alice"), "stranger")
    result = verify(ca.directory, files.crt)
    assert result.returncode != 0
    assert "unable to get local issuer certificate" in result.stdout + result.stderr


def test_openssl_x509_text_shows_every_extension(ca: CertificateAuthority, to_files: Any) -> None:
    files = to_files(ca.issue(Profile.DEVICE, "qs5-9", dns=["qs5-9.lab"], ips=["10.1.2.3"]), "d")
    text = openssl("x509", "-in", files.crt, "-noout", "-text").stdout
    for expected in (
        "X509v3 Basic Constraints: critical",
        "CA:FALSE",
        "X509v3 Key Usage: critical",
        "Digital Signature",
        "X509v3 Extended Key Usage:",
        "TLS Web Client Authentication, TLS Web Server Authentication",
        "X509v3 Subject Key Identifier:",
        "X509v3 Authority Key Identifier:",
        "X509v3 Subject Alternative Name:",
        "DNS:qs5-9.lab, IP Address:10.1.2.3, URI:labgate:device:qs5-9",
        "Subject: CN = qs5-9",
    ):
        assert expected in text, expected


def test_openssl_x509_text_shows_the_ca_constraints(ca: CertificateAuthority) -> None:
    root = openssl("x509", "-in", ca.directory / "root.crt", "-noout", "-text").stdout
    issuing = openssl("x509", "-in", ca.directory / "issuing.crt", "-noout", "-text").stdout
    assert "CA:TRUE, pathlen:1" in root
    assert "CA:TRUE, pathlen:0" in issuing
    for text in (root, issuing):
        assert "Certificate Sign, CRL Sign" in text


@pytest.mark.parametrize("key_type", list(KeyType))
def test_every_ca_key_type_issues_certificates_openssl_accepts(
    tmp_path: Path, passphrase: bytes, key_type: KeyType, to_files: Any
) -> None:
    with CertificateAuthority.init(tmp_path / "ca", key_type=key_type, passphrase=passphrase) as ca:
        files = to_files(ca.issue(Profile.CLIENT, "alice", key_type=key_type), "alice")
        crl = tmp_path / "crl.pem"
        crl.write_bytes(ca.crl())
    result = verify(tmp_path / "ca", files.crt, crl=crl)
    assert result.returncode == 0, result.stdout + result.stderr
