"""The control server's /tuf/: served with Range, If-Range and ETag, nothing outside the
repository, and the timestamp re-signed in the background with the online key only."""

from __future__ import annotations

import hashlib
import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from labgate.agent.installation import Online, ReleaseConfig, ReleaseInstall, install_root
from labgate.control.http.serving import run_in_thread
from labgate.control.provisioning import initialise
from labgate.control.settings import ControlSettings
from labgate.releases import keyfiles
from labgate.releases.repository import Repository
from labgate.releases.verification import Binding

FAST_ARGON2 = {"argon2_memory_kib": 64, "argon2_time_cost": 1, "argon2_parallelism": 1}
ONLINE_PASSPHRASE = b"the online key's passphrase"
FIRMWARE = bytes(range(256)) * 400


@dataclass
class Served:
    url: str
    ca: Path
    repo: Repository
    binding: Binding


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    root = [keyfiles.generate() for _ in range(3)]
    targets, online = keyfiles.generate(), keyfiles.generate()
    # Made two hours ago, so the first check finds the timestamp due.
    made = datetime.now(UTC) - timedelta(hours=2)
    repo = Repository.create(
        tmp_path / "repo",
        root_signers=root,
        root_threshold=2,
        targets_signer=targets,
        online_signer=online,
        now=made,
    )
    artifact = tmp_path / "fw-1.0.bin"
    artifact.write_bytes(FIRMWARE)
    (added,) = repo.add(
        version="1.0", compatible=["qs5"], artifacts=[artifact], signers=[targets], now=made
    )
    repo.refresh_online(online, now=made)
    key = tmp_path / "online.key"
    keyfiles.write_key(key, online, ONLINE_PASSPHRASE)
    secret = tmp_path / "online-passphrase"
    secret.write_bytes(ONLINE_PASSPHRASE)
    data = tmp_path / "server"
    settings = ControlSettings.load(
        data,
        releases_dir=repo.directory,
        releases_online_key=key,
        releases_online_passphrase_file=secret,
        releases_check_seconds=0.05,
        **FAST_ARGON2,
    )
    initialise(settings, config={})
    binding = Binding(target_path=added.path, length=added.length, sha256=added.sha256)
    with run_in_thread(settings) as running:
        yield Served(url=running.url, ca=running.ca_root, repo=repo, binding=binding)


def _client(served: Served) -> httpx.Client:
    return httpx.Client(
        base_url=served.url, verify=ssl.create_default_context(cafile=str(served.ca)), timeout=10
    )


def _target_url(served: Served) -> str:
    return f"/tuf/targets/{served.binding.sha256}.{served.binding.target_path}"


def test_metadata_and_targets_are_served_with_ranges(served: Served) -> None:
    with _client(served) as http:
        root = http.get("/tuf/metadata/1.root.json")
        assert root.status_code == 200
        assert root.content == (served.repo.metadata / "1.root.json").read_bytes()
        whole = http.get(_target_url(served))
        assert hashlib.sha256(whole.content).hexdigest() == served.binding.sha256
        etag = whole.headers["etag"]
        part = http.get(_target_url(served), headers={"Range": "bytes=1000-", "If-Range": etag})
        assert part.status_code == 206
        assert part.headers["content-range"] == f"bytes 1000-{len(FIRMWARE) - 1}/{len(FIRMWARE)}"
        assert part.content == FIRMWARE[1000:]
        stale = http.get(_target_url(served), headers={"Range": "bytes=1000-", "If-Range": '"x"'})
        assert stale.status_code == 200 and stale.content == FIRMWARE


@pytest.mark.parametrize(
    "path",
    [
        "/tuf/metadata/..%2F.lock",
        "/tuf/metadata/.lock",
        "/tuf/targets/fw-1.0.bin",
        "/tuf/keys/online.key",
        "/tuf/metadata/9.root.json",
    ],
)
def test_nothing_else_is_served(served: Served, path: str) -> None:
    with _client(served) as http:
        assert http.get(path).status_code == 404


def test_timestamp_is_re_signed_in_the_background(served: Served) -> None:
    deadline = time.monotonic() + 10
    while served.repo.timestamp().signed.version < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    stamp = served.repo.timestamp().signed
    assert stamp.version == 3  # made at 1 and 2 (the release); re-signed once, not every check
    assert stamp.expires > datetime.now(UTC) + timedelta(hours=23)
    time.sleep(0.3)
    assert served.repo.timestamp().signed.version == 3


def test_device_installs_through_the_control_server_and_resumes(
    served: Served, tmp_path: Path
) -> None:
    data_dir = tmp_path / "device"
    config = ReleaseConfig(model="qs5")
    config.save(data_dir)
    install_root(data_dir, (served.repo.metadata / "1.root.json").read_bytes())
    # Half of the artifact is already here from an earlier attempt, with the server's ETag.
    downloads = data_dir / "releases" / "downloads"
    downloads.mkdir(parents=True)
    with _client(served) as http:
        etag = http.get(_target_url(served)).headers["etag"]
    (downloads / f"{served.binding.sha256}.part").write_bytes(FIRMWARE[: len(FIRMWARE) // 2])
    (downloads / f"{served.binding.sha256}.part.etag").write_text(etag)
    install = ReleaseInstall(
        data_dir=data_dir,
        config=config,
        source=Online(
            server_url=served.url, context=ssl.create_default_context(cafile=str(served.ca))
        ),
        binding=served.binding,
    )
    outcome = install.run()
    assert outcome.committed and outcome.version == "1.0"
    metadata_bytes = install.tally.received - (len(FIRMWARE) - len(FIRMWARE) // 2)
    assert 0 < metadata_bytes < 20_000  # the rest of the artifact, and metadata only
