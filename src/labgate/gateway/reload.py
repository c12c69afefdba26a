"""When to reload: on SIGHUP (the caller sets an event), when a configured file changes, and
when the TLS session cache holds `tls_session_cache` sessions (new contexts start it empty).

Files are polled by their stat signature (inode, size, modification time in nanoseconds): cheap
enough to run twice a second, and an atomic replace (new inode) is seen even when size and time
happen to match.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from datetime import UTC, datetime
from pathlib import Path

from labgate.gateway.bundles import BundleStore, fetch, read_bundle
from labgate.gateway.errors import GatewayError
from labgate.gateway.server import Gateway

log = logging.getLogger("labgate.gateway")

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
        elif gateway.tls_sessions_kept() >= gateway.state.config.tls_session_cache:
            # OpenSSL would keep up to 20,480 sessions for two hours each, about 12 KiB apiece:
            # new contexts from the same files start with empty caches, and the old ones go
            # with their last connection. Clients then resume no session older than that.
            await gateway.reload(gateway.state.config, why="TLS session cache full")
        elif not gateway.tls_session_cache_on and gateway.cache_allowed():
            await gateway.reload(gateway.state.config, why="TLS session cache back on")


async def follow_control(gateway: Gateway) -> None:
    """Fetch the control server's bundle every `poll_interval`; runs until cancelled."""
    control = gateway.state.config.control
    if control is None:
        return
    while True:
        await asyncio.sleep(control.poll_interval)
        await refresh_bundle(gateway)


async def refresh_bundle(gateway: Gateway) -> bool:
    """One fetch: apply a newer valid bundle; drop an expired one. True if one was applied."""
    config = gateway.state.config
    control = config.control
    if control is None:
        return False
    store = BundleStore(control)
    now = datetime.now(UTC)
    try:
        token, jwks = await fetch(
            control, cert=control.cert or config.cert, key=control.key or config.key
        )
        floor = max(store.last_version(), gateway.bundle.version if gateway.bundle else 0)
        bundle = read_bundle(token, jwks, control=control, now=now, above_version=floor)
        await asyncio.to_thread(store.keep, bundle)
        gateway.use_bundle(bundle, store.crl_path)
    except GatewayError as exc:
        gateway.record({"event": "bundle_refused", "reason": str(exc)})
        log.warning("%s", exc)
        if gateway.bundle is not None and gateway.bundle.expired(now):
            gateway.record({"event": "bundle_expired", "version": gateway.bundle.version})
            gateway.use_bundle(None, None)
        return False
    gateway.record({"event": "bundle", "version": bundle.version, "grants": len(bundle.grants)})
    return True
