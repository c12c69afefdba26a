"""`init`: every secret encrypted or private, and nothing overwritten, on disk or in a database."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from labgate.control.errors import AlreadyInitialised
from labgate.control.provisioning import initialise
from labgate.control.settings import ControlSettings


def test_keys_are_encrypted_and_secrets_private(settings: Any) -> None:
    data = settings.data_dir
    assert b"ENCRYPTED PRIVATE KEY" in (data / "signing-keys.json").read_bytes()
    for name in ("root.key", "issuing.key"):
        assert b"ENCRYPTED PRIVATE KEY" in (data / "ca" / name).read_bytes()
    for path in (
        data / "secrets" / "key-passphrase",
        data / "admin-password",
        data / "server.key",
        data / "signing-keys.json",
        data / "server.toml",
    ):
        assert path.stat().st_mode & 0o777 == 0o600, path
    assert (data / "secrets").stat().st_mode & 0o777 == 0o700


def test_a_database_holding_a_server_is_not_taken_over(settings: Any, tmp_path: Path) -> None:
    if settings.database_url is None:
        pytest.skip("the SQLite database lives inside the data directory")
    other = ControlSettings.load(tmp_path / "second", database_url=settings.database_url)
    with pytest.raises(AlreadyInitialised, match="already holds users"):
        initialise(other, config={})


def test_same_directory_is_not_initialised_twice(settings: Any) -> None:
    with pytest.raises(AlreadyInitialised, match="already holds a server"):
        initialise(settings, config={})


def test_server_certificate_is_renewed_before_it_expires(settings: Any) -> None:
    from datetime import UTC, datetime, timedelta

    from cryptography import x509

    from labgate.control import keystore
    from labgate.control.layout import ca_dir, server_certificate_path
    from labgate.control.servercertificate import Renewal, renew_server_certificate_if_due
    from labgate.pki.authority import CertificateAuthority

    path = server_certificate_path(settings.data_dir)
    before = x509.load_pem_x509_certificate(path.read_bytes())
    passphrase = keystore.load_passphrase(settings)
    with CertificateAuthority.open(ca_dir(settings.data_dir), passphrase=passphrase) as ca:
        now = datetime.now(UTC)
        assert renew_server_certificate_if_due(settings, ca, now=now) is Renewal.NOT_DUE
        # 2/3 of 90 days is 60 (give or take 4.5): due at 65 at the latest.
        later = now + timedelta(days=65)
        assert renew_server_certificate_if_due(settings, ca, now=later) is Renewal.RENEWED
    after = x509.load_pem_x509_certificate(path.read_bytes())
    assert after.serial_number != before.serial_number
    assert after.public_key() != before.public_key()


def test_a_customer_server_certificate_is_never_replaced_by_one_of_ours(
    settings: Any, tmp_path: Any, caplog: Any
) -> None:
    """Installed in the server certificate's place, a chain from the customer's own CA stays,
    however near its expiry: clients trusting only that CA would be cut off."""
    import logging
    from datetime import UTC, datetime, timedelta

    from labgate.control import keystore
    from labgate.control.layout import ca_dir, server_certificate_path, server_key_path
    from labgate.control.servercertificate import Renewal, renew_server_certificate_if_due
    from labgate.pki import Profile
    from labgate.pki.authority import CertificateAuthority

    with CertificateAuthority.init(
        tmp_path / "customer", passphrase=None, unencrypted=True, name="Customer CA"
    ) as customer:
        theirs = customer.issue(Profile.SERVER, "control", dns=["control.customer.example"])
        customer.handed_out(theirs)
    server_certificate_path(settings.data_dir).write_bytes(theirs.chain_pem)
    assert theirs.key_pem is not None
    server_key_path(settings.data_dir).write_bytes(theirs.key_pem)
    caplog.set_level(logging.WARNING, logger="labgate.control")
    passphrase = keystore.load_passphrase(settings)
    with CertificateAuthority.open(ca_dir(settings.data_dir), passphrase=passphrase) as ca:
        later = datetime.now(UTC) + timedelta(days=75)
        found = renew_server_certificate_if_due(settings, ca, now=later)
        assert found is Renewal.FOREIGN_EXPIRING
    assert server_certificate_path(settings.data_dir).read_bytes() == theirs.chain_pem
    assert any("not issued by this CA" in r.getMessage() for r in caplog.records)
