"""Fixtures that build real things: CAs in temporary directories, issued files on disk."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from labgate.pki import CertificateAuthority, Issued

PASSPHRASE = b"a long and test-only passphrase"
# The test CA was made ten days ago, so a test can issue from a clock set in the past
# (an expired certificate) while the CA itself was already valid.
CA_AGE = timedelta(days=10)


@dataclass(frozen=True)
class Files:
    prefix: Path

    @property
    def crt(self) -> Path:
        return self.prefix.with_name(self.prefix.name + ".crt")

    @property
    def key(self) -> Path:
        return self.prefix.with_name(self.prefix.name + ".key")

    @property
    def pem(self) -> Path:
        return self.prefix.with_name(self.prefix.name + ".pem")


@pytest.fixture
def passphrase() -> bytes:
    return PASSPHRASE


@pytest.fixture
def ca_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "ca"
    made = datetime.now(UTC) - CA_AGE
    CertificateAuthority.init(
        directory, name="Test Lab CA", passphrase=PASSPHRASE, clock=lambda: made
    ).close()
    return directory


@pytest.fixture
def ca(ca_dir: Path) -> Iterator[CertificateAuthority]:
    with CertificateAuthority.open(ca_dir, passphrase=PASSPHRASE) as authority:
        yield authority


@pytest.fixture
def past_ca(ca_dir: Path) -> Iterator[Callable[[float], CertificateAuthority]]:
    """The same CA with its clock set `days` back: what it issues is already old."""
    opened: list[CertificateAuthority] = []

    def open_at(days: float) -> CertificateAuthority:
        when = datetime.now(UTC) - timedelta(days=days)
        authority = CertificateAuthority.open(ca_dir, passphrase=PASSPHRASE, clock=lambda: when)
        opened.append(authority)
        return authority

    yield open_at
    for authority in opened:
        authority.close()


@pytest.fixture
def other_ca(tmp_path: Path) -> Iterator[CertificateAuthority]:
    """A second, unrelated CA under the very same name: its certificates must be worthless to the
    first one's peers even though every subject and issuer name matches."""
    with CertificateAuthority.init(
        tmp_path / "other-ca", name="Test Lab CA", passphrase=PASSPHRASE
    ) as authority:
        yield authority


@pytest.fixture
def to_files(tmp_path: Path) -> Callable[[Issued, str], Files]:
    """Write an issued certificate as NAME.crt, NAME.key and NAME.pem in a temporary directory."""

    def write(issued: Issued, name: str) -> Files:
        prefix = tmp_path / name
        issued.write(prefix, combined=issued.key_pem is not None)
        return Files(prefix)

    return write
