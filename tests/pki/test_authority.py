"""The authority's life cycle: init, open, issue, renew, revoke, and the errors on each path."""

from __future__ import annotations

import os
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from labgate.pki import (
    AlreadyRevoked,
    CaExists,
    CaExpired,
    CaNotFound,
    CertificateAuthority,
    CorruptKey,
    InsecureKeyFile,
    InvalidRequest,
    PassphraseRequired,
    Profile,
    ProfileViolation,
    UnknownCertificate,
    WrongPassphrase,
)
from labgate.pki.authority import CA_FILES


def _snapshot(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in directory.iterdir() if p.is_file()}


def test_init_makes_a_root_and_an_issuing_ca_with_the_stated_lifetimes(
    ca: CertificateAuthority,
) -> None:
    root, issuing = ca.root, ca.issuing
    assert root.subject == root.issuer
    assert issuing.issuer == root.subject
    issuing.verify_directly_issued_by(root)
    root_life = root.not_valid_after_utc - root.not_valid_before_utc
    issuing_life = issuing.not_valid_after_utc - issuing.not_valid_before_utc
    assert timedelta(days=3650) <= root_life <= timedelta(days=3654)
    assert timedelta(days=730) <= issuing_life <= timedelta(days=732)
    root_bc = root.extensions.get_extension_for_class(x509.BasicConstraints)
    issuing_bc = issuing.extensions.get_extension_for_class(x509.BasicConstraints)
    assert root_bc.critical and root_bc.value.ca and root_bc.value.path_length == 1
    assert issuing_bc.critical and issuing_bc.value.ca and issuing_bc.value.path_length == 0


def test_ca_keys_are_encrypted_and_private_from_birth(ca_dir: Path) -> None:
    for name in ("root.key", "issuing.key"):
        path = ca_dir / name
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert path.read_bytes().startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    assert stat.S_IMODE(ca_dir.stat().st_mode) == 0o700


def test_key_files_are_0600_even_under_a_permissive_umask(
    tmp_path: Path, passphrase: bytes
) -> None:
    previous = os.umask(0)
    try:
        with CertificateAuthority.init(tmp_path / "ca", passphrase=passphrase) as ca:
            ca.issue(Profile.CLIENT, "alice").write(tmp_path / "alice", combined=True)
    finally:
        os.umask(previous)
    for path in (tmp_path / "ca" / "issuing.key", tmp_path / "alice.key", tmp_path / "alice.pem"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert stat.S_IMODE((tmp_path / "alice.crt").stat().st_mode) == 0o644


def test_init_refuses_to_overwrite_an_existing_ca(ca_dir: Path, passphrase: bytes) -> None:
    before = _snapshot(ca_dir)
    with pytest.raises(CaExists, match="refusing to overwrite"):
        CertificateAuthority.init(ca_dir, passphrase=passphrase)
    assert _snapshot(ca_dir) == before


@pytest.mark.parametrize("leftover", CA_FILES)
def test_init_refuses_a_directory_holding_any_part_of_a_ca(
    tmp_path: Path, passphrase: bytes, leftover: str
) -> None:
    (tmp_path / leftover).write_bytes(b"left from a crash")
    with pytest.raises(CaExists, match=leftover):
        CertificateAuthority.init(tmp_path, passphrase=passphrase)
    assert [p.name for p in tmp_path.iterdir()] == [leftover]


def test_init_without_a_passphrase_is_refused_unless_unencrypted_is_asked(tmp_path: Path) -> None:
    with pytest.raises(PassphraseRequired):
        CertificateAuthority.init(tmp_path / "a", passphrase=None)
    with pytest.raises(PassphraseRequired):
        CertificateAuthority.init(tmp_path / "b", passphrase=b"")
    assert not (tmp_path / "a").exists()
    with CertificateAuthority.init(tmp_path / "c", passphrase=None, unencrypted=True):
        pass
    assert (tmp_path / "c" / "issuing.key").read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    with CertificateAuthority.open(tmp_path / "c", passphrase=None) as ca:
        assert ca.issue(Profile.CLIENT, "demo").key_pem is not None


def test_wrong_passphrase_is_a_clear_error_that_keeps_the_secret(
    ca_dir: Path, passphrase: bytes
) -> None:
    with pytest.raises(WrongPassphrase, match=r"issuing\.key") as caught:
        CertificateAuthority.open(ca_dir, passphrase=b"not the passphrase")
    assert "not the passphrase" not in str(caught.value)
    assert passphrase.decode() not in str(caught.value)


def test_missing_passphrase_for_encrypted_keys_is_a_clear_error(ca_dir: Path) -> None:
    with pytest.raises(PassphraseRequired, match="LABGATE_CA_PASSPHRASE"):
        CertificateAuthority.open(ca_dir, passphrase=None)


def test_corrupt_key_is_a_clear_error(ca_dir: Path, passphrase: bytes) -> None:
    (ca_dir / "issuing.key").write_bytes(b"-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END")
    with pytest.raises(CorruptKey, match=r"issuing\.key"):
        CertificateAuthority.open(ca_dir, passphrase=passphrase)


def test_a_key_that_is_not_the_certificates_is_refused(ca_dir: Path, passphrase: bytes) -> None:
    # An attacker (or an operator's mistake) swaps in another key: the CA must not sign with it.
    other = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(passphrase),
    )
    (ca_dir / "issuing.key").write_bytes(other)
    with pytest.raises(CorruptKey, match=r"is not the key of issuing\.crt"):
        CertificateAuthority.open(ca_dir, passphrase=passphrase)


