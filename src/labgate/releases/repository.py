"""A TUF repository on disk: create it, add a release, keep the online roles fresh, rotate root.

Roles and keys (labgate's choice, after TUF's own guidance):
- root: a threshold of offline keys (default 2 of 3), each kept by a person; expires after a year.
- targets: one offline key; it alone says which artifacts exist, with their version and the
  models they run on; expires after 7 days (a release is re-signed at least weekly).
- snapshot and timestamp: one online key, the only one the control server holds. It can freshen
  and re-list what the targets key signed, never add an artifact: a compromised server can at
  worst withhold updates until the timestamp expires (1 day).

Writers take `REPO/.lock` (an exclusive flock), so the command line and any number of server
replicas re-signing the timestamp never interleave; a replica that finds it taken skips its turn.
"""

from __future__ import annotations

import contextlib
import copy
import fcntl
import os
import shutil
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from securesystemslib.signer import Key, Signer
from tuf.api.exceptions import UnsignedMetadataError
from tuf.api.metadata import (
    Metadata,
    MetaFile,
    Role,
    Root,
    Snapshot,
    TargetFile,
    Targets,
    Timestamp,
)
from tuf.api.serialization import DeserializationError
from tuf.api.serialization.json import JSONSerializer

from labgate.pki.atomic import PUBLIC, sync_directory, write_atomic
from labgate.releases import layout
from labgate.releases.errors import (
    InvalidRelease,
    NotEnoughKeys,
    RepositoryExists,
    RepositoryNotFound,
    VerificationFailed,
)
from labgate.releases.versions import ReleaseInfo, Version, check_models

S = TypeVar("S", Root, Timestamp, Snapshot, Targets)

