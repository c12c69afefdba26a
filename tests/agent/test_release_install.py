"""Installing signed releases, and every attack on it from the server's or the network's side.

Each attack is made with real python-tuf metadata and real keys, served over real TLS by a file
server that misbehaves on request; the device is the real install path (ngclient, the downloader,
the slots). Each must end in a refusal or a failure that leaves the running slot as it was.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from tuf.api.metadata import Metadata, MetaFile, TargetFile

from labgate.agent import slots
from labgate.agent.download import DownloadFailed, RateFloor, RateWatch
from labgate.agent.installation import InstallFailed, InstallRefused, install_root
from labgate.releases import keyfiles
from labgate.releases.repository import Repository
from labgate.releases.verification import Binding

from .releaseworld import (
    MODEL,
    Device,
    Keys,
    World,
    make_repository,
    new_keys,
    provision,
    release,
    serve,
)

FIRMWARE = bytes(range(256)) * 1024  # 256 KiB
NEWER = b"\x5a" * 300_000


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    from labgate.pki import CertificateAuthority, Profile

    base = tmp_path_factory.mktemp("tls")
    with CertificateAuthority.init(base / "ca", passphrase=None, unencrypted=True) as ca:
        issued = ca.issue(Profile.SERVER, "mirror", ips=["127.0.0.1"])
        issued.write(base / "mirror")
        root = base / "root.crt"
        root.write_bytes(ca.root_pem)
    return base / "mirror.crt", base / "mirror.key", root


@pytest.fixture
def keys() -> Keys:
    return new_keys()


@pytest.fixture
def repo_dir(tmp_path: Path) -> Path:
    return tmp_path / "repo"


@pytest.fixture
def world(repo_dir: Path, keys: Keys, tls: tuple[Path, Path, Path]) -> Iterator[World]:
    make_repository(repo_dir, keys)
    with serve(repo_dir, (tls[0], tls[1])) as running:
        yield running


@pytest.fixture
def device(tmp_path: Path, world: World, tls: tuple[Path, Path, Path]) -> Device:
    return provision(tmp_path / "device", Repository.open(world.directory), tls[2])


@pytest.fixture
def repo(world: World) -> Repository:
    return Repository.open(world.directory)


def _state(device: Device) -> slots.SlotState:
    return device.config.slots(device.data_dir).state()


# -- the path that must work ----------------------------------------------------------------


def test_signed_release_is_installed_into_the_other_slot_and_committed(
    device: Device, world: World, repo: Repository, keys: Keys, tmp_path: Path
) -> None:
    binding = release(repo, keys, tmp_path, version="1.2.0", data=FIRMWARE)
    steps: list[str] = []
    install = device.install(binding, world)
    install.report = lambda step, details: steps.append(step)
    outcome = install.run()
    assert outcome.committed and outcome.slot == "b" and outcome.version == "1.2.0"
    assert steps == ["verified", "downloaded", "installed", "health", "committed"]
    state = _state(device)
    assert (state.active, state.good, state.floor, state.trial) == ("b", "b", "1.2.0", None)
    installed = device.data_dir / "releases" / "slots" / "b" / binding.target_path
    assert hashlib.sha256(installed.read_bytes()).hexdigest() == binding.sha256
    assert world.served.target_bytes == len(FIRMWARE)


# -- attacks --------------------------------------------------------------------------------


def test_tampered_artifact_is_refused_and_the_slot_unchanged(
    device: Device, world: World, repo: Repository, keys: Keys, tmp_path: Path
) -> None:
    binding = release(repo, keys, tmp_path, version="1.0.0", data=FIRMWARE)
    evil = bytearray(FIRMWARE)
    evil[1000] ^= 0xFF
    world.misbehaviour.replace[f"{binding.sha256}.{binding.target_path}"] = bytes(evil)
    with pytest.raises(InstallFailed) as caught:
        device.install(binding, world).run()
    assert caught.value.reason == "hash_mismatch"
    assert _state(device) == slots.SlotState()
    assert not list((device.data_dir / "releases" / "downloads").iterdir())


def test_repository_signed_by_other_keys_is_refused(
    device: Device, world: World, keys: Keys, tmp_path: Path
) -> None:
    # The attacker runs a whole repository of their own (other root, other targets key) and
    # names the very target path and bytes the install asks for.
    other_keys = new_keys()
    other = make_repository(tmp_path / "other", other_keys)
    binding = release(other, other_keys, tmp_path, version="9.0.0", data=FIRMWARE)
    shutil.rmtree(world.directory)
    shutil.copytree(tmp_path / "other", world.directory)
    with pytest.raises(InstallFailed, match="timestamp was signed by 0/1 keys") as caught:
        device.install(binding, world).run()
    assert caught.value.reason == "verification_failed"
    assert world.served.target_bytes == 0


def test_expired_metadata_is_refused(
    device: Device, world: World, repo: Repository, keys: Keys, tmp_path: Path
) -> None:
    # A freeze: the server keeps serving a release whose timestamp ran out two days ago.
    old = datetime.now(UTC) - timedelta(days=3)
    binding = release(repo, keys, tmp_path, version="1.0.0", data=FIRMWARE, now=old)
    with pytest.raises(InstallFailed, match=r"[eE]xpired") as caught:
        device.install(binding, world).run()
    assert caught.value.reason == "verification_failed"


def test_older_version_than_the_floor_is_refused(
    device: Device, world: World, repo: Repository, keys: Keys, tmp_path: Path
) -> None:
    old = release(repo, keys, tmp_path, version="1.0.0", data=FIRMWARE)
    new = release(repo, keys, tmp_path, version="2.0.0", data=NEWER)
    assert device.install(new, world).run().committed
    with pytest.raises(InstallRefused) as caught:
        device.install(old, world).run()
    assert caught.value.reason == "older-than-floor"
    assert _state(device).floor == "2.0.0"


def test_replayed_old_timestamp_is_refused(
    device: Device, world: World, repo: Repository, keys: Keys, tmp_path: Path
) -> None:
    first = release(repo, keys, tmp_path, version="1.0.0", data=FIRMWARE)
    old_timestamp = (world.directory / "metadata" / "timestamp.json").read_bytes()
    second = release(repo, keys, tmp_path, version="1.1.0", data=NEWER)
    assert device.install(second, world).run().committed
    world.misbehaviour.replace["timestamp.json"] = old_timestamp
    with pytest.raises(InstallFailed, match="BadVersionNumberError") as caught:
        device.install(first, world).run()
    assert caught.value.reason == "verification_failed"


def test_replayed_old_snapshot_is_refused(
    device: Device, world: World, repo: Repository, keys: Keys, tmp_path: Path
) -> None:
    release(repo, keys, tmp_path, version="1.0.0", data=FIRMWARE)
    old_snapshot = (
        world.directory / "metadata" / f"{repo.snapshot().signed.version}.snapshot.json"
    ).read_bytes()
    second = release(repo, keys, tmp_path, version="1.1.0", data=NEWER)
    # The current timestamp, and under the current snapshot's name the old snapshot's bytes.
    world.misbehaviour.replace[f"{repo.snapshot().signed.version}.snapshot.json"] = old_snapshot
    with pytest.raises(InstallFailed, match="LengthOrHashMismatchError") as caught:
        device.install(second, world).run()
    assert caught.value.reason == "verification_failed"


def test_metadata_mixing_two_releases_is_refused(
    device: Device, world: World, repo: Repository, keys: Keys, tmp_path: Path
) -> None:
    release(repo, keys, tmp_path, version="1.0.0", data=FIRMWARE)
    targets_v = repo.published_targets().signed.version
    first_targets = (world.directory / "metadata" / f"{targets_v}.targets.json").read_bytes()
    second = release(repo, keys, tmp_path, version="1.1.0", data=NEWER)
    # Release 1.1's timestamp and snapshot with release 1.0's targets (both validly signed).
    world.misbehaviour.replace[f"{targets_v + 1}.targets.json"] = first_targets
    with pytest.raises(InstallFailed, match="LengthOrHashMismatchError") as caught:
        device.install(second, world).run()
    assert caught.value.reason == "verification_failed"


def test_artifact_longer_than_declared_is_cut_off(
    device: Device, world: World, repo: Repository, keys: Keys, tmp_path: Path
) -> None:
    binding = release(repo, keys, tmp_path, version="1.0.0", data=FIRMWARE)
    name = f"{binding.sha256}.{binding.target_path}"
    world.misbehaviour.replace[name] = FIRMWARE + b"\0" * 10_000_000
    with pytest.raises(InstallFailed) as caught:
        device.install(binding, world).run()
    assert caught.value.reason == "too_long"
    assert world.served.target_bytes < len(FIRMWARE) + 2 * 65536 + 10_000_000


def test_endless_metadata_is_cut_off(
    device: Device, world: World, repo: Repository, keys: Keys, tmp_path: Path
) -> None:
    binding = release(repo, keys, tmp_path, version="1.0.0", data=FIRMWARE)
    world.misbehaviour.endless = True
    with pytest.raises(InstallFailed, match="DownloadLengthMismatchError") as caught:
        device.install(binding, world).run()
    assert caught.value.reason == "verification_failed"
    # ngclient stops at the timestamp's cap (16 KiB here) plus what was in flight.
    assert world.served.body_bytes < 16 * 1024 * 1024


def test_slow_retrieval_is_aborted_below_the_rate_floor(
    tmp_path: Path, world: World, repo: Repository, keys: Keys, tls: tuple[Path, Path, Path]
) -> None:
    device = provision(
        tmp_path / "slow-device", repo, tls[2], min_rate_bytes=4096, rate_window_seconds=0.5
    )
    binding = release(repo, keys, tmp_path, version="1.0.0", data=FIRMWARE)
    world.misbehaviour.trickle_bytes_per_second = 1000
    with pytest.raises(InstallFailed) as caught:
        device.install(binding, world).run()
    assert caught.value.reason == "too_slow"


def test_artifact_trickled_after_verified_metadata_is_aborted(
    tmp_path: Path, world: World, repo: Repository, keys: Keys, tls: tuple[Path, Path, Path]
) -> None:
    device = provision(
        tmp_path / "slow-device", repo, tls[2], min_rate_bytes=4096, rate_window_seconds=0.5
    )
    binding = release(repo, keys, tmp_path, version="1.0.0", data=FIRMWARE)
    world.misbehaviour.trickle_bytes_per_second = 2000
    world.misbehaviour.trickle_targets_only = True
    with pytest.raises(InstallFailed, match=r"/tuf/targets/.*below the floor") as caught:
        device.install(binding, world).run()
    assert caught.value.reason == "too_slow"
    assert 0 < world.served.target_bytes < len(FIRMWARE) // 10


def test_rate_watch_passes_a_steady_download_and_stops_a_trickle() -> None:
    now = [0.0]
    watch = RateWatch(RateFloor(bytes_per_second=1024, window_seconds=60), clock=lambda: now[0])
    for _ in range(10):  # 2 KiB/s for 100 s
        now[0] += 10
        watch.received(20 * 1024, what="steady")
    trickle = RateWatch(RateFloor(bytes_per_second=1024, window_seconds=60), clock=lambda: now[0])
    with pytest.raises(DownloadFailed, match="below the floor"):
        for _ in range(7):  # 1000 B/s: under 1 KiB/s
            now[0] += 10
            trickle.received(10_000, what="trickle")


def test_release_for_another_model_is_refused(
    device: Device, world: World, repo: Repository, keys: Keys, tmp_path: Path
) -> None:
    binding = release(repo, keys, tmp_path, version="3.0.0", data=FIRMWARE, models=("qs7",))
    with pytest.raises(InstallRefused, match="not this device's model 'qs5'") as caught:
        device.install(binding, world).run()
    assert caught.value.reason == "wrong-model"
    assert world.served.target_bytes == 0


def test_install_naming_other_bytes_than_the_signed_target_is_refused(
    device: Device, world: World, repo: Repository, keys: Keys, tmp_path: Path
) -> None:
    # An install made for another device's build: same path, other length and hash.
    binding = release(repo, keys, tmp_path, version="1.0.0", data=FIRMWARE)
    other = Binding(
        target_path=binding.target_path, length=len(NEWER), sha256=hashlib.sha256(NEWER).hexdigest()
    )
    with pytest.raises(InstallRefused) as caught:
        device.install(other, world).run()
    assert caught.value.reason == "binding-mismatch"


def test_online_key_cannot_sign_targets(
    device: Device, world: World, repo: Repository, keys: Keys, tmp_path: Path
) -> None:
    # The server is compromised: its online key signs a new targets role listing the attacker's
    # artifact, and a snapshot and timestamp that list that targets role, all consistently.
    release(repo, keys, tmp_path, version="1.0.0", data=FIRMWARE)
    evil = b"\xee" * 5000
    metadata = world.directory / "metadata"
    targets = repo.published_targets()
    targets.signed.version += 1
    target = TargetFile.from_data("evil.bin", evil, ["sha256"])
    target.unrecognized_fields["custom"] = {"version": "99.0", "compatible": [MODEL]}
    targets.signed.targets["evil.bin"] = target
    targets.sign(keys.online)
    targets_bytes = targets.to_bytes()
    (metadata / f"{targets.signed.version}.targets.json").write_bytes(targets_bytes)
    snapshot = repo.snapshot()
    snapshot.signed.version += 1
    snapshot.signed.meta["targets.json"] = MetaFile.from_data(
        targets.signed.version, targets_bytes, ["sha256"]
    )
    snapshot.sign(keys.online)
    snapshot_bytes = snapshot.to_bytes()
    (metadata / f"{snapshot.signed.version}.snapshot.json").write_bytes(snapshot_bytes)
    timestamp = repo.timestamp()
    timestamp.signed.version += 1
    timestamp.signed.snapshot_meta = MetaFile.from_data(
        snapshot.signed.version, snapshot_bytes, ["sha256"]
    )
    timestamp.sign(keys.online)
    (metadata / "timestamp.json").write_bytes(timestamp.to_bytes())
    (world.directory / "targets" / f"{target.hashes['sha256']}.evil.bin").write_bytes(evil)
    binding = Binding(target_path="evil.bin", length=len(evil), sha256=target.hashes["sha256"])
    with pytest.raises(InstallFailed, match="targets was signed by 0/1 keys") as caught:
        device.install(binding, world).run()
    assert caught.value.reason == "verification_failed"
    assert world.served.target_bytes == 0


def test_failed_health_check_rolls_back(
    tmp_path: Path, world: World, repo: Repository, keys: Keys, tls: tuple[Path, Path, Path]
) -> None:
    device = provision(tmp_path / "sick", repo, tls[2], health_command=("false",))
    binding = release(repo, keys, tmp_path, version="1.0.0", data=FIRMWARE)
    steps: list[tuple[str, dict[str, object]]] = []
    install = device.install(binding, world)
    install.report = lambda step, details: steps.append((step, dict(details)))
    outcome = install.run()
    assert not outcome.committed and outcome.slot == "a"
    assert "health check exited 1" in outcome.reason
    assert steps[-1][0] == "rolled_back"
    state = _state(device)
    assert (state.active, state.good, state.floor, state.trial) == ("a", "a", None, None)


def test_device_rebooted_into_a_failing_slot_returns_to_the_good_one(
    tmp_path: Path, world: World, repo: Repository, keys: Keys, tls: tuple[Path, Path, Path]
) -> None:
    marker = tmp_path / "healthy"
    marker.write_text("yes")
    device = provision(
        tmp_path / "reboot", repo, tls[2], health_command=("test", "-e", str(marker))
    )
    first = release(repo, keys, tmp_path, version="1.0.0", data=FIRMWARE)
    assert device.install(first, world).run().slot == "b"
    second = release(repo, keys, tmp_path, version="1.1.0", data=NEWER)
    install = device.install(second, world)
    install.verify()
    install.fetch()
    assert install.install() == "a"  # now running slot a on trial: the device "reboots" here
    marker.unlink()
    rebooted = device.config.slots(device.data_dir)
    assert rebooted.state().trial == "a"
    assert rebooted.boot() == "rolled_back"
    state = rebooted.state()
    assert (state.active, state.good, state.floor, state.trial) == ("b", "b", "1.0.0", None)


def test_root_rotation_is_followed_and_a_rotation_under_threshold_is_refused(
    device: Device, world: World, repo: Repository, keys: Keys, tmp_path: Path
) -> None:
    binding = release(repo, keys, tmp_path, version="1.0.0", data=FIRMWARE)
    assert device.install(binding, world).run().committed
    fresh = [keyfiles.generate() for _ in range(3)]
    # Two of the three old holders sign, and two of the three new ones.
    version = repo.rotate_root(
        root_keys=[s.public_key for s in fresh],
        threshold=2,
        signers=[keys.root[0], keys.root[2], fresh[0], fresh[1]],
        now=datetime.now(UTC),
    )
    assert version == 2
    second = release(repo, keys, tmp_path, version="1.1.0", data=NEWER)
    assert device.install(second, world).run().committed
    cached = device.data_dir / "releases" / "metadata" / "root_history" / "2.root.json"
    assert cached.exists()
    # Root 3, signed by one key of root 2 only (plus the attacker's own): the device stays on 2.
    attacker = [keyfiles.generate() for _ in range(2)]
    forged = Metadata.from_bytes((world.directory / "metadata" / "2.root.json").read_bytes())
    forged.signed.version = 3
    for keyid in list(forged.signed.roles["root"].keyids):
        forged.signed.revoke_key(keyid, "root")
    for signer in attacker:
        forged.signed.add_key(signer.public_key, "root")
    forged.signatures.clear()
    for signer in (fresh[0], *attacker):
        forged.sign(signer, append=True)
    (world.directory / "metadata" / "3.root.json").write_bytes(forged.to_bytes())
    third = release(repo, keys, tmp_path, version="1.2.0", data=b"\x01" * 4000)
    with pytest.raises(InstallFailed, match="root was signed by 1/2 keys") as caught:
        device.install(third, world).run()
    assert caught.value.reason == "verification_failed"


def test_download_cut_at_half_resumes_fetching_at_most_105_percent(
    device: Device, world: World, repo: Repository, keys: Keys, tmp_path: Path
) -> None:
    data = bytes(range(256)) * 8192  # 2 MiB
    binding = release(repo, keys, tmp_path, version="1.0.0", data=data)
    world.misbehaviour.cut_target_at = len(data) // 2
    with pytest.raises(InstallFailed) as caught:
        device.install(binding, world).run()
    assert caught.value.reason == "incomplete"
    outcome = device.install(binding, world).run()
    assert outcome.committed
    assert world.served.target_bytes <= 1.05 * len(data)
    ranges = [wanted for path, wanted in world.served.requests if "/targets/" in path]
    assert ranges == [None, f"bytes={len(data) // 2}-"]


def test_resumed_download_with_a_swapped_tail_is_refused(
    device: Device, world: World, repo: Repository, keys: Keys, tmp_path: Path
) -> None:
    data = bytes(range(256)) * 4096
    binding = release(repo, keys, tmp_path, version="1.0.0", data=data)
    world.misbehaviour.cut_target_at = len(data) // 2
    with pytest.raises(InstallFailed):
        device.install(binding, world).run()
    # The mirror now serves other bytes for the second half and honours Range regardless.
    name = f"{binding.sha256}.{binding.target_path}"
    world.misbehaviour.replace[name] = data[: len(data) // 2] + b"\x00" * (
        len(data) - len(data) // 2
    )
    world.misbehaviour.ignore_range = False
    partial = device.data_dir / "releases" / "downloads" / f"{binding.sha256}.part"
    etag = partial.with_name(partial.name + ".etag")
    with pytest.raises(InstallFailed) as caught:
        device.install(binding, world).run()
    # Either the changed ETag forced a full (and then mismatching) download, or the hash did.
    assert caught.value.reason == "hash_mismatch"
    assert not partial.exists() and not etag.exists()
    assert _state(device) == slots.SlotState()


# -- offline ---------------------------------------------------------------------------------


def test_offline_bundle_installs_through_the_same_checks_at_a_stated_time(
    tmp_path: Path, repo: Repository, keys: Keys, tls: tuple[Path, Path, Path]
) -> None:
    binding = release(repo, keys, tmp_path, version="1.0.0", data=FIRMWARE)
    bundle = tmp_path / "usb"
    repo.bundle(bundle)
    device = provision(tmp_path / "offline", repo, tls[2])
    # A week later the timestamp has expired: refused at the device's clock...
    week_later = datetime.now(UTC) + timedelta(days=8)
    with pytest.raises(InstallFailed, match="xpired"):
        device.install_bundle(binding, bundle, week_later).run()
    # ...accepted at the time the operator states (the day the bundle was made).
    outcome = device.install_bundle(binding, bundle, datetime.now(UTC) + timedelta(hours=1)).run()
    assert outcome.committed and outcome.version == "1.0.0"


def test_offline_bundle_with_a_tampered_artifact_is_refused(
    tmp_path: Path, repo: Repository, keys: Keys, tls: tuple[Path, Path, Path]
) -> None:
    binding = release(repo, keys, tmp_path, version="1.0.0", data=FIRMWARE)
    bundle = tmp_path / "usb"
    repo.bundle(bundle)
    artifact = bundle / "targets" / f"{binding.sha256}.{binding.target_path}"
    artifact.write_bytes(FIRMWARE[:-1] + b"\x00")
    device = provision(tmp_path / "offline", repo, tls[2])
    with pytest.raises(InstallFailed) as caught:
        device.install_bundle(binding, bundle, datetime.now(UTC)).run()
    assert caught.value.reason == "hash_mismatch"


def test_a_device_without_an_installed_root_refuses(
    tmp_path: Path, world: World, repo: Repository, keys: Keys, tls: tuple[Path, Path, Path]
) -> None:
    device = provision(tmp_path / "d", repo, tls[2])
    (device.data_dir / "releases" / "trusted-root.json").unlink()
    binding = release(repo, keys, tmp_path, version="1.0.0", data=FIRMWARE)
    with pytest.raises(InstallRefused) as caught:
        device.install(binding, world).run()
    assert caught.value.reason == "no_trusted_root"


def test_installed_root_is_not_replaced_by_another(tmp_path: Path, repo) -> None:
    other = make_repository(tmp_path / "other", new_keys())
    data_dir = tmp_path / "d"
    install_root(data_dir, repo.root_bytes())
    with pytest.raises(InstallRefused) as caught:
        install_root(data_dir, other.root_bytes())
    assert caught.value.reason == "root_installed"
    forged = json.loads(repo.root_bytes())
    forged["signed"]["version"] = 7
    with pytest.raises(InstallRefused) as caught:
        install_root(tmp_path / "e", json.dumps(forged).encode())
    assert caught.value.reason == "bad_root"


def test_fast_forwarded_timestamp_is_recovered_from_by_rotating_the_online_key(
    device: Device, world: World, repo: Repository, keys: Keys, tmp_path: Path
) -> None:
    # A compromised server signs timestamp version 1000 with the online key; the device takes it
    # (it is validly signed), and then refuses every honest timestamp as a rollback: frozen.
    first = release(repo, keys, tmp_path, version="1.0.0", data=FIRMWARE)
    inflated = repo.timestamp()
    inflated.signed.version = 1000
    inflated.sign(keys.online)
    world.misbehaviour.replace["timestamp.json"] = inflated.to_bytes()
    assert device.install(first, world).run().committed
    world.misbehaviour.replace.clear()
    second = release(repo, keys, tmp_path, version="1.1.0", data=NEWER)
    with pytest.raises(InstallFailed, match="BadVersionNumberError"):
        device.install(second, world).run()
    # The root holders rotate the online key; the new timestamp key does not verify the inflated
    # timestamp, so the device drops it and follows the honest one again.
    replacement = keyfiles.generate()
    repo.rotate_root(
        root_keys=[s.public_key for s in keys.root],
        threshold=2,
        signers=keys.root[:2],
        now=datetime.now(UTC),
        online_key=replacement.public_key,
    )
    assert repo.refresh_online(replacement, now=datetime.now(UTC)) == ("snapshot", "timestamp")
    assert device.install(second, world).run().committed
