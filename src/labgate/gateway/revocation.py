"""The serials a CRL revokes, for closing live sessions when a new CRL arrives.

New handshakes are checked by OpenSSL itself (the CRL is loaded into the TLS context); this is only
for sessions that were verified before the certificate was revoked.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cryptography import x509

from labgate.gateway.client_tls import PeerCertificate
from labgate.gateway.errors import ConfigError


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
    def load(cls, path: Path) -> RevocationList:
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ConfigError(f"gateway.crl: cannot read {path}: {exc.strerror}") from exc
        return cls.from_pem(data, source=f"gateway.crl {path}")

    def revokes(self, certificate: PeerCertificate) -> bool:
        return certificate.issuer == self.issuer and certificate.serial in self.serials
