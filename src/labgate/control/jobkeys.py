"""The jobs signing key ring: its own file, never the token keys.

`jobs-keys.json` in the data directory, encrypted under the key passphrase like the token key
ring. `init` writes it; a server initialised before jobs existed gets one at its first start,
created exclusively (a hard link of a finished temporary file), so two replicas starting at
once both end up with the one that was linked first.
"""

from __future__ import annotations

import contextlib
import os
from datetime import datetime
from pathlib import Path

from labgate.auth.jobdocument import JOBS_KEY_USE
from labgate.auth.keyring import KeyRing
from labgate.control import keystore
from labgate.control.settings import ControlSettings
from labgate.pki.atomic import PRIVATE, sync_directory, temporary_name

JOBS_KEYRING_FILE = "jobs-keys.json"


def jobs_keyring_path(settings: ControlSettings) -> Path:
    return settings.data_dir / JOBS_KEYRING_FILE


def ensure_jobs_keyring(path: Path, passphrase: bytes, *, now: datetime) -> None:
    """Create the jobs key ring unless one exists; never replaces an existing one."""
    if path.exists():
        return
    data = KeyRing.generate(now=now).to_json(passphrase=passphrase).encode("utf-8")
    temporary = path.parent / temporary_name(path.name, None)
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, PRIVATE)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        with contextlib.suppress(FileExistsError):
            os.link(temporary, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
    sync_directory(path.parent)


def open_jobs_keys(
    settings: ControlSettings, passphrase: bytes, *, now: datetime
) -> keystore.SigningKeys:
    path = jobs_keyring_path(settings)
    ensure_jobs_keyring(path, passphrase, now=now)
    return keystore.SigningKeys(path, passphrase)


def published(ring: KeyRing, *, now: datetime) -> list[dict[str, str]]:
    """The jobs keys as JWKS entries, each with `use` JOBS_KEY_USE."""
    return ring.jwks(now=now, use=JOBS_KEY_USE)["keys"]
