"""Signing keys as files: Ed25519, PKCS#8 PEM encrypted with a passphrase, mode 0600.

The offline keys (root, targets) are meant to live with the people who hold them, each file
under its own passphrase; the online key (snapshot and timestamp) is the one the control server
keeps. A key file readable by others is refused rather than used: a signing key that leaked
through a lax mode must not go on signing.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ed25519
from securesystemslib.signer import CryptoSigner, SSlibKey

from labgate.pki import keys as pki_keys
from labgate.pki.atomic import PRIVATE, write_atomic
from labgate.pki.errors import PkiError
from labgate.releases.errors import KeyFileError

SUFFIX = ".key"


def generate() -> CryptoSigner:
    return CryptoSigner(ed25519.Ed25519PrivateKey.generate())


def write_key(path: Path, signer: CryptoSigner, passphrase: bytes) -> None:
    """Write `signer`'s private key to `path` (new file only), encrypted, mode 0600."""
    try:
        pki_keys.check_new_passphrase(passphrase)
    except PkiError as error:
        raise KeyFileError(
            f"{path.name}: {str(error).replace('the CA passphrase', 'its passphrase')}"
        ) from None
    if path.exists():
        raise KeyFileError(f"{path} exists; refusing to overwrite a signing key")
    private = signer._private_key
    if not isinstance(private, ed25519.Ed25519PrivateKey):
        raise KeyFileError(f"{path.name}: only Ed25519 release keys are written")
    write_atomic(path, pki_keys.private_pem(private, passphrase), mode=PRIVATE)


def load_key(path: Path, passphrase: bytes | None) -> CryptoSigner:
    try:
        status = path.stat()
    except FileNotFoundError:
        raise KeyFileError(f"key file {path} does not exist") from None
    if status.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyFileError(
            f"key file {path} is readable by others (mode {stat.S_IMODE(status.st_mode):o});"
            " chmod 600 it first"
        )
    pem = path.read_bytes()
    try:
        private = pki_keys.load_private(pem, passphrase, source=f"key file {path.name}")
    except PkiError as error:
        raise KeyFileError(
            str(error).replace("LABGATE_CA_PASSPHRASE", "the release passphrase")
        ) from None
    if not isinstance(private, ed25519.Ed25519PrivateKey):
        raise KeyFileError(f"key file {path.name} is not an Ed25519 key")
    return CryptoSigner(private)


def public_key(signer: CryptoSigner) -> SSlibKey:
    return signer.public_key


def key_names(directory: Path, prefix: str) -> list[Path]:
    """Key files in `directory` whose names start with `prefix`, in name order."""
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        raise KeyFileError(f"key directory {directory} does not exist") from None
    return sorted(
        directory / name for name in names if name.startswith(prefix) and name.endswith(SUFFIX)
    )
