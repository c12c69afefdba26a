"""Issuances in flight: the lease that shows their process alive, and the sweep for dead ones.

Theory of operation. A process that signs takes a lease first: a file `leases/TOKEN.lock` in the CA
directory on which it holds an exclusive `flock` for as long as it may have pending issuances. Each
pending row in the inventory names its lease (`owner`). The kernel drops a lock when its process
dies, however it dies (SIGKILL included), so a lease whose lock can be taken belongs to a dead
process. The sweep looks only at owners of pending rows, and a process inserts a pending row only
while it holds its lock, so a live issuance is never taken for a dead one, whatever the timing.

What the sweep does with a dead owner's rows: each becomes `orphaned` (and revoked: the CA never
saw it delivered), and the temporary files its writes left at its destination are removed; they
carry the lease token in their names (see `atomic`), so nothing else is touched. Files that were
already renamed into place are the operator's and stay; they hold a revoked certificate.

Leases work between processes of one host, which is what a CA directory with SQLite inside it
supports anyway.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import secrets
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from labgate.pki.atomic import temporaries
from labgate.pki.errors import UnknownCertificate
from labgate.pki.inventory import ORPHANED, Entry, Inventory

LEASES = "leases"
_TOKEN = re.compile(r"[0-9a-f]{32}")


class Lease:
    """An exclusive lock held while this process may have pending issuances."""

    def __init__(self, directory: Path) -> None:
        self.token = secrets.token_hex(16)
        leases = directory / LEASES
        leases.mkdir(mode=0o700, exist_ok=True)
        self._path = leases / f"{self.token}.lock"
        self._fd: int | None = os.open(
            self._path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600
        )
        try:
            # Nobody else knows the token yet, so this cannot block; pending rows naming it are
            # written only after it is held.
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BaseException:
            os.close(self._fd)
            raise

    def release(self) -> None:
        if self._fd is None:
            return
        # Unlink while still holding the lock, so no sweeper takes a half-released lease.
        with contextlib.suppress(FileNotFoundError):
            self._path.unlink()
        os.close(self._fd)
        self._fd = None


def owner_is_dead(directory: Path, token: str) -> bool:
    """True when no process holds the lease `token` (its file gone, or its lock free); the lease
    file of a dead owner is removed."""
    if not _TOKEN.fullmatch(token):
        return True  # not a lease this code ever made: nobody can be holding it
    path = directory / LEASES / f"{token}.lock"
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return True
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        return True
    finally:
        os.close(fd)


def sweep(directory: Path, inventory: Inventory, *, now: Callable[[], datetime]) -> list[Entry]:
    """Settle the pending issuances of dead processes as orphaned and remove their temporary files;
    returns the entries orphaned. Safe to run from any number of processes at once."""
    orphaned: list[Entry] = []
    verdicts: dict[str, bool] = {}
    for entry in inventory.pending():
        owner = entry.owner or ""
        if owner not in verdicts:
            verdicts[owner] = owner_is_dead(directory, owner)
        if not verdicts[owner]:
            continue
        # Temporary files first: if this sweep dies here, the row is still pending and the next
        # sweep does it all again.
        if entry.destination and _TOKEN.fullmatch(owner):
            for leftover in temporaries(Path(entry.destination).parent, owner):
                with contextlib.suppress(FileNotFoundError):
                    leftover.unlink()
        try:
            orphaned.append(inventory.settle(entry.serial, state=ORPHANED, when=now()))
        except UnknownCertificate:
            continue  # another sweeper settled it first
    return orphaned
