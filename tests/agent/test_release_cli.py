"""`labgate agent releases`, `install` and `boot` through the real command line."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from labgate.cli.app import app
from labgate.releases.repository import Repository
from labgate.releases.verification import Binding

from .releaseworld import Keys, World, make_repository, new_keys, release, serve
from .test_release_install import tls  # noqa: F401 (the module-scoped TLS fixture)

FIRMWARE = b"\x42" * 50_000


@pytest.fixture
def keys() -> Keys:
    return new_keys()


@pytest.fixture
def world(tmp_path: Path, keys: Keys, tls: tuple[Path, Path, Path]) -> Iterator[World]:  # noqa: F811
    make_repository(tmp_path / "repo", keys)
    with serve(tmp_path / "repo", (tls[0], tls[1])) as running:
        yield running


def _run(*args: str) -> object:
    return CliRunner().invoke(app, list(args))


def _setup(data: Path, repo: Repository, *extra: str) -> None:
    root = data.parent / "root.json"
    root.write_bytes(repo.root_bytes())
    result = CliRunner().invoke(
        app,
        ["agent", "releases", "--data", str(data), "--root", str(root), "--model", "qs5", *extra],
    )
    assert result.exit_code == 0, result.output


def _install_online(data: Path, world: World, ca: Path, binding: Binding) -> Result:
    where = ["--data", str(data), "--server", world.url, "--server-ca", str(ca)]
    what = ["--target", binding.target_path, "--length", str(binding.length)]
    return CliRunner().invoke(app, ["agent", "install", *where, *what, "--sha256", binding.sha256])


def test_install_from_the_server_prints_each_step(
    tmp_path: Path,
    world: World,
    keys: Keys,
    tls: tuple[Path, Path, Path],  # noqa: F811
) -> None:
    repo = Repository.open(world.directory)
    binding = release(repo, keys, tmp_path, version="2.1", data=FIRMWARE)
    data = tmp_path / "agent"
    _setup(data, repo)
    result = _install_online(data, world, tls[2], binding)
    assert result.exit_code == 0, result.output
    lines = [line.split(":")[0] for line in result.output.splitlines()]
    assert lines[:5] == ["verified", "downloaded", "installed", "health", "committed"]
    assert "release 2.1 committed in slot b" in result.output
    state = json.loads((data / "releases" / "slots.json").read_text())
    assert (state["active"], state["floor"]) == ("b", "2.1")


def test_offline_install_needs_a_stated_time_and_uses_it(
    tmp_path: Path, world: World, keys: Keys
) -> None:
    repo = Repository.open(world.directory)
    binding = release(repo, keys, tmp_path, version="1.0", data=FIRMWARE)
    stick = tmp_path / "usb"
    assert (
        _run("release", "bundle", "--repo", str(repo.directory), "--out", str(stick)).exit_code == 0
    )  # type: ignore[attr-defined]
    data = tmp_path / "agent"
    _setup(data, repo)
    base = [
        "agent",
        "install",
        "--data",
        str(data),
        "--bundle",
        str(stick),
        "--target",
        binding.target_path,
        "--length",
        str(binding.length),
        "--sha256",
        binding.sha256,
    ]
    missing = CliRunner().invoke(app, base)
    assert missing.exit_code == 1 and "--bundle needs --valid-at" in missing.output
    late = (datetime.now(UTC) + timedelta(days=9)).isoformat()
    expired = CliRunner().invoke(app, [*base, "--valid-at", late])
    assert expired.exit_code == 1 and "expired" in expired.output
    ok = CliRunner().invoke(app, [*base, "--valid-at", datetime.now(UTC).isoformat()])
    assert ok.exit_code == 0, ok.output
    assert "judged as of" in ok.output


def test_failing_health_command_rolls_back_with_exit_status_1(
    tmp_path: Path,
    world: World,
    keys: Keys,
    tls: tuple[Path, Path, Path],  # noqa: F811
) -> None:
    repo = Repository.open(world.directory)
    binding = release(repo, keys, tmp_path, version="1.0", data=FIRMWARE)
    data = tmp_path / "agent"
    _setup(data, repo, "--health-command", "sh -c 'echo not healthy >&2; exit 3'")
    result = _install_online(data, world, tls[2], binding)
    assert result.exit_code == 1
    assert "rolled back to slot a: health check exited 3: not healthy" in result.output


def test_boot_returns_a_failing_trial_slot_to_the_good_one(tmp_path: Path, world: World) -> None:
    repo = Repository.open(world.directory)
    data = tmp_path / "agent"
    _setup(data, repo)
    # A trial interrupted by a reboot: slot b on trial, but it holds nothing healthy.
    (data / "releases" / "slots" / "b").mkdir(parents=True)
    (data / "releases" / "slots" / "b" / "release.json").write_text(
        json.dumps({"target": "fw.bin", "version": "3.0", "sha256": "0" * 64, "length": 10})
    )
    (data / "releases" / "slots.json").write_text(
        json.dumps(
            {
                "active": "b",
                "good": "a",
                "floor": None,
                "version": None,
                "trial": "b",
                "trial_version": "3.0",
                "trial_boots": 0,
            }
        )
    )
    result = CliRunner().invoke(app, ["agent", "boot", "--data", str(data)])
    assert result.exit_code == 0 and result.output.strip() == "rolled_back"
    state = json.loads((data / "releases" / "slots.json").read_text())
    assert (state["active"], state["trial"]) == ("a", None)


# Slow (a control server and a real `labgate agent run` process), and the one test that the
# device settles a trial by itself at start, not only when a person runs `agent boot`.
@pytest.mark.slow
def test_agent_run_returns_a_failing_trial_slot_to_the_good_one_by_itself(
    tmp_path: Path, start_agent: Any
) -> None:
    # The device rebooted while release 3.0 was on trial in slot b, and its health check fails.
    data = tmp_path / "agent"
    repo = make_repository(tmp_path / "own-repo", new_keys())
    _setup(data, repo, "--health-command", "false")
    (data / "releases" / "slots" / "b").mkdir(parents=True)
    (data / "releases" / "slots" / "b" / "release.json").write_text(
        json.dumps({"target": "fw.bin", "version": "3.0", "sha256": "0" * 64, "length": 10})
    )
    (data / "releases" / "slots.json").write_text(json.dumps(
        {"active": "b", "good": "a", "floor": "2.0", "version": "2.0", "trial": "b",
         "trial_version": "3.0", "trial_boots": 0}
    ))  # fmt: skip
    agent = start_agent()
    assert agent.ready
    state = json.loads((data / "releases" / "slots.json").read_text())
    assert (state["active"], state["good"], state["trial"], state["floor"]) == (
        "a",
        "a",
        None,
        "2.0",
    )
    assert "slot on trial rolled back at start" in agent.stderr()
