"""CRLs: signed by the issuing CA, with a next update, read and enforced by `openssl`."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from labgate.pki import CertificateAuthority, InvalidRequest, Profile


def openssl(*argv: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["openssl", *map(str, argv)], capture_output=True, text=True, timeout=60, check=False
    )


def test_openssl_rejects_a_revoked_certificate_with_the_crl(
    ca: CertificateAuthority, to_files: Any, tmp_path: Path
) -> None:
    kept = to_files(ca.issue(Profile.CLIENT, "alice"), "alice")
    lost = ca.issue(Profile.CLIENT, "mallory")
    lost_files = to_files(lost, "mallory")
    ca.revoke(lost.serial, "keyCompromise")
    crl = tmp_path / "crl.pem"
    crl.write_bytes(ca.crl())
    common = [
        "verify", "-crl_check", "-CRLfile", crl, "-CAfile", ca.directory / "root.crt",
        "-untrusted", ca.directory / "issuing.crt",
    ]  # fmt: skip
    assert openssl(*common, kept.crt).returncode == 0
    refused = openssl(*common, lost_files.crt)
    assert refused.returncode != 0
    assert "certificate revoked" in refused.stdout + refused.stderr


def test_crl_is_signed_by_the_issuing_ca_with_a_24_hour_next_update(
    ca: CertificateAuthority,
) -> None:
    crl = x509.load_pem_x509_crl(ca.crl())
    assert crl.issuer == ca.issuing.subject
    assert crl.is_signature_valid(ca.issuing.public_key())  # type: ignore[arg-type]
    assert crl.next_update_utc is not None
    now = datetime.now(UTC)
    assert crl.last_update_utc <= now - timedelta(minutes=4)
    assert timedelta(hours=23, minutes=59) < crl.next_update_utc - now <= timedelta(hours=24)


def test_crl_numbers_only_grow(ca: CertificateAuthority) -> None:
    numbers = [
        x509.load_pem_x509_crl(ca.crl()).extensions.get_extension_for_class(x509.CRLNumber).value
        for _ in range(3)
    ]
    assert [n.crl_number for n in numbers] == sorted({n.crl_number for n in numbers})


def test_crl_carries_reasons_and_der_output_reads_in_openssl(
    ca: CertificateAuthority, tmp_path: Path
) -> None:
    a = ca.issue(Profile.CLIENT, "a")
    b = ca.issue(Profile.CLIENT, "b")
    ca.revoke(a.serial, "keyCompromise")
    ca.revoke(b.serial)
    der = ca.crl(encoding=Encoding.DER, next_update=timedelta(hours=6))
    path = tmp_path / "crl.der"
    path.write_bytes(der)
    text = openssl("crl", "-inform", "DER", "-in", path, "-noout", "-text")
    assert text.returncode == 0, text.stderr
    assert "Key Compromise" in text.stdout
    crl = x509.load_der_x509_crl(der)
    entry_a = crl.get_revoked_certificate_by_serial_number(a.serial)
    entry_b = crl.get_revoked_certificate_by_serial_number(b.serial)
    assert entry_a is not None and entry_b is not None
    assert entry_a.extensions.get_extension_for_class(x509.CRLReason).value.reason == (
        x509.ReasonFlags.key_compromise
    )
    with pytest.raises(x509.ExtensionNotFound):  # "unspecified" is left out, as RFC 5280 asks
        entry_b.extensions.get_extension_for_class(x509.CRLReason)


def test_expired_revoked_certificates_drop_off_the_crl(
    ca: CertificateAuthority, past_ca: Any
) -> None:
    old = past_ca(5).issue(Profile.CLIENT, "old")  # expired four days ago
    ca.revoke(old.serial, "superseded")
    current = ca.issue(Profile.CLIENT, "current")
    ca.revoke(current.serial, "superseded")
    crl = x509.load_pem_x509_crl(ca.crl())
    assert crl.get_revoked_certificate_by_serial_number(old.serial) is None
    assert crl.get_revoked_certificate_by_serial_number(current.serial) is not None


def test_a_next_update_in_the_past_is_refused(ca: CertificateAuthority) -> None:
    with pytest.raises(InvalidRequest, match="next update must be in the future"):
        ca.crl(next_update=timedelta(0))


def test_revocation_time_is_recorded(ca: CertificateAuthority) -> None:
    issued = ca.issue(Profile.CLIENT, "alice")
    before = datetime.now(UTC).replace(microsecond=0)
    entry = ca.revoke(issued.serial, "cessationOfOperation")
    assert entry.revoked_at is not None and entry.revoked_at >= before - timedelta(seconds=1)
    assert entry.revocation_reason == "cessationOfOperation"
