"""The gateway's reading of CRLs: one PEM file may hold one CRL per live issuing CA."""

from __future__ import annotations

from pathlib import Path

import pytest

from labgate.gateway.client_tls import PeerCertificate
from labgate.gateway.errors import ConfigError
from labgate.gateway.revocation import RevocationList
from labgate.pki import CertificateAuthority, Issued, Profile

PASSPHRASE = b"a long and test-only passphrase"


def _peer(issued: Issued) -> PeerCertificate:
    cert = issued.certificate
    return PeerCertificate(
        identity=issued.identity,
        identities=(),
        fingerprint="",
        serial=cert.serial_number,
        issuer=cert.issuer,
        not_after=cert.not_valid_after_utc,
    )


def test_every_crl_in_a_rotated_cas_pem_file_is_read(tmp_path: Path) -> None:
    with CertificateAuthority.init(tmp_path / "ca", passphrase=PASSPHRASE) as ca:
        old = ca.issue(Profile.CLIENT, "alice")
        ca.handed_out(old)
        kept_old = ca.issue(Profile.CLIENT, "carol")
        ca.handed_out(kept_old)
        ca.rotate_issuing(passphrase=PASSPHRASE)
        new = ca.issue(Profile.CLIENT, "bob")
        ca.handed_out(new)
        ca.revoke(old.serial, "keyCompromise")
        ca.revoke(new.serial, "keyCompromise")
        (tmp_path / "ca.crl").write_bytes(ca.crl_pem_bundle())
    lists = RevocationList.load_all(tmp_path / "ca.crl")
    assert len(lists) == 2
    # Revoked before or after the rotation, by either issuer: found; the unrevoked one is not.
    assert any(r.revokes(_peer(old)) for r in lists)
    assert any(r.revokes(_peer(new)) for r in lists)
    assert not any(r.revokes(_peer(kept_old)) for r in lists)


def test_a_file_with_no_crl_in_it_is_refused_by_name(tmp_path: Path) -> None:
    path = tmp_path / "ca.crl"
    path.write_bytes(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    with pytest.raises(ConfigError, match="not a PEM certificate revocation list"):
        RevocationList.load_all(path)
