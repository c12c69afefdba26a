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
CLAIMING = ".claiming"
_TOKEN = re.compile(r"[0-9a-f]{32}")


class Lease:
    """An exclusive lock held while this process may have pending issuances."""

    def __init__(self, directory: Path) -> None:
        self.token = secrets.token_hex(16)
        leases = directory / LEASES
        leases.mkdir(mode=0o700, exist_ok=True)
        self._path = leases / f"{self.token}.lock"
        # Locked under a name of its own first and then renamed, so that a file under a lease's
        # name is locked from its first moment: a sweeper can never find it free and take a
        # live lease for a dead one.
        claiming = leases / f".{self.token}{CLAIMING}"
        self._fd: int | None = os.open(
            claiming, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600
        )
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.rename(claiming, self._path)
        except BaseException:
            with contextlib.suppress(OSError):
                claiming.unlink()
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
                with contextlib.suppress(OSError):
                    leftover.unlink()
        try:
            orphaned.append(inventory.settle(entry.serial, state=ORPHANED, when=now()))
        except UnknownCertificate:
            continue  # another sweeper settled it first
    # A process killed after taking its lease but before its first pending row left only the
    # lock file: nothing to settle, but not to be kept either.
    for path in _lease_files(directory):
        if path.name.endswith(".lock") and path.stem not in verdicts:
            owner_is_dead(directory, path.stem)
        elif path.name.endswith(CLAIMING):
            _remove_if_free(path)  # killed between creating its lease and naming it
    return orphaned


def _lease_files(directory: Path) -> list[Path]:
    try:
        return sorted((directory / LEASES).iterdir())
    except OSError:
        return []


def _remove_if_free(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return
    else:
        # Its owner may be about to lock it; then its rename fails and that issuance fails
        # with an error before it signed anything, which is safe.
        with contextlib.suppress(OSError):
            path.unlink()
    finally:
        os.close(fd)
