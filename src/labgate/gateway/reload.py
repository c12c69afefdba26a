"""When to reload: on SIGHUP (the caller sets an event), when a configured file changes, and
when the TLS session cache holds `tls_session_cache` sessions (new contexts start it empty).

Files are polled by their stat signature (inode, size, modification time in nanoseconds): cheap
enough to run twice a second, and an atomic replace (new inode) is seen even when size and time
happen to match.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
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
            async with gateway.files_lock:  # not while a renewal writes a key and certificate
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


# After a failed fetch the next one waits this long, doubling up to `poll_interval`.
FIRST_BACKOFF_SECONDS = 1.0


class Fetched(enum.Enum):
    APPLIED = "applied"  # a newer valid bundle is in force
    UNCHANGED = "unchanged"  # the long poll ended with nothing new
    FAILED = "failed"  # unreachable, refused, or not valid: try again later


async def follow_control(gateway: Gateway) -> None:
    """Follow the control server's bundles by long poll; runs until cancelled.

    Each request says "anything after change N?" (N from the bundle in force) and is answered on
    the first change or after the server's bounded wait; the next request goes at once. Errors
    back off from one second up to `poll_interval`. A bundle past half its life is not waited
    on: the request then asks for a fresh one at once, so a quiet site's bundle never expires.
    """
    control = gateway.state.config.control
    if control is None:
        return
    backoff = FIRST_BACKOFF_SECONDS
    while True:
        outcome = await poll_bundle(gateway, long_poll=True)
        if outcome is Fetched.FAILED:
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, max(control.poll_interval, FIRST_BACKOFF_SECONDS))
            continue
        backoff = FIRST_BACKOFF_SECONDS
        bundle = gateway.bundle
        if bundle is None or bundle.changes is None:
            # A server without the long poll answers at once: ask it every poll_interval.
            await asyncio.sleep(control.poll_interval)


async def refresh_bundle(gateway: Gateway) -> bool:
    """One fetch at once: apply a newer valid bundle; drop an expired one. True if applied."""
    return await poll_bundle(gateway, long_poll=False) is Fetched.APPLIED


async def poll_bundle(gateway: Gateway, *, long_poll: bool) -> Fetched:
    """One fetch (with `long_poll`, one that waits for a change past the bundle in force)."""
    config = gateway.state.config
    control = config.control
    if control is None:
        return Fetched.FAILED
    store = BundleStore(control)
    held = gateway.bundle
    now = datetime.now(UTC)
    after = None
    if long_poll and held is not None and held.changes is not None and held.fresh(now):
        after = held.changes
    try:
        fetched = await fetch(
            control,
            cert=control.cert or config.cert,
            key=control.key or config.key,
            instruments=[instrument.name for instrument in config.instruments],
            after=after,
        )
        if fetched is None:
            return Fetched.UNCHANGED
        token, jwks = fetched
        now = datetime.now(UTC)
        floor = max(store.last_version(), gateway.bundle.version if gateway.bundle else 0)
        bundle = read_bundle(token, jwks, control=control, now=now, above_version=floor)
        await asyncio.to_thread(store.keep, bundle)
        gateway.use_bundle(bundle, store.crl_path)
    except GatewayError as exc:
        gateway.record({"event": "bundle_refused", "reason": str(exc)})
        log.warning("%s", exc)
        now = datetime.now(UTC)
        if gateway.bundle is not None and gateway.bundle.expired(now):
            gateway.record({"event": "bundle_expired", "version": gateway.bundle.version})
            gateway.use_bundle(None, None)
        return Fetched.FAILED
    gateway.record({"event": "bundle", "version": bundle.version, "grants": len(bundle.grants)})
    return Fetched.APPLIED
