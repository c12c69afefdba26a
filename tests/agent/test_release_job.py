"""install_release as a job: the real control server hands the signed job out and serves /tuf/,
the real agent's poller runs it; success, refusals and failures end in the right job state."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from labgate.agent.installation import ReleaseConfig, install_root
from labgate.control.http.serving import run_in_thread
from labgate.control.provisioning import initialise
from labgate.control.settings import ControlSettings

from .conftest import FAST_ARGON2, Server
from .releaseworld import Keys, make_repository, new_keys, release
from .test_jobs import Device, link_in_process

FIRMWARE = bytes(range(256)) * 300


@pytest.fixture
def keys() -> Keys:
    return new_keys()


@pytest.fixture
def releases_server(tmp_path: Path, keys: Keys) -> Iterator[Server]:
    make_repository(tmp_path / "repo", keys)
    data = tmp_path / "server"
    settings = ControlSettings.load(data, releases_dir=tmp_path / "repo", **FAST_ARGON2)
    initialise(settings, config={})
    with run_in_thread(settings) as running:
        yield Server(url=running.url, root=running.ca_root, data_dir=data)


@pytest.fixture
def device(releases_server: Server, tmp_path: Path) -> Device:
    from labgate.releases.repository import Repository

    linked = link_in_process(releases_server, tmp_path / "agent")
    install_root(linked.store.directory, Repository.open(tmp_path / "repo").root_bytes())
    return linked


def _configure(device: Device, **config: object) -> None:
    ReleaseConfig(model="qs5", **config).save(device.store.directory)  # type: ignore[arg-type]


def _install_job(device: Device, tmp_path: Path, keys: Keys, **kw: object) -> dict[str, object]:
    from labgate.releases.repository import Repository

    binding = release(Repository.open(tmp_path / "repo"), keys, tmp_path, data=FIRMWARE, **kw)  # type: ignore[arg-type]
    params = {
        "target_path": binding.target_path,
        "length": binding.length,
        "sha256": binding.sha256,
    }
    return device.create("install_release", params=params)


def test_install_release_job_succeeds_into_the_other_slot(
    device: Device, tmp_path: Path, keys: Keys
) -> None:
    _configure(device)
    job = _install_job(device, tmp_path, keys, version="1.1.0")
    asyncio.run(device.poller().poll_once())
    done = device.job(str(job["id"]))
    assert done["state"] == "SUCCEEDED", done
    assert done["status_details"] == {"version": "1.1.0", "slot": "b", "committed": True}
    # QUEUED, IN_PROGRESS, then a report per step (verified, downloaded, installed, health).
    assert done["version"] == 7


def test_install_release_for_another_model_is_rejected(
    device: Device, tmp_path: Path, keys: Keys
) -> None:
    _configure(device)
    job = _install_job(device, tmp_path, keys, version="1.0.0", models=("qs7",))
    asyncio.run(device.poller().poll_once())
    done = device.job(str(job["id"]))
    assert done["state"] == "REJECTED"
    assert done["status_details"]["reason"].startswith("wrong-model: release 1.0.0")


def test_install_release_failing_its_health_check_fails_after_rolling_back(
    device: Device, tmp_path: Path, keys: Keys
) -> None:
    _configure(device, health_command=("false",))
    job = _install_job(device, tmp_path, keys, version="1.0.0")
    asyncio.run(device.poller().poll_once())
    done = device.job(str(job["id"]))
    assert done["state"] == "FAILED"
    assert done["status_details"]["reason"].startswith("health_failed: rolled back to slot a")
    slots = ReleaseConfig.load(device.store.directory).slots(device.store.directory)
    assert slots.state().active == "a" and slots.state().trial is None


def test_install_release_canceled_after_activation_rolls_back(
    device: Device, tmp_path: Path, keys: Keys
) -> None:
    marker = tmp_path / "health-running"
    _configure(device, health_command=("sh", "-c", f"touch {marker}; sleep 1"))
    job = _install_job(device, tmp_path, keys, version="1.0.0")

    def cancel_when_checking() -> None:
        deadline = time.monotonic() + 20
        while not marker.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        device.cancel(str(job["id"]))

    canceler = threading.Thread(target=cancel_when_checking)
    canceler.start()
    asyncio.run(device.poller().poll_once())
    canceler.join()
    done = device.job(str(job["id"]))
    assert done["state"] == "CANCELED", done
    slots = ReleaseConfig.load(device.store.directory).slots(device.store.directory)
    state = slots.state()
    assert (state.active, state.trial, state.floor) == ("a", None, None)