def test_open_names_what_is_missing(tmp_path: Path) -> None:
    with pytest.raises(CaNotFound, match=r"root\.crt"):
        CertificateAuthority.open(tmp_path, passphrase=b"x")


def test_expired_issuing_ca_refuses_to_sign_and_writes_nothing(
    tmp_path: Path, passphrase: bytes
) -> None:
    long_ago = datetime.now(UTC) - timedelta(days=800)
    CertificateAuthority.init(
        tmp_path / "ca", passphrase=passphrase, clock=lambda: long_ago
    ).close()
    with CertificateAuthority.open(tmp_path / "ca", passphrase=passphrase) as ca:
        before = ca.inventory.entries()
        with pytest.raises(CaExpired, match=r"issuing CA .* expired"):
            ca.issue(Profile.CLIENT, "alice")
        with pytest.raises(CaExpired):
            ca.crl()
        assert ca.inventory.entries() == before


def test_leaf_never_outlives_its_issuing_ca(ca: CertificateAuthority) -> None:
    issued = ca.issue(Profile.SERVER, "host", dns=["host.example"], days=825)
    assert issued.certificate.not_valid_after_utc <= ca.issuing.not_valid_after_utc


@pytest.mark.parametrize(
    ("profile", "lifetime"),
    [
        (Profile.CLIENT, timedelta(hours=24)),
        (Profile.SERVER, timedelta(days=90)),
        (Profile.DEVICE, timedelta(days=90)),
        (Profile.GATEWAY, timedelta(days=90)),
    ],
)
def test_default_lifetimes_follow_the_profile(
    ca: CertificateAuthority, profile: Profile, lifetime: timedelta
) -> None:
    cert = ca.issue(
        profile, "n1", dns=["n1.example"] if profile is not Profile.CLIENT else []
    ).certificate
    # Certificates are backdated five minutes against clock skew.
    assert cert.not_valid_after_utc - cert.not_valid_before_utc == lifetime + timedelta(minutes=5)


@pytest.mark.parametrize("days", [0, -1, 826])
def test_out_of_range_lifetimes_are_refused(ca: CertificateAuthority, days: int) -> None:
    with pytest.raises(InvalidRequest, match="--days"):
        ca.issue(Profile.CLIENT, "alice", days=days)


def test_every_leaf_has_key_usage_eku_and_key_identifiers_with_deliberate_criticality(
    ca: CertificateAuthority,
) -> None:
    cert = ca.issue(
        Profile.GATEWAY, "site-a", dns=["gw.lab.example"], ips=["127.0.0.1"]
    ).certificate
    ext = cert.extensions
    assert ext.get_extension_for_class(x509.BasicConstraints).critical
    assert not ext.get_extension_for_class(x509.BasicConstraints).value.ca
    ku = ext.get_extension_for_class(x509.KeyUsage)
    assert ku.critical and ku.value.digital_signature and not ku.value.key_cert_sign
    eku = ext.get_extension_for_class(x509.ExtendedKeyUsage)
    assert not eku.critical
    assert set(eku.value) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    ski = ext.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert ski == x509.SubjectKeyIdentifier.from_public_key(cert.public_key())
    aki = ext.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    issuing_ski = ca.issuing.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert aki.key_identifier == issuing_ski.digest
    san = ext.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == ["labgate:gateway:site-a"]
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "site-a"


def test_serials_are_random_and_at_least_64_bits(ca: CertificateAuthority) -> None:
    serials = [ca.issue(Profile.CLIENT, f"u{i}").serial for i in range(20)]
    assert len(set(serials)) == 20
    assert all(s.bit_length() >= 64 for s in serials)


def test_issued_certificate_is_in_the_inventory_before_it_is_returned(
    ca: CertificateAuthority,
) -> None:
    issued = ca.issue(Profile.DEVICE, "qs5-7", dns=["qs5-7.lab"])
    entry = ca.inventory.get(issued.serial)
    assert entry is not None
    assert entry.certificate_pem == issued.certificate_pem
    assert (entry.profile, entry.name, entry.identity) == (
        "device",
        "qs5-7",
        "labgate:device:qs5-7",
    )


