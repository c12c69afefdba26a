"""The control server's part in signed releases: serve the repository, keep its timestamp fresh.

The server holds the online key only (snapshot and timestamp). Every `releases_check_seconds`
it re-signs what is due: the timestamp hourly (so its 1-day expiry is never near), the snapshot
when the offline side has signed new targets or it nears its own expiry. Replicas sharing the
repository directory take its lock without waiting, so one of them signs and the others skip
that turn; nothing about it lives in a replica's memory.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from securesystemslib.signer import Signer

from labgate.control.errors import ConfigurationError, NotFound
from labgate.control.settings import ControlSettings
from labgate.releases import keyfiles, layout
from labgate.releases.errors import ReleaseError
from labgate.releases.repository import OnlinePolicy, Repository

log = logging.getLogger("labgate.control")


@dataclass(frozen=True, slots=True, kw_only=True)
class ReleaseService:
    repository: Repository
    online: Signer | None
    policy: OnlinePolicy
    check_seconds: float
    clock: Callable[[], datetime]

    @classmethod
    def from_settings(
        cls,
        settings: ControlSettings,
        *,
        passphrase: Callable[[], bytes],
        clock: Callable[[], datetime],
    ) -> ReleaseService | None:
        if settings.releases_dir is None:
            return None
        try:
            repository = Repository.open(settings.releases_dir)
            online = None
            if settings.releases_online_key is not None:
                secret = passphrase()
                if settings.releases_online_passphrase_file is not None:
                    # As `labgate release` reads it: one trailing newline is the editor's.
                    text = settings.releases_online_passphrase_file.read_bytes()
                    secret = text.removesuffix(b"\n").removesuffix(b"\r")
                online = keyfiles.load_key(settings.releases_online_key, secret)
        except ReleaseError as error:
            raise ConfigurationError(f"releases: {error}") from None
        policy = OnlinePolicy(
            timestamp_every=timedelta(seconds=settings.releases_timestamp_every_seconds)
        )
        return cls(
            repository=repository,
            online=online,
            policy=policy,
            check_seconds=settings.releases_check_seconds,
            clock=clock,
        )

    def file_for(self, kind: str, name: str) -> Path:
        path = layout.servable(self.repository.directory, kind, name)
        if path is None or not path.is_file():
            raise NotFound(f"no release file {kind}/{name}")
        return path

    def resign_due(self) -> tuple[str, ...]:
        if self.online is None:
            return ()
        roles = self.repository.refresh_online(
            self.online, now=self.clock(), policy=self.policy, wait=False
        )
        if roles:
            log.info("releases: re-signed %s", ", ".join(roles))
        return roles

    async def keep_fresh(self) -> None:
        """Run until cancelled: re-sign what is due, then sleep a check interval."""
        while True:
            try:
                await asyncio.to_thread(self.resign_due)
            except (ReleaseError, OSError) as error:
                # The served metadata stays valid for the rest of its expiry; say so loudly.
                log.error("releases: re-signing failed: %s", error)
            await asyncio.sleep(self.check_seconds)
