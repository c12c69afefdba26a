"""When to reload: on SIGHUP (the caller sets an event) and when a configured file changes.

Files are polled by their stat signature (inode, size, modification time in nanoseconds): cheap
enough to run twice a second, and an atomic replace (new inode) is seen even when size and time
happen to match.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path

from labgate.gateway.server import Gateway

Signature = tuple[int, int, int] | None


def _signature(path: Path) -> Signature:
    try:
        st = os.stat(path)
    except OSError:
        return None  # a file being replaced may be missing for a moment; its return is a change
    return (st.st_ino, st.st_size, st.st_mtime_ns)


class FileWatcher:
    def __init__(self, paths: tuple[Path, ...]) -> None:
        self._seen = {p: _signature(p) for p in paths}

    @property
    def paths(self) -> tuple[Path, ...]:
        return tuple(self._seen)

    def changed(self) -> bool:
        return any(_signature(p) != sig for p, sig in self._seen.items())

    def rebase(self, paths: tuple[Path, ...]) -> None:
        self._seen = {p: _signature(p) for p in paths}


async def watch(gateway: Gateway, requested: asyncio.Event) -> None:
    """Reload whenever `requested` is set or a watched file changes; runs until cancelled."""
    watcher = FileWatcher(gateway.state.config.watched_files())
    while True:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(gateway.state.config.reload_interval):
                await requested.wait()
        if requested.is_set() or watcher.changed():
            requested.clear()
            # Rebase first: a file written again during the reload is then seen next round.
            watcher.rebase(gateway.state.config.watched_files())
            await gateway.reload()
            if set(gateway.state.config.watched_files()) != set(watcher.paths):
                watcher.rebase(gateway.state.config.watched_files())