def test_renew_keeps_subject_and_sans_with_a_new_serial(ca: CertificateAuthority) -> None:
    old = ca.issue(Profile.SERVER, "web", dns=["web.lab", "alt.lab"], ips=["10.0.0.5"])
    new = ca.renew(old.certificate_pem)
    assert new.serial != old.serial
    assert new.certificate.subject == old.certificate.subject
    san = x509.SubjectAlternativeName
    assert (
        new.certificate.extensions.get_extension_for_class(san).value
        == old.certificate.extensions.get_extension_for_class(san).value
    )
    assert new.certificate.public_key() == old.certificate.public_key()
    assert new.key_pem is None
    entry = ca.inventory.get(new.serial)
    assert entry is not None and entry.renewed_from == old.serial


def test_renew_with_new_key_makes_a_new_key_pair(ca: CertificateAuthority) -> None:
    old = ca.issue(Profile.CLIENT, "alice")
    new = ca.renew(old.certificate_pem, new_key=True)
    assert new.key_pem is not None
    assert new.certificate.public_key() != old.certificate.public_key()
    assert new.identity == "labgate:user:alice"


def test_renew_refuses_a_revoked_certificate(ca: CertificateAuthority) -> None:
    old = ca.issue(Profile.CLIENT, "alice")
    ca.revoke(old.serial, "keyCompromise")
    with pytest.raises(AlreadyRevoked, match="cannot be renewed"):
        ca.renew(old.certificate_pem)


def test_renew_refuses_a_certificate_from_another_ca(
    ca: CertificateAuthority, other_ca: CertificateAuthority
) -> None:
    foreign = other_ca.issue(Profile.CLIENT, "alice")
    with pytest.raises(UnknownCertificate, match="was not issued by"):
        ca.renew(foreign.certificate_pem)


def test_revoke_refuses_unknown_serials_second_revocations_and_bad_reasons(
    ca: CertificateAuthority,
) -> None:
    with pytest.raises(UnknownCertificate, match="not in this CA's inventory"):
        ca.revoke(0xDEADBEEF)
    issued = ca.issue(Profile.CLIENT, "alice")
    with pytest.raises(InvalidRequest, match="not one of"):
        ca.revoke(issued.serial, "becauseISaidSo")
    ca.revoke(issued.serial, "superseded")
    with pytest.raises(AlreadyRevoked, match="superseded"):
        ca.revoke(issued.serial, "keyCompromise")


def test_the_ca_cannot_revoke_its_own_certificates(ca: CertificateAuthority) -> None:
    with pytest.raises(InvalidRequest, match="issuing-ca"):
        ca.revoke(ca.issuing.serial_number)


def test_a_client_cannot_be_issued_a_gateway_identity(ca: CertificateAuthority) -> None:
    with pytest.raises(ProfileViolation, match="labgate:gateway:site-a"):
        ca.issue(Profile.CLIENT, "mallory", uris=["labgate:gateway:site-a"])
    assert [e.name for e in ca.inventory.entries()] == ["Test Lab CA", "Test Lab CA"]


def test_a_failed_issue_writes_and_records_nothing(ca: CertificateAuthority, tmp_path: Any) -> None:
    before = ca.inventory.entries()
    with pytest.raises(ProfileViolation):
        ca.issue(Profile.CLIENT, "bob", dns=["evil.example"])
    assert ca.inventory.entries() == before


def test_a_forged_certificate_under_the_issuing_name_cannot_be_renewed_or_revoked(
    ca: CertificateAuthority,
) -> None:
    """An attacker copies the issuing CA's name into a certificate signed by their own key."""
    attacker = ec.generate_private_key(ec.SECP256R1())
    genuine = ca.issue(Profile.CLIENT, "alice").certificate
    forged = (
        x509.CertificateBuilder()
        .subject_name(genuine.subject)
        .issuer_name(ca.issuing.subject)
        .public_key(attacker.public_key())
        .serial_number(genuine.serial_number)  # even the serial of a real certificate
        .not_valid_before(genuine.not_valid_before_utc)
        .not_valid_after(genuine.not_valid_after_utc)
        .add_extension(
            genuine.extensions.get_extension_for_class(x509.SubjectAlternativeName).value,
            critical=False,
        )
        .sign(attacker, hashes.SHA256())
    )
    pem = forged.public_bytes(serialization.Encoding.PEM)
    with pytest.raises(UnknownCertificate, match="was not issued by"):
        ca.renew(pem)
    with pytest.raises(UnknownCertificate, match="was not issued by"):
        ca.entry_of(pem)


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660])
def test_a_ca_key_readable_by_others_is_refused(ca_dir: Path, passphrase: bytes, mode: int) -> None:
    (ca_dir / "issuing.key").chmod(mode)
    with pytest.raises(InsecureKeyFile, match=f"mode {mode:04o}"):
        CertificateAuthority.open(ca_dir, passphrase=passphrase)
