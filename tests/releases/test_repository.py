"""The repository's roles, thresholds, expiries, online re-signing, root rotation and bundles."""

from __future__ import annotations

import json
import os
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from securesystemslib.signer import CryptoSigner
from tuf.api.metadata import Metadata

from labgate.releases import keyfiles, layout
from labgate.releases.errors import InvalidRelease, NotEnoughKeys, RepositoryExists
from labgate.releases.repository import OnlinePolicy, Repository

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


class Keys:
    def __init__(self) -> None:
        self.root = [keyfiles.generate() for _ in range(3)]
        self.targets = keyfiles.generate()
        self.online = keyfiles.generate()


@pytest.fixture
def keys() -> Keys:
    return Keys()


@pytest.fixture
def repo(tmp_path: Path, keys: Keys) -> Repository:
    return Repository.create(
        tmp_path / "repo",
        root_signers=keys.root,
        root_threshold=2,
        targets_signer=keys.targets,
        online_signer=keys.online,
        now=NOW,
    )


def _artifact(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_new_repository_has_two_of_three_offline_root_and_an_online_key_only_for_two_roles(
    repo: Repository, keys: Keys
) -> None:
    root = repo.root().signed
    assert root.roles["root"].threshold == 2
    assert set(root.roles["root"].keyids) == {s.public_key.keyid for s in keys.root}
    assert root.roles["targets"].keyids == [keys.targets.public_key.keyid]
    assert root.roles["snapshot"].keyids == [keys.online.public_key.keyid]
    assert root.roles["timestamp"].keyids == [keys.online.public_key.keyid]
    assert root.consistent_snapshot
    assert len(repo.root().signatures) == 3


def test_expiries_are_a_year_a_week_a_week_and_a_day(repo: Repository) -> None:
    assert repo.root().signed.expires == NOW + timedelta(days=365)
    assert repo.latest_targets().signed.expires == NOW + timedelta(days=7)
    assert repo.snapshot().signed.expires == NOW + timedelta(days=7)
    assert repo.timestamp().signed.expires == NOW + timedelta(days=1)


def test_creating_twice_is_refused(repo: Repository, keys: Keys) -> None:
    with pytest.raises(RepositoryExists):
        Repository.create(
            repo.directory,
            root_signers=keys.root,
            root_threshold=2,
            targets_signer=keys.targets,
            online_signer=keys.online,
            now=NOW,
        )


def test_added_release_carries_version_and_models_and_waits_for_the_online_key(
    repo: Repository, keys: Keys, tmp_path: Path
) -> None:
    artifact = _artifact(tmp_path, "fw-1.4.bin", b"firmware")
    (added,) = repo.add(
        version="1.4",
        compatible=["qs5", "qs7"],
        artifacts=[artifact],
        signers=[keys.targets],
        now=NOW,
    )
    target = repo.latest_targets().signed.targets["fw-1.4.bin"]
    assert target.custom == {"version": "1.4", "compatible": ["qs5", "qs7"]}
    stored = repo.targets_dir / layout.hashed_target("fw-1.4.bin", added.sha256)
    assert stored.read_bytes() == b"firmware"
    assert "fw-1.4.bin" not in repo.published_targets().signed.targets  # not yet published
    assert repo.refresh_online(keys.online, now=NOW) == ("snapshot", "timestamp")
    assert "fw-1.4.bin" in repo.published_targets().signed.targets


def test_targets_cannot_be_signed_by_the_online_key(
    repo: Repository, keys: Keys, tmp_path: Path
) -> None:
    with pytest.raises(NotEnoughKeys, match="targets needs 1"):
        repo.add(
            version="1.0",
            compatible=["qs5"],
            artifacts=[_artifact(tmp_path, "a.bin", b"a")],
            signers=[keys.online],
            now=NOW,
        )


@pytest.mark.parametrize(
    ("version", "models", "name"),
    [
        ("1.x", ["qs5"], "a.bin"),
        ("1.2.3.4.5", ["qs5"], "a.bin"),
        ("1.0", [], "a.bin"),
        ("1.0", ["bad model"], "a.bin"),
        ("1.0", ["qs5"], "bad name.bin"),
    ],
)
def test_bad_release_input_is_refused_with_the_input_named(
    repo: Repository, keys: Keys, tmp_path: Path, version: str, models: list[str], name: str
) -> None:
    with pytest.raises(InvalidRelease):
        repo.add(
            version=version,
            compatible=models,
            artifacts=[_artifact(tmp_path, name, b"x")],
            signers=[keys.targets],
            now=NOW,
        )


def test_a_target_name_is_signed_once(repo: Repository, keys: Keys, tmp_path: Path) -> None:
    artifact = _artifact(tmp_path, "fw.bin", b"one")
    repo.add(version="1", compatible=["qs5"], artifacts=[artifact], signers=[keys.targets], now=NOW)
    artifact.write_bytes(b"two")
    with pytest.raises(InvalidRelease, match="already signed"):
        repo.add(
            version="2", compatible=["qs5"], artifacts=[artifact], signers=[keys.targets], now=NOW
        )


def test_timestamp_is_re_signed_hourly_and_snapshot_a_day_before_it_expires(
    repo: Repository, keys: Keys
) -> None:
    policy = OnlinePolicy()
    assert repo.refresh_online(keys.online, now=NOW + timedelta(minutes=59), policy=policy) == ()
    assert repo.refresh_online(keys.online, now=NOW + timedelta(hours=1), policy=policy) == (
        "timestamp",
    )
    stamp = repo.timestamp().signed
    assert stamp.version == 2 and stamp.expires == NOW + timedelta(hours=25)
    assert repo.refresh_online(keys.online, now=NOW + timedelta(days=6, hours=1)) == (
        "snapshot",
        "timestamp",
    )
    assert repo.snapshot().signed.expires == NOW + timedelta(days=13, hours=1)


def test_replicas_do_not_fight_over_the_lock(repo: Repository, keys: Keys) -> None:
    # Another writer (the command line, or a replica) holds the lock: a replica skips its turn.
    import fcntl

    fd = os.open(repo.directory / layout.LOCK, os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        later = NOW + timedelta(hours=2)
        assert repo.refresh_online(keys.online, now=later, wait=False) == ()
    finally:
        os.close(fd)
    results: list[tuple[str, ...]] = []
    workers = [
        threading.Thread(
            target=lambda: results.append(
                Repository.open(repo.directory).refresh_online(keys.online, now=later, wait=True)
            )
        )
        for _ in range(4)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    # One of them re-signed; the others found nothing due: one new timestamp, not four.
    assert sorted(results) == [(), (), (), ("timestamp",)]
    assert repo.timestamp().signed.version == 2


def test_root_rotation_needs_the_old_threshold_and_the_new(repo: Repository, keys: Keys) -> None:
    fresh = [keyfiles.generate() for _ in range(3)]
    new_keys = [s.public_key for s in fresh]
    with pytest.raises(NotEnoughKeys, match="old root"):
        repo.rotate_root(root_keys=new_keys, threshold=2, signers=[keys.root[0], *fresh], now=NOW)
    with pytest.raises(NotEnoughKeys, match="new root"):
        repo.rotate_root(root_keys=new_keys, threshold=2, signers=[*keys.root, fresh[0]], now=NOW)
    assert (
        repo.rotate_root(
            root_keys=new_keys,
            threshold=2,
            signers=[keys.root[1], keys.root[2], *fresh[:2]],
            now=NOW,
        )
        == 2
    )
    old = Metadata.from_bytes((repo.metadata / "1.root.json").read_bytes())
    new = repo.root()
    old.verify_delegate("root", new)
    new.verify_delegate("root", new)
    assert (repo.metadata / "2.root.json").read_bytes() == repo.root_bytes()


def test_online_key_rotation_through_root(repo: Repository, keys: Keys) -> None:
    replacement = keyfiles.generate()
    repo.rotate_root(
        root_keys=[s.public_key for s in keys.root],
        threshold=2,
        signers=keys.root[:2],
        now=NOW,
        online_key=replacement.public_key,
    )
    with pytest.raises(NotEnoughKeys, match="snapshot needs 1"):
        repo.refresh_online(keys.online, now=NOW + timedelta(minutes=5))
    # What the old key signed is stale at once, not when it would next be due.
    assert repo.refresh_online(replacement, now=NOW + timedelta(minutes=5)) == (
        "snapshot",
        "timestamp",
    )
    assert repo.refresh_online(replacement, now=NOW + timedelta(minutes=6)) == ()


def test_bundle_holds_every_root_and_the_current_release_only(
    repo: Repository, keys: Keys, tmp_path: Path
) -> None:
    repo.add(
        version="1",
        compatible=["qs5"],
        artifacts=[_artifact(tmp_path, "fw.bin", b"fw")],
        signers=[keys.targets],
        now=NOW,
    )
    repo.refresh_online(keys.online, now=NOW)
    repo.rotate_root(
        root_keys=[s.public_key for s in keys.root], threshold=2, signers=keys.root, now=NOW
    )
    out = tmp_path / "usb"
    repo.bundle(out)
    names = sorted(p.name for p in (out / "metadata").iterdir())
    assert names == [
        "1.root.json",
        "2.root.json",
        "2.snapshot.json",
        "2.targets.json",
        "root.json",
        "timestamp.json",
    ]
    (artifact,) = (out / "targets").iterdir()
    assert artifact.read_bytes() == b"fw"
    with pytest.raises(InvalidRelease, match="not empty"):
        repo.bundle(out)


@pytest.mark.parametrize(
    ("kind", "name"),
    [
        ("metadata", "../secret"),
        ("metadata", ".lock"),
        ("metadata", "keys.json"),
        ("targets", "fw.bin"),
        ("targets", "0" * 64 + "./x"),
        ("keys", "online.key"),
    ],
)
def test_only_repository_names_are_servable(repo: Repository, kind: str, name: str) -> None:
    assert layout.servable(repo.directory, kind, name) is None


def test_servable_names(repo: Repository) -> None:
    assert layout.servable(repo.directory, "metadata", "timestamp.json") is not None
    assert layout.servable(repo.directory, "metadata", "12.snapshot.json") is not None
    assert layout.servable(repo.directory, "targets", "a" * 64 + ".fw-1.bin") is not None


def test_metadata_on_disk_is_canonical_tuf_json(repo: Repository) -> None:
    data = json.loads((repo.metadata / "timestamp.json").read_text())
    assert data["signed"]["_type"] == "timestamp"
    assert isinstance(CryptoSigner, type)