DEFAULT_ROOT_KEYS = 3
DEFAULT_ROOT_THRESHOLD = 2
# Artifacts larger than this are refused when added; the device's own cap may be lower.
MAX_ARTIFACT_BYTES = 4 * 1024**3
_SERIALIZER = JSONSerializer(compact=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class Expiries:
    root: timedelta = timedelta(days=365)
    targets: timedelta = timedelta(days=7)
    snapshot: timedelta = timedelta(days=7)
    timestamp: timedelta = timedelta(days=1)


@dataclass(frozen=True, slots=True, kw_only=True)
class OnlinePolicy:
    """When the holder of the online key re-signs: a timestamp once it is `timestamp_every` old
    (hourly, so a day's expiry leaves 23 hours of slack for an outage), a snapshot when less
    than `snapshot_margin` is left or the targets changed."""

    expiries: Expiries = field(default_factory=Expiries)
    timestamp_every: timedelta = timedelta(hours=1)
    snapshot_margin: timedelta = timedelta(days=1)


@dataclass(frozen=True, slots=True, kw_only=True)
class Added:
    path: str
    length: int
    sha256: str
    targets_version: int


class Repository:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.metadata = layout.metadata_dir(directory)
        self.targets_dir = layout.targets_dir(directory)

    # -- creating and opening ---------------------------------------------------------------

    @classmethod
    def create(
        cls,
        directory: Path,
        *,
        root_signers: Sequence[Signer],
        root_threshold: int,
        targets_signer: Signer,
        online_signer: Signer,
        now: datetime,
        expiries: Expiries = Expiries(),
    ) -> Repository:
        if not 1 <= root_threshold <= len(root_signers):
            raise InvalidRelease(
                f"root threshold {root_threshold} needs between 1 and {len(root_signers)} keys"
            )
        repo = cls(directory)
        if (repo.metadata / "1.root.json").exists():
            raise RepositoryExists(f"{directory} already holds a release repository")
        repo.metadata.mkdir(parents=True, exist_ok=True)
        repo.targets_dir.mkdir(parents=True, exist_ok=True)
        with repo._locked(wait=True):
            root = Root(expires=now + expiries.root, consistent_snapshot=True)
            for signer in root_signers:
                root.add_key(signer.public_key, layout.ROOT)
            root.roles[layout.ROOT].threshold = root_threshold
            root.add_key(targets_signer.public_key, layout.TARGETS_ROLE)
            root.add_key(online_signer.public_key, layout.SNAPSHOT)
            root.add_key(online_signer.public_key, layout.TIMESTAMP)
            root_md = Metadata(root)
            _sign(root_md, root.roles[layout.ROOT], root_signers, what="root")
            targets_md = Metadata(Targets(expires=now + expiries.targets))
            _sign(targets_md, root.roles[layout.TARGETS_ROLE], [targets_signer], what="targets")
            repo._write_root(root_md)
            repo._write(layout.versioned(layout.TARGETS_ROLE, 1), targets_md)
            repo._publish(online_signer, targets_md, now=now, expiries=expiries)
        return repo

    @classmethod
    def open(cls, directory: Path) -> Repository:
        repo = cls(directory)
        if not (repo.metadata / "root.json").is_file():
            raise RepositoryNotFound(
                f"{directory} holds no release repository (run `labgate release init` first)"
            )
        return repo

    # -- reading ----------------------------------------------------------------------------

    def root(self) -> Metadata[Root]:
        return self._read("root.json", Root)

    def root_bytes(self) -> bytes:
        return (self.metadata / "root.json").read_bytes()

    def timestamp(self) -> Metadata[Timestamp]:
        return self._read("timestamp.json", Timestamp)

    def snapshot(self) -> Metadata[Snapshot]:
        version = self.timestamp().signed.snapshot_meta.version
        return self._read(layout.versioned(layout.SNAPSHOT, version), Snapshot)

    def published_targets(self) -> Metadata[Targets]:
        """The targets the current snapshot lists: what clients see now."""
        version = self.snapshot().signed.meta["targets.json"].version
        return self._read(layout.versioned(layout.TARGETS_ROLE, version), Targets)

    def latest_targets(self) -> Metadata[Targets]:
        """The newest targets written (ahead of the snapshot until the online key lists it)."""
        return self._read(layout.versioned(layout.TARGETS_ROLE, self._newest("targets")), Targets)

    def releases(self) -> list[tuple[TargetFile, ReleaseInfo]]:
        found = []
        for target in self.latest_targets().signed.targets.values():
            found.append((target, ReleaseInfo.from_custom(target.custom, path=target.path)))
        return found

    # -- offline: releases and root ---------------------------------------------------------

    def add(
        self,
        *,
        version: str,
        compatible: Sequence[str],
        artifacts: Sequence[Path],
        signers: Sequence[Signer],
        now: datetime,
        expiries: Expiries = Expiries(),
    ) -> list[Added]:
        """Sign a new targets version listing `artifacts` as release `version` for `compatible`
        models. Clients see it once the online key publishes a snapshot naming it."""
        info = ReleaseInfo(
            version=Version.parse(version), compatible=check_models(tuple(compatible))
        )
        if not artifacts:
            raise InvalidRelease("a release needs at least one artifact")
        names = [artifact.name for artifact in artifacts]
        for name in names:
            if not layout.TARGET_NAME.fullmatch(name):
                raise InvalidRelease(
                    f"artifact name {name!r} is not 1-128 letters, digits, '.', '_' or '-'"
                    " (rename the file)"
                )
        if len(set(names)) != len(names):
            raise InvalidRelease("two artifacts of one release have the same file name")
        with self._locked(wait=True):
            current = self.latest_targets()
            role = self.root().signed.roles[layout.TARGETS_ROLE]
            targets = current.signed
            for name in names:
                if name in targets.targets:
                    raise InvalidRelease(
                        f"target {name!r} is already signed (version "
                        f"{targets.targets[name].custom.get('version')}); give a new file name"
                    )
            added = []
            for artifact, name in zip(artifacts, names, strict=True):
                size = artifact.stat().st_size
                if size > MAX_ARTIFACT_BYTES:
                    raise InvalidRelease(f"artifact {artifact} is {size} bytes, over the cap")
                target = TargetFile.from_file(name, str(artifact), ["sha256"])
                target.unrecognized_fields["custom"] = info.custom()
                sha256 = target.hashes["sha256"]
                destination = self.targets_dir / layout.hashed_target(name, sha256)
                _copy_durably(artifact, destination)
                targets.targets[name] = target
                added.append((name, target.length, sha256))
            targets.version += 1
            targets.expires = now + expiries.targets
            _sign(current, role, signers, what="targets")
            self._write(layout.versioned(layout.TARGETS_ROLE, targets.version), current)
        return [
            Added(path=name, length=length, sha256=sha256, targets_version=targets.version)
            for name, length, sha256 in added
        ]

    def resign_targets(
        self, *, signers: Sequence[Signer], now: datetime, expiries: Expiries = Expiries()
    ) -> int:
        """A new targets version with the same artifacts and a fresh expiry (weekly chore)."""
        with self._locked(wait=True):
            current = self.latest_targets()
            current.signed.version += 1
            current.signed.expires = now + expiries.targets
            _sign(current, self.root().signed.roles[layout.TARGETS_ROLE], signers, what="targets")
            self._write(layout.versioned(layout.TARGETS_ROLE, current.signed.version), current)
            return current.signed.version

    def rotate_root(
        self,
        *,
        root_keys: Sequence[Key],
        threshold: int,
        signers: Sequence[Signer],
        now: datetime,
        expiries: Expiries = Expiries(),
        online_key: Key | None = None,
        targets_key: Key | None = None,
    ) -> int:
        """Root N+1 with `root_keys` at `threshold` (and, optionally, a new online or targets
        key), signed by a threshold of the old root's keys and a threshold of the new ones, as a
        client checks it. Returns the new root's version."""
        if not 1 <= threshold <= len(root_keys):
            raise InvalidRelease(
                f"root threshold {threshold} needs between 1 and {len(root_keys)} keys"
            )
        with self._locked(wait=True):
            old = self.root()
            # A deep copy: to_dict() shares the roles' key id lists with the old root.
            new = Metadata(copy.deepcopy(old.signed))
            root = new.signed
            root.version += 1
            root.expires = now + expiries.root
            for keyid in list(root.roles[layout.ROOT].keyids):
                root.revoke_key(keyid, layout.ROOT)
            for key in root_keys:
                root.add_key(key, layout.ROOT)
            root.roles[layout.ROOT].threshold = threshold
            replaced = [(layout.SNAPSHOT, online_key), (layout.TIMESTAMP, online_key)]
            replaced.append((layout.TARGETS_ROLE, targets_key))
            for role_name, new_key in replaced:
                if new_key is None:
                    continue
                for keyid in list(root.roles[role_name].keyids):
                    root.revoke_key(keyid, role_name)
                root.add_key(new_key, role_name)
            old_role = old.signed.roles[layout.ROOT]
            new_role = root.roles[layout.ROOT]
            usable = [
                s
                for s in signers
                if s.public_key.keyid in set(old_role.keyids) | set(new_role.keyids)
            ]
            _require(old_role, usable, what=f"root {old.signed.version} (the old root's keys)")
            _require(new_role, usable, what=f"root {root.version} (the new root's keys)")
            new.signatures.clear()
            for signer in usable:
                new.sign(signer, append=True)
            try:
                old.verify_delegate(layout.ROOT, new)
                new.verify_delegate(layout.ROOT, new)
            except UnsignedMetadataError as error:
                raise VerificationFailed(f"new root does not verify: {error}") from None
            self._write_root(new)
            return root.version

    # -- online: snapshot and timestamp -----------------------------------------------------

    def refresh_online(
        self,
        signer: Signer,
        *,
        now: datetime,
        policy: OnlinePolicy = OnlinePolicy(),
        wait: bool = True,
    ) -> tuple[str, ...]:
        """Re-sign what is due with the online key: the snapshot when the targets changed or it
        nears expiry, the timestamp when the snapshot changed or it is `timestamp_every` old.
        Returns the roles re-signed; () when nothing was due or another writer holds the lock
        (`wait=False`, as server replicas call it)."""
        with self._locked(wait=wait) as held:
            if not held:
                return ()
            latest = self.latest_targets()
            snapshot = self.snapshot()
            timestamp = self.timestamp()
            listed = snapshot.signed.meta["targets.json"].version
            expiries = policy.expiries
            roles = self.root().signed.roles
            # A root that rotated the online key makes what the old key signed worthless.
            stale_snapshot = not set(snapshot.signatures) & set(roles[layout.SNAPSHOT].keyids)
            stale_timestamp = not set(timestamp.signatures) & set(roles[layout.TIMESTAMP].keyids)
            if (
                stale_snapshot
                or listed != latest.signed.version
                or snapshot.signed.expires - now < policy.snapshot_margin
            ):
                self._publish(signer, latest, now=now, expiries=expiries)
                return (layout.SNAPSHOT, layout.TIMESTAMP)
            issued = timestamp.signed.expires - expiries.timestamp
            if (
                stale_timestamp
                or now - issued >= policy.timestamp_every
                or timestamp.signed.expires <= now
            ):
                self._write_timestamp(signer, snapshot, now=now, expiries=expiries)
                return (layout.TIMESTAMP,)
            return ()

    # -- offline copies ---------------------------------------------------------------------

    def bundle(self, destination: Path) -> list[Path]:
        """Copy what a device needs for an offline install (every root, the current timestamp,
        snapshot and targets, the artifacts they list) to `destination`, laid out as served."""
        if destination.exists() and any(destination.iterdir()):
            raise InvalidRelease(f"bundle directory {destination} is not empty")
        with self._locked(wait=True):
            timestamp = self.timestamp()
            snapshot_name = layout.versioned(
                layout.SNAPSHOT, timestamp.signed.snapshot_meta.version
            )
            snapshot = self._read(snapshot_name, Snapshot)
            targets_name = layout.versioned(
                layout.TARGETS_ROLE, snapshot.signed.meta["targets.json"].version
            )
            targets = self._read(targets_name, Targets)
            names = sorted(n for n in os.listdir(self.metadata) if n.endswith(".root.json"))
            names += ["root.json", "timestamp.json", snapshot_name, targets_name]
            metadata = layout.metadata_dir(destination)
            artifacts = layout.targets_dir(destination)
            metadata.mkdir(parents=True, exist_ok=True)
            artifacts.mkdir(parents=True, exist_ok=True)
            written = []
            for name in names:
                _copy_durably(self.metadata / name, metadata / name)
                written.append(metadata / name)
            for target in targets.signed.targets.values():
                name = layout.hashed_target(target.path, target.hashes["sha256"])
                _copy_durably(self.targets_dir / name, artifacts / name)
                written.append(artifacts / name)
            return written

    # -- internals --------------------------------------------------------------------------

    def _publish(
        self, signer: Signer, targets: Metadata[Targets], *, now: datetime, expiries: Expiries
    ) -> None:
        snapshot = Metadata(
            Snapshot(
                version=self._next_version(self.snapshot),
                expires=now + expiries.snapshot,
                meta={"targets.json": self._meta(layout.TARGETS_ROLE, targets.signed.version)},
            )
        )
        self._sign_online(snapshot, signer, layout.SNAPSHOT)
        self._write_timestamp(signer, snapshot, now=now, expiries=expiries)

    def _write_timestamp(
        self, signer: Signer, snapshot: Metadata[Snapshot], *, now: datetime, expiries: Expiries
    ) -> None:
        timestamp = Metadata(
            Timestamp(
                version=self._next_version(self.timestamp),
                expires=now + expiries.timestamp,
                snapshot_meta=self._meta(layout.SNAPSHOT, snapshot.signed.version),
            )
        )
        self._sign_online(timestamp, signer, layout.TIMESTAMP)

    def _sign_online(self, metadata: Metadata[S], signer: Signer, role: str) -> None:
        _sign(metadata, self.root().signed.roles[role], [signer], what=role)
        name = "timestamp.json" if role == layout.TIMESTAMP else None
        self._write(name or layout.versioned(role, metadata.signed.version), metadata)

    def _meta(self, role: str, version: int) -> MetaFile:
        data = (self.metadata / layout.versioned(role, version)).read_bytes()
        return MetaFile.from_data(version, data, ["sha256"])

    @staticmethod
    def _next_version(current: Callable[[], Metadata[S]]) -> int:
        try:
            return current().signed.version + 1
        except FileNotFoundError:
            return 1

    def _write_root(self, root: Metadata[Root]) -> None:
        self._write(layout.versioned(layout.ROOT, root.signed.version), root)
        self._write("root.json", root)

    def _write(self, name: str, metadata: Metadata[S]) -> None:
        write_atomic(self.metadata / name, metadata.to_bytes(_SERIALIZER), mode=PUBLIC)

    def _read(self, name: str, kind: type[S]) -> Metadata[S]:
        path = self.metadata / name
        try:
            metadata: Metadata[Any] = Metadata.from_bytes(path.read_bytes())
        except DeserializationError as error:
            raise VerificationFailed(f"{path} is not TUF metadata: {error}") from None
        if not isinstance(metadata.signed, kind):
            raise VerificationFailed(
                f"{path} holds {metadata.signed.type} metadata, not {kind.type}"
            )
        return metadata

    def _newest(self, role: str) -> int:
        suffix = f".{role}.json"
        versions = [
            int(name[: -len(suffix)])
            for name in os.listdir(self.metadata)
            if name.endswith(suffix) and name[: -len(suffix)].isdigit()
        ]
        if not versions:
            raise RepositoryNotFound(f"{self.directory} has no {role} metadata")
        return max(versions)

    @contextlib.contextmanager
    def _locked(self, *, wait: bool) -> Iterator[bool]:
        self.directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.directory / layout.LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except BlockingIOError:
                yield False
                return
            yield True
        finally:
            os.close(fd)


def _require(role: Role, signers: Sequence[Signer], *, what: str) -> list[Signer]:
    usable = [signer for signer in signers if signer.public_key.keyid in role.keyids]
    if len(usable) < role.threshold:
        raise NotEnoughKeys(
            f"{what} needs {role.threshold} of its {len(role.keyids)} keys; "
            f"{len(usable)} of the keys given belong to it"
        )
    return usable


def _sign(metadata: Metadata[S], role: Role, signers: Sequence[Signer], *, what: str) -> None:
    metadata.signatures.clear()
    for signer in _require(role, signers, what=what):
        metadata.sign(signer, append=True)


def _copy_durably(source: Path, destination: Path) -> None:
    temporary = destination.with_name(f".{destination.name}.part")
    with source.open("rb") as reader, temporary.open("wb") as writer:
        shutil.copyfileobj(reader, writer, 1024 * 1024)
        writer.flush()
        os.fsync(writer.fileno())
    os.replace(temporary, destination)
    sync_directory(destination.parent)
