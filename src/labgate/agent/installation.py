"""Installing a signed release: verify, download, install into the other slot, check, commit.

    DIR/releases/trusted-root.json  the root this device trusts (provisioned; never replaced by
                                    anything but a TUF root rotation, which ngclient verifies)
    DIR/releases/config.json        the device's model and its install and health commands
    DIR/releases/metadata/          ngclient's cache of verified metadata (rollback protection)
    DIR/releases/downloads/         partial artifacts, resumed by the next attempt
    DIR/releases/slots*, ...        labgate.agent.slots

One `ReleaseInstall` per install, in steps a job handler can report between: `verify()`,
`fetch()`, `install()`, `check()`, then `commit()` or `roll_back()`. `run()` does all of them.
An online install reads the control server's `/tuf/`; an offline one reads a bundle directory
through the same verification, with the time the operator states standing in for the clock.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import ssl
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from securesystemslib.exceptions import UnverifiedSignatureError
from tuf.api.exceptions import LengthOrHashMismatchError, UnsignedMetadataError
from tuf.api.metadata import Metadata, Root
from tuf.api.serialization import DeserializationError
from tuf.ngclient import FetcherInterface

from labgate.agent import download, slots
from labgate.agent.errors import CorruptState, ReasonedError
from labgate.pki.atomic import PRIVATE, PUBLIC, write_atomic
from labgate.releases import layout
from labgate.releases.errors import Refused, ReleaseError
from labgate.releases.verification import Binding, Client, VerifiedTarget
from labgate.releases.versions import MODEL

RELEASES = "releases"
TRUSTED_ROOT = "trusted-root.json"
CONFIG = "config.json"
LOCK = ".lock"
DEFAULT_MAX_TARGET_BYTES = 4 * 1024**3

Report = Callable[[str, Mapping[str, str | int | bool]], None]


class InstallRefused(ReasonedError):
    """The device will not install this (wrong model, not what the job names, older than the
    floor, no trusted root): reported REJECTED."""


class InstallFailed(ReasonedError):
    """The install was attempted and did not succeed (verification, download, health check):
    reported FAILED, the running slot unchanged."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ReleaseConfig:
    model: str
    install_command: tuple[str, ...] = ()
    health_command: tuple[str, ...] = ()
    min_rate_bytes: int = 1024
    rate_window_seconds: float = 60.0
    max_target_bytes: int = DEFAULT_MAX_TARGET_BYTES

    def __post_init__(self) -> None:
        if not MODEL.fullmatch(self.model):
            raise InstallRefused("bad_config", f"device model {self.model!r} is not a model name")

    @property
    def floor(self) -> download.RateFloor:
        return download.RateFloor(
            bytes_per_second=self.min_rate_bytes, window_seconds=self.rate_window_seconds
        )

    def slots(self, data_dir: Path) -> slots.Slots:
        installer: slots.Installer = slots.move_installer
        health: slots.HealthCheck = slots.release_present
        if self.install_command:
            installer = slots.CommandInstaller(argv=self.install_command)
        if self.health_command:
            health = slots.CommandHealthCheck(argv=self.health_command)
        return slots.Slots(data_dir / RELEASES, installer=installer, health=health)

    def save(self, data_dir: Path) -> None:
        directory = data_dir / RELEASES
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_atomic(
            directory / CONFIG, json.dumps(asdict(self), sort_keys=True).encode(), mode=PUBLIC
        )

    @classmethod
    def load(cls, data_dir: Path) -> ReleaseConfig:
        path = data_dir / RELEASES / CONFIG
        try:
            data = json.loads(path.read_text())
            data["install_command"] = tuple(data.get("install_command", ()))
            data["health_command"] = tuple(data.get("health_command", ()))
            return cls(**data)
        except FileNotFoundError:
            raise InstallRefused(
                "not_configured", f"{path} is missing: this device is not set up for releases"
            ) from None
        except (ValueError, TypeError) as error:
            raise CorruptState(
                f"{path} is not the release configuration labgate wrote: {error}"
            ) from None


@dataclass(frozen=True, slots=True, kw_only=True)
class Online:
    server_url: str
    context: ssl.SSLContext

    def base(self, kind: str) -> str:
        return f"{self.server_url.rstrip('/')}/tuf/{kind}/"


@dataclass(frozen=True, slots=True, kw_only=True)
class Bundle:
    directory: Path
    valid_at: datetime


Source = Online | Bundle


@dataclass(frozen=True, slots=True, kw_only=True)
class Outcome:
    version: str
    slot: str
    committed: bool
    reason: str = ""
    received: int = 0

    def details(self) -> dict[str, str | int | bool]:
        shown: dict[str, str | int | bool] = {
            "version": self.version,
            "slot": self.slot,
            "committed": self.committed,
        }
        if self.reason:
            shown["reason"] = self.reason[:256]
        return shown


def install_root(data_dir: Path, root: bytes) -> None:
    """Provision the root this device trusts: a self-signed TUF root (threshold of its own keys).
    Refuses to replace a different root already installed; later roots come by rotation."""
    try:
        metadata = Metadata[Root].from_bytes(root)
        if not isinstance(metadata.signed, Root):
            raise DeserializationError("not root metadata")
        metadata.verify_delegate(layout.ROOT, metadata)
    except (DeserializationError, UnsignedMetadataError, UnverifiedSignatureError) as error:
        raise InstallRefused(
            "bad_root", f"the root given is not a self-signed TUF root: {error}"
        ) from None
    directory = data_dir / RELEASES
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = directory / TRUSTED_ROOT
    if path.exists():
        if path.read_bytes() == root:
            return
        raise InstallRefused(
            "root_installed",
            f"{path} already holds another root; a new root reaches a device by rotation",
        )
    write_atomic(path, root, mode=PUBLIC)


