"""Atomic, durable file writes: a reader sees the old file or the new one, never half of either.

The bytes go to a temporary file in the same directory (so the rename cannot cross file systems),
created with its final mode (a key is never readable by others, not even for a moment), flushed to
disk, renamed over the target, and the directory is flushed so the rename itself survives a crash.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

PRIVATE = 0o600
PUBLIC = 0o644


def write_atomic(path: Path, data: bytes, *, mode: int = PUBLIC, sync_dir: bool = True) -> None:
    """Replace `path` with `data`. `sync_dir=False` leaves the directory flush to the caller, who
    writes several files and then calls `sync_directory` once before reporting success."""
    directory = path.parent
    temporary = directory / f".{path.name}.{secrets.token_hex(8)}.tmp"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    if sync_dir:
        sync_directory(directory)


def sync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
