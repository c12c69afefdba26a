"""Atomic, durable file writes: a reader sees the old file or the new one, never half of either.

The bytes go to a temporary file in the same directory (so the rename cannot cross file systems),
created with its final mode (a key is never readable by others, not even for a moment), flushed to
disk, renamed over the target, and the directory is flushed so the rename itself survives a crash.

A process killed between the create and the rename leaves its temporary file behind. A writer that
may be killed so passes a `tag` (the lease of the issuance it serves): the temporary file's name
carries it, and the sweep that settles that issuance finds and removes exactly its files.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
from pathlib import Path

PRIVATE = 0o600
PUBLIC = 0o644
# A tag is a lease token: lower-case hex, so it can never smuggle a path separator or a glob.
_TAG = re.compile(r"[0-9a-f]{16,64}")
SUFFIX = ".tmp"


def write_atomic(
    path: Path, data: bytes, *, mode: int = PUBLIC, sync_dir: bool = True, tag: str | None = None
) -> None:
    """Replace `path` with `data`. `sync_dir=False` leaves the directory flush to the caller, who
    writes several files and then calls `sync_directory` once before reporting success."""
    directory = path.parent
    temporary = directory / temporary_name(path.name, tag)
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    except OSError as error:  # name the file asked for, not our temporary one
        raise OSError(error.errno, error.strerror, str(path)) from None
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


def temporary_name(name: str, tag: str | None) -> str:
    if tag is None:
        return f".{name}.{secrets.token_hex(8)}{SUFFIX}"
    _check_tag(tag)
    return f".{name}.{tag}-{secrets.token_hex(8)}{SUFFIX}"


def temporaries(directory: Path, tag: str) -> list[Path]:
    """The temporary files that writes tagged `tag` left in `directory`."""
    _check_tag(tag)
    marker = f".{tag}-"
    try:
        names = os.listdir(directory)
    except OSError:  # gone, or not ours to read: nothing we can remove there
        return []
    return sorted(
        directory / name
        for name in names
        if name.startswith(".") and name.endswith(SUFFIX) and marker in name
    )


def _check_tag(tag: str) -> None:
    if not _TAG.fullmatch(tag):
        raise ValueError(f"a temporary file tag is 16-64 lower-case hex digits, not {tag!r}")
