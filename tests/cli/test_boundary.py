"""Operational errors end in one line on stderr and a non-zero status, as real processes show."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from labgate.cli.group import Group

FAST = {
    "LABGATE_ARGON2_MEMORY_KIB": "64",
    "LABGATE_ARGON2_TIME_COST": "1",
    "LABGATE_ARGON2_PARALLELISM": "1",
}


def labgate(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "labgate", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **FAST, **(env or {})},
        timeout=120,
        check=False,
    )


def assert_one_line(done: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert done.returncode != 0
    assert "Traceback" not in done.stderr, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    for needle in needles:
        assert needle in lines[0]


@pytest.fixture
def taken_port() -> Iterator[int]:
    holder = socket.create_server(("127.0.0.1", 0))
    try:
        yield holder.getsockname()[1]
    finally:
        holder.close()


def test_server_run_on_a_port_in_use_says_so_in_one_line(tmp_path: Path, taken_port: int) -> None:
    data = tmp_path / "srv"
    assert labgate("server", "init", "--data", str(data)).returncode == 0
    done = labgate("server", "run", "--data", str(data), "--listen", f"127.0.0.1:{taken_port}")
    assert_one_line(done, f"127.0.0.1:{taken_port}", "in use")


def test_gateway_with_a_missing_certificate_file_says_so_in_one_line(tmp_path: Path) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text(
        '[gateway]\ncert = "missing.crt"\nkey = "missing.key"\nclient_ca = "root.crt"\n'
        'audit_log = "audit.jsonl"\n\n[[instrument]]\nname = "qs5"\nlisten = "127.0.0.1:0"\n'
        'upstream = "plain://127.0.0.1:7000"\n'
    )
    assert_one_line(labgate("gateway", "--config", str(config)), "missing.crt")


def test_ca_with_a_wrong_passphrase_says_so_in_one_line(tmp_path: Path) -> None:
    right = {"LABGATE_CA_PASSPHRASE": "the right passphrase, long"}
    assert labgate("ca", "init", "--dir", str(tmp_path / "ca"), env=right).returncode == 0
    done = labgate(
        "ca", "crl", "--dir", str(tmp_path / "ca"), "--out", str(tmp_path / "ca.crl"),
        env={"LABGATE_CA_PASSPHRASE": "a wrong passphrase, long enough"},
    )  # fmt: skip
    assert_one_line(done, "passphrase does not decrypt")
    assert "a wrong passphrase" not in done.stderr


def test_server_init_where_no_directory_can_be_made_says_so_in_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    assert_one_line(labgate("server", "init", "--data", str(blocker / "srv")), "a-file")


# The boundary itself, through Typer's runner: what it catches and what it must not.

probe = typer.Typer(cls=Group)


@probe.command("refused")
def refused() -> None:
    raise PermissionError(13, "Permission denied", "/srv/labgate/ca/issuing.key")


@probe.command("bug")
def bug() -> None:
    raise KeyError("a bug keeps its traceback")


@probe.command("other")
def other() -> None:  # a second command, so that the probe is a group
    pass


def test_the_boundary_turns_an_os_error_into_one_line() -> None:
    result = CliRunner().invoke(probe, ["refused"])
    assert result.exit_code == 1
    assert result.stderr.strip() == "error: Permission denied: /srv/labgate/ca/issuing.key"


def test_the_boundary_lets_a_bug_through_with_its_traceback() -> None:
    result = CliRunner().invoke(probe, ["bug"])
    assert isinstance(result.exception, KeyError)
