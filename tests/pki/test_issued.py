"""What the CA hands out, as files: chain order, combined PEM, PKCS#12 that openssl reads."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest
from cryptography import x509

from labgate.pki import CertificateAuthority, InvalidRequest, Profile


def test_crt_holds_the_leaf_then_the_issuing_ca(ca: CertificateAuthority, tmp_path: Path) -> None:
    issued = ca.issue(Profile.CLIENT, "alice")
    paths = issued.write(tmp_path / "alice", combined=True)
    assert [p.name for p in paths] == ["alice.key", "alice.crt", "alice.pem"]
    chain = x509.load_pem_x509_certificates((tmp_path / "alice.crt").read_bytes())
    assert chain == [issued.certificate, ca.issuing]
    combined = (tmp_path / "alice.pem").read_bytes()
    assert combined.startswith(issued.chain_pem)
    assert combined.endswith(issued.key_pem or b"?")
    assert stat.S_IMODE((tmp_path / "alice.pem").stat().st_mode) == 0o600


def test_pkcs12_is_readable_by_openssl_with_its_password(
    ca: CertificateAuthority, tmp_path: Path
) -> None:
    issued = ca.issue(Profile.CLIENT, "alice")
    issued.write(tmp_path / "alice", p12_password=b"p12 secret")
    p12 = tmp_path / "alice.p12"
    assert stat.S_IMODE(p12.stat().st_mode) == 0o600
    # The password goes through the environment, never argv.
    env = {**os.environ, "P12PASS": "p12 secret"}
    read = subprocess.run(
        ["openssl", "pkcs12", "-in", p12, "-passin", "env:P12PASS", "-nodes"],
        capture_output=True, text=True, env=env, timeout=60, check=False,
    )  # fmt: skip
    assert read.returncode == 0, read.stderr
    assert "BEGIN PRIVATE KEY" in read.stdout
    certs = x509.load_pem_x509_certificates(read.stdout.encode())
    assert issued.certificate in certs and ca.issuing in certs
    wrong = subprocess.run(
        ["openssl", "pkcs12", "-in", p12, "-passin", "env:P12PASS", "-nodes"],
        capture_output=True, text=True, env={**os.environ, "P12PASS": "guess"}, timeout=60,
        check=False,
    )  # fmt: skip
    assert wrong.returncode != 0
    assert "mac verify error" in wrong.stderr.lower()


def test_a_csr_certificate_has_no_key_to_bundle(ca: CertificateAuthority, tmp_path: Path) -> None:
    issued = ca.renew(ca.issue(Profile.CLIENT, "alice").certificate_pem)
    with pytest.raises(InvalidRequest, match="requester holds it"):
        issued.write(tmp_path / "a", combined=True)
    with pytest.raises(InvalidRequest, match="requester holds it"):
        issued.write(tmp_path / "a", p12_password=b"x")
    assert list(tmp_path.glob("a.*")) == []
    assert [p.name for p in issued.write(tmp_path / "a")] == ["a.crt"]


def test_the_private_key_never_shows_in_a_repr(ca: CertificateAuthority) -> None:
    issued = ca.issue(Profile.CLIENT, "alice")
    assert issued.key_pem is not None
    assert b"PRIVATE KEY" in issued.key_pem
    assert "PRIVATE" not in repr(issued)
