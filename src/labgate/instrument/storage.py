"""Atomic file writes for the simulator's state: a reader sees the old content or the new, never
half of it. labgate has one implementation of that (`labgate.pki.atomic`: temporary file created
with its final mode, fsync, rename, directory fsync); this only adds making the directory."""

from __future__ import annotations

from pathlib import Path

from labgate.pki.atomic import write_atomic


def write_atomically(path: Path, data: bytes, *, mode: int = 0o644) -> None:
    """Write `data` to `path` atomically and durably; `mode` holds from the first byte."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, data, mode=mode)
