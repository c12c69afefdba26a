"""What the CA hands out: a certificate, its chain, its key when the CA made it; and the files."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import pkcs12

from labgate.pki import identity
from labgate.pki.atomic import PRIVATE, PUBLIC, sync_directory, write_atomic
from labgate.pki.errors import InvalidRequest
from labgate.pki.keys import load_private
from labgate.pki.profiles import Profile

# PBKDF2 rounds for the PKCS#12 key and MAC: far above OpenSSL's default of 2048 because the file
# travels (mail, USB sticks) and its password is often weak; still well under a second to open.
P12_KDF_ROUNDS = 100_000


@dataclass(frozen=True, slots=True, kw_only=True)
class Issued:
    """A signed certificate. `key_pem` is None when the requester kept the key (CSR, renewal).
    `lease` is the token of the issuance's lease (see `pending`): files written for it carry it in
    their temporary names, so a sweep can remove what a killed writer left."""

    certificate: x509.Certificate
    issuing: x509.Certificate = field(repr=False)
    profile: Profile
    key_pem: bytes | None = field(repr=False)
    lease: str | None = field(default=None, repr=False)

    @property
    def serial(self) -> int:
        return self.certificate.serial_number

    @property
    def identity(self) -> str | None:
        return identity.identity_of(self.certificate)

    @property
    def certificate_pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    @property
    def chain_pem(self) -> bytes:
        """The leaf, then the issuing CA: what a TLS peer sends (relying parties hold the root)."""
        return self.certificate_pem + self.issuing.public_bytes(serialization.Encoding.PEM)

    def write(
        self, prefix: Path, *, combined: bool = False, p12_password: bytes | None = None
    ) -> list[Path]:
        """Write PREFIX.key (0600, when there is a key), PREFIX.crt, and if asked PREFIX.pem (chain
        and key, 0600) and PREFIX.p12; each atomically. The key goes first so a certificate file is
        never left without its key. Returns the paths written."""
        if (combined or p12_password is not None) and self.key_pem is None:
            raise InvalidRequest(
                "no private key to bundle: the requester holds it (signed from a CSR or renewed "
                "with the same key)"
            )
        written: list[Path] = []
        if self.key_pem is not None:
            written.append(self._write(prefix, ".key", self.key_pem, PRIVATE))
        written.append(self._write(prefix, ".crt", self.chain_pem, PUBLIC))
        if combined and self.key_pem is not None:
            written.append(self._write(prefix, ".pem", self.chain_pem + self.key_pem, PRIVATE))
        if p12_password is not None:
            written.append(self._write(prefix, ".p12", self.pkcs12(p12_password), PRIVATE))
        # One directory flush makes every rename above durable before we report success.
        sync_directory(prefix.parent)
        return written

    def pkcs12(self, password: bytes) -> bytes:
        """PKCS#12 with AES-256 and a SHA-256 MAC, for browsers and 802.1x supplicants."""
        if self.key_pem is None:
            raise InvalidRequest("no private key to put in a PKCS#12 file")
        if not password:
            raise InvalidRequest("a PKCS#12 file needs a non-empty password")
        key = load_private(self.key_pem, None, source="the issued key")
        encryption = (
            serialization.PrivateFormat.PKCS12.encryption_builder()
            .kdf_rounds(P12_KDF_ROUNDS)
            .key_cert_algorithm(pkcs12.PBES.PBESv2SHA256AndAES256CBC)
            .hmac_hash(hashes.SHA256())
            .build(password)
        )
        name = self.certificate.subject.rfc4514_string().encode("utf-8")
        return pkcs12.serialize_key_and_certificates(
            name, key, self.certificate, [self.issuing], encryption
        )

    def write_file(self, path: Path, data: bytes, *, mode: int = PUBLIC) -> None:
        """One file for this issuance, atomically, its temporary name tagged with the lease."""
        write_atomic(path, data, mode=mode, tag=self.lease)

    def _write(self, prefix: Path, suffix: str, data: bytes, mode: int) -> Path:
        path = output_path(prefix, suffix)
        write_atomic(path, data, mode=mode, sync_dir=False, tag=self.lease)
        return path


def output_path(prefix: Path, suffix: str) -> Path:
    """PREFIX.crt, PREFIX.key, ...: `with_name`, since the prefix may itself hold a dot."""
    return prefix.with_name(prefix.name + suffix)