def trusted_root(data_dir: Path) -> bytes:
    path = data_dir / RELEASES / TRUSTED_ROOT
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise InstallRefused(
            "no_trusted_root",
            f"{path} is missing: provision the release root first (labgate agent release-root)",
        ) from None


@dataclass(slots=True)
class ReleaseInstall:
    data_dir: Path
    config: ReleaseConfig
    source: Source
    binding: Binding
    report: Report = field(default=lambda step, details: None)
    tally: download.Tally = field(default_factory=download.Tally)
    verified: VerifiedTarget | None = None
    artifact: Path | None = None
    slot: str | None = None
    pool: Any = None
    slot_store: slots.Slots = field(init=False)

    def __post_init__(self) -> None:
        if self.binding.length > self.config.max_target_bytes:
            raise InstallRefused(
                "too_large",
                f"{self.binding.length} bytes is over this device's cap of "
                f"{self.config.max_target_bytes}",
            )
        self.slot_store = self.config.slots(self.data_dir)

    @property
    def directory(self) -> Path:
        return self.data_dir / RELEASES

    def run(self) -> Outcome:
        with self.exclusive():
            self.verify()
            self.fetch()
            self.install()
            health = self.check()
            return self.commit() if health.healthy else self.roll_back(health.reason)

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.directory / LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, PRIVATE)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise InstallFailed("busy", "another install is running on this device") from None
            yield
        finally:
            os.close(fd)

    def verify(self) -> VerifiedTarget:
        pool = None
        if isinstance(self.source, Online):
            pool = download.pool_for(self.source.context, self.config.floor)
            fetcher: FetcherInterface = download.HttpsFetcher(pool, self.config.floor, self.tally)
            url = self.source.base(layout.METADATA)
            reference = None
        else:
            fetcher = download.BundleFetcher(self.source.directory)
            url = f"{download.BUNDLE_SCHEME}:///{layout.METADATA}/"
            reference = self.source.valid_at
        self.pool = pool
        try:
            client = Client(
                cache_dir=self.directory / layout.METADATA,
                trusted_root=trusted_root(self.data_dir),
                metadata_url=url,
                fetcher=fetcher,
                reference_time=reference,
            )
            self.verified = client.target_for(
                self.binding, model=self.config.model, floor=self.slot_store.floor()
            )
        except Refused as refusal:
            raise InstallRefused(refusal.reason, str(refusal)) from None
        except ReleaseError as error:
            raise InstallFailed("verification_failed", str(error)) from None
        except download.DownloadFailed as error:
            raise InstallFailed(error.reason, str(error)) from None
        self.report("verified", {"version": str(self.verified.release.version)})
        return self.verified

    def fetch(self) -> Path:
        verified = self._verified()
        downloads = self.directory / "downloads"
        downloads.mkdir(parents=True, exist_ok=True, mode=0o700)
        partial = downloads / f"{verified.sha256}.part"
        name = layout.hashed_target(verified.path, verified.sha256)
        try:
            if isinstance(self.source, Online):
                assert self.pool is not None
                download.download_target(
                    self.pool,
                    self.source.base(layout.TARGETS) + name,
                    partial,
                    length=verified.length,
                    floor=self.config.floor,
                    tally=self.tally,
                )
            else:
                download.copy_target(
                    layout.targets_dir(self.source.directory) / name,
                    partial,
                    length=verified.length,
                )
        except download.DownloadFailed as error:
            raise InstallFailed(error.reason, str(error)) from None
        try:
            with partial.open("rb") as handle:
                verified.info.verify_length_and_hashes(handle)
        except LengthOrHashMismatchError:
            download.discard(partial)
            raise InstallFailed(
                "hash_mismatch", f"{verified.path}: the bytes received do not match the signed hash"
            ) from None
        self.artifact = partial
        self.report("downloaded", {"bytes": verified.length, "received": self.tally.received})
        return partial

    def install(self) -> str:
        verified = self._verified()
        assert self.artifact is not None
        try:
            self.slot = self.slot_store.install(
                self.artifact,
                name=verified.path.replace("/", "_"),
                version=verified.release.version,
                sha256=verified.sha256,
                length=verified.length,
            )
            self.slot_store.activate(self.slot)
        except slots.SlotError as error:
            raise InstallFailed(error.reason, str(error)) from None
        self.report("installed", {"slot": self.slot})
        return self.slot

    def check(self) -> slots.Health:
        assert self.slot is not None
        health = self.slot_store.check(self.slot)
        self.report("health", {"healthy": health.healthy})
        return health

    def commit(self) -> Outcome:
        verified = self._verified()
        state = self.slot_store.commit()
        if self.artifact is not None:
            download.discard(self.artifact)
        self.report("committed", {"slot": state.active, "floor": state.floor or ""})
        return Outcome(
            version=str(verified.release.version),
            slot=state.active,
            committed=True,
            received=self.tally.received,
        )

    def roll_back(self, reason: str) -> Outcome:
        verified = self._verified()
        state = self.slot_store.roll_back()
        self.report("rolled_back", {"slot": state.active, "reason": reason[:256]})
        return Outcome(
            version=str(verified.release.version),
            slot=state.active,
            committed=False,
            reason=reason,
            received=self.tally.received,
        )

    def _verified(self) -> VerifiedTarget:
        if self.verified is None:
            raise InstallFailed("out_of_order", "verify() comes before the other steps")
        return self.verified
