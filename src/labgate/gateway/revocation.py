"""The serials a CRL revokes, for closing live sessions when a new CRL arrives.

New handshakes are checked by OpenSSL itself (the CRL is loaded into the TLS context); this is only
for sessions that were verified before the certificate was revoked.

A CA whose issuing CA was rotated publishes one CRL per live issuing CA in one PEM file; OpenSSL
reads every CRL in it, and so does `load_all`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509

from labgate.gateway.client_tls import PeerCertificate
from labgate.gateway.errors import ConfigError

_PEM_CRL = re.compile(rb"-----BEGIN X509 CRL-----.+?-----END X509 CRL-----\s*", re.DOTALL)


@dataclass(frozen=True, slots=True, kw_only=True)
class RevocationList:
    issuer: x509.Name
    serials: frozenset[int]

    @classmethod
    def from_pem(cls, data: bytes, *, source: str) -> RevocationList:
        try:
            crl = x509.load_pem_x509_crl(data)
        except ValueError as exc:
            raise ConfigError(f"{source}: not a PEM certificate revocation list: {exc}") from exc
        return cls(issuer=crl.issuer, serials=frozenset(r.serial_number for r in crl))

    @classmethod
    def all_from_pem(cls, data: bytes, *, source: str) -> tuple[RevocationList, ...]:
        """Every CRL in a PEM file (at least one)."""
        blocks = _PEM_CRL.findall(data)
        if not blocks:
            return (cls.from_pem(data, source=source),)  # raises, naming what is wrong
        return tuple(cls.from_pem(block, source=source) for block in blocks)

    @classmethod
    def load(cls, path: Path) -> RevocationList:
        return cls.load_all(path)[0]

    @classmethod
    def load_all(cls, path: Path) -> tuple[RevocationList, ...]:
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ConfigError(f"gateway.crl: cannot read {path}: {exc.strerror}") from exc
        return cls.all_from_pem(data, source=f"gateway.crl {path}")

    def revokes(self, certificate: PeerCertificate) -> bool:
        return certificate.issuer == self.issuer and certificate.serial in self.serials
