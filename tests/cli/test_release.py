"""`labgate release`: init, add, rotate-root, renew, timestamp, bundle, through the real CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from labgate.cli.app import app
from labgate.releases.repository import Repository

ENV = {
    "LABGATE_RELEASE_PASSPHRASE": "offline passphrase, long enough",
    "LABGATE_RELEASE_ONLINE_PASSPHRASE": "online passphrase, long enough",
}


def _run(*args: str, env: dict[str, str] | None = None, input: str | None = None):
    return CliRunner().invoke(app, list(args), env=ENV if env is None else env, input=input)


def _initialised(tmp_path: Path) -> tuple[Path, Path]:
    repo, keys = tmp_path / "repo", tmp_path / "keys"
    assert _run("release", "init", "--repo", str(repo), "--keys", str(keys)).exit_code == 0
    return repo, keys


def test_init_add_and_show(tmp_path: Path) -> None:
    repo, keys = tmp_path / "repo", tmp_path / "keys"
    made = _run("release", "init", "--repo", str(repo), "--keys", str(keys))
    assert made.exit_code == 0, made.output
    assert sorted(p.name for p in keys.iterdir()) == [
        "online.key",
        "root-1.key",
        "root-2.key",
        "root-3.key",
        "targets.key",
    ]
    assert all(p.stat().st_mode & 0o777 == 0o600 for p in keys.iterdir())
    artifact = tmp_path / "fw-2.0.bin"
    artifact.write_bytes(b"\x01" * 1000)
    added = _run(
        "release",
        "add",
        "--repo",
        str(repo),
        "--keys",
        str(keys),
        "--version",
        "2.0",
        "--compatible",
        "qs5",
        "--compatible",
        "qs7",
        str(artifact),
    )
    assert added.exit_code == 0, added.output
    assert "published: re-signed snapshot, timestamp" in added.output
    target = Repository.open(repo).published_targets().signed.targets["fw-2.0.bin"]
    assert target.custom == {"version": "2.0", "compatible": ["qs5", "qs7"]}
    shown = _run("release", "show", "--repo", str(repo))
    assert "fw-2.0.bin  2.0  qs5,qs7  1000 B" in shown.output
    assert "root 1: 2 of 3" in shown.output


def test_prompted_passphrases_and_a_weak_one_writes_nothing(tmp_path: Path) -> None:
    repo, keys = tmp_path / "repo", tmp_path / "keys"
    one_of_one = ["release", "init", "--repo", str(repo), "--keys", str(keys)]
    one_of_one += ["--root-keys", "1", "--threshold", "1"]
    weak = _run(
        *one_of_one,
        env={},
        input="short\nshort\n" * 3,
    )
    assert weak.exit_code == 1
    assert "at least 16" in weak.output
    assert not any(keys.glob("*.key")) and not repo.exists()
    good = "x9 long enough passphrase\n" * 2
    made = _run(
        *one_of_one,
        env={},
        input=good * 3,
    )
    assert made.exit_code == 0, made.output
    assert "x9 long" not in made.output


def test_add_without_online_key_leaves_publishing_to_the_server(tmp_path: Path) -> None:
    repo, keys = _initialised(tmp_path)
    online = tmp_path / "server-online.key"
    (keys / "online.key").rename(online)
    artifact = tmp_path / "fw.bin"
    artifact.write_bytes(b"fw")
    added = _run(
        "release",
        "add",
        "--repo",
        str(repo),
        "--keys",
        str(keys),
        "--version",
        "1",
        "--compatible",
        "qs5",
        str(artifact),
    )
    assert "the control server publishes it" in added.output
    assert "fw.bin" not in Repository.open(repo).published_targets().signed.targets


def test_rotate_root_retires_a_key_and_bundle_writes_a_stick(tmp_path: Path) -> None:
    repo, keys = _initialised(tmp_path)
    rotated = _run(
        "release", "rotate-root", "--repo", str(repo), "--keys", str(keys), "--retire", "root-1.key"
    )
    assert rotated.exit_code == 0, rotated.output
    root = Repository.open(repo).root().signed
    assert root.version == 2 and len(root.roles["root"].keyids) == 3
    assert (keys / "root-4.key").exists()
    # With root-2 and root-3 gone, one old key is left: under threshold, refused, nothing new.
    (keys / "root-2.key").unlink()
    (keys / "root-3.key").unlink()
    refused = _run("release", "rotate-root", "--repo", str(repo), "--keys", str(keys))
    assert refused.exit_code == 1 and "needs 2" in refused.output
    assert not (keys / "root-5.key").exists()
    out = tmp_path / "usb"
    assert _run("release", "bundle", "--repo", str(repo), "--out", str(out)).exit_code == 0
    assert (out / "metadata" / "2.root.json").exists()


def test_passphrase_is_never_an_argument(tmp_path: Path) -> None:
    result = _run("release", "init", "--repo", str(tmp_path / "r"), "--passphrase", "x" * 20)
    assert result.exit_code == 2


def test_release_commands_as_a_real_process(tmp_path: Path) -> None:
    env = {**os.environ, **ENV, "PYTHONPATH": os.pathsep.join(sys.path)}
    repo = tmp_path / "repo"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "labgate",
            "release",
            "init",
            "--repo",
            str(repo),
            "--keys",
            str(tmp_path / "keys"),
        ],
        check=True,
        env=env,
        capture_output=True,
        timeout=60,
    )
    stamp = json.loads((repo / "metadata" / "timestamp.json").read_text())
    assert stamp["signed"]["version"] == 1
    timestamp = subprocess.run(
        [
            sys.executable,
            "-m",
            "labgate",
            "release",
            "timestamp",
            "--repo",
            str(repo),
            "--keys",
            str(tmp_path / "keys"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert timestamp.returncode == 0 and "not due" in timestamp.stdout


@pytest.mark.parametrize("version", ["v1", "1..2"])
def test_bad_version_is_one_line(tmp_path: Path, version: str) -> None:
    repo, keys = _initialised(tmp_path)
    artifact = tmp_path / "fw.bin"
    artifact.write_bytes(b"fw")
    result = _run(
        "release",
        "add",
        "--repo",
        str(repo),
        "--keys",
        str(keys),
        "--version",
        version,
        "--compatible",
        "qs5",
        str(artifact),
    )
    assert result.exit_code == 1
    assert f"release version {version!r} is not" in result.output


def test_rotate_root_with_a_new_online_key_republishes_with_it(tmp_path: Path) -> None:
    repo, keys = _initialised(tmp_path)
    before = Repository.open(repo).root().signed.roles["timestamp"].keyids
    rotated = _run(
        "release", "rotate-root", "--repo", str(repo), "--keys", str(keys), "--new-keys", "0",
        "--new-online-key",
    )  # fmt: skip
    assert rotated.exit_code == 0, rotated.output
    repository = Repository.open(repo)
    after = repository.root().signed.roles["timestamp"].keyids
    assert after != before and repository.root().signed.roles["snapshot"].keyids == after
    assert set(repository.timestamp().signatures) == set(after)
    assert set(repository.snapshot().signatures) == set(after)
    assert (keys / "online.key.retired").exists() and not (keys / "online.key.new").exists()
