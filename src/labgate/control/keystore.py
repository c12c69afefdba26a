"""The server's secrets on disk: the key passphrase and the token signing key ring.

The passphrase (random, written by `init`, mode 0600 in a 0700 directory, or given as
`LABGATE_KEY_PASSPHRASE`) encrypts the CA's private keys and the signing keys. The key ring is one
JSON file, encrypted under it, written atomically; every process re-reads it when it changes, so
`labgate server rotate-keys` reaches running servers that share the data directory.
"""

from __future__ import annotations

import os
import secrets
import threading
import time
from datetime import datetime
from pathlib import Path

from labgate.auth.errors import KeyRingError
from labgate.auth.keyring import KeyRing
from labgate.auth.lifetimes import MAX_ACCESS_TTL
from labgate.control.errors import ConfigurationError, NotInitialised
from labgate.control.settings import ControlSettings
from labgate.pki.atomic import PRIVATE, write_atomic

KEYRING_FILE = "signing-keys.json"
PASSPHRASE_BYTES = 32
# How often a process looks at the key ring file for a rotation made elsewhere.
RELOAD_INTERVAL_SECONDS = 1.0


def create_passphrase(path: Path) -> bytes:
    """A new random passphrase written 0600 (its directory 0700)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    passphrase = secrets.token_urlsafe(PASSPHRASE_BYTES).encode("ascii")
    write_atomic(path, passphrase + b"\n", mode=PRIVATE)
    return passphrase


def load_passphrase(settings: ControlSettings) -> bytes:
    """The key passphrase: from the settings if given there, else from its file."""
    if settings.key_passphrase is not None:
        return settings.key_passphrase.get_secret_value().encode("utf-8")
    path = settings.passphrase_path
    try:
        mode = path.stat().st_mode & 0o777
        text = path.read_bytes().strip()
    except FileNotFoundError:
        raise NotInitialised(
            f"no key passphrase at {path}; run `labgate server init` or set LABGATE_KEY_PASSPHRASE"
        ) from None
    if mode & 0o077:
        raise ConfigurationError(f"{path} is readable by others (mode {mode:o}); chmod 600 it")
    if not text:
        raise ConfigurationError(f"{path} is empty; expected the key passphrase")
    return text


def keyring_path(settings: ControlSettings) -> Path:
    return settings.data_dir / KEYRING_FILE


def write_keyring(path: Path, ring: KeyRing, passphrase: bytes) -> None:
    write_atomic(path, ring.to_json(passphrase=passphrase).encode("utf-8"), mode=PRIVATE)


def read_keyring(path: Path, passphrase: bytes) -> KeyRing:
    try:
        return KeyRing.from_json(path.read_bytes(), passphrase=passphrase)
    except FileNotFoundError:
        raise NotInitialised(f"no signing keys at {path}; run `labgate server init`") from None
    except KeyRingError as error:
        raise ConfigurationError(f"{path}: {error}") from None


def rotate(path: Path, passphrase: bytes, *, now: datetime) -> KeyRing:
    """A new current key; the old one keeps verifying until its longest-lived token expires."""
    ring = read_keyring(path, passphrase).rotate(now=now, keep_verifying_for=MAX_ACCESS_TTL)
    write_keyring(path, ring, passphrase)
    return ring


class SigningKeys:
    """The key ring of a running server, re-read when its file changes."""

    def __init__(self, path: Path, passphrase: bytes) -> None:
        self._path = path
        self._passphrase = passphrase
        self._lock = threading.Lock()
        self._stamp = self._file_stamp()
        self._ring = read_keyring(path, passphrase)
        self._checked = time.monotonic()

    def ring(self) -> KeyRing:
        if time.monotonic() - self._checked >= RELOAD_INTERVAL_SECONDS:
            self._reload_if_changed()
        return self._ring

    def _reload_if_changed(self) -> None:
        with self._lock:
            self._checked = time.monotonic()
            stamp = self._file_stamp()
            if stamp != self._stamp:
                self._ring = read_keyring(self._path, self._passphrase)
                self._stamp = stamp

    def _file_stamp(self) -> tuple[int, int]:
        stat = self._path.stat()
        return stat.st_mtime_ns, stat.st_ino
