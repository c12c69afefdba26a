"""`labgate sim`: options checked by name through Typer's runner, and once as a real process."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from labgate.cli.app import app


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        (["--plain-port", "seven"], "--plain-port"),
        (["--tls-port", "99999"], "--tls-port"),
        (["--access-limit", "Boss"], "unknown access level 'Boss'"),
        (["--plain-port", "off", "--tls-port", "off"], "every listener is off"),
        (["--cert", "nowhere.pem", "--plain-port", "0", "--tls-port", "0"], "--cert and --key"),
        (["--idle-timeout", "0"], "--idle-timeout"),
        (["--idle-timeout", "soon"], "'soon': expected a positive number"),
    ],
)
def test_bad_options_are_refused_by_name(
    tmp_path: Path, arguments: list[str], expected: str
) -> None:
    result = CliRunner().invoke(app, ["sim", "--state-dir", str(tmp_path), *arguments])
    assert result.exit_code == 2
    assert expected in result.output


def test_missing_secrets_file_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "absent.toml"
    result = CliRunner().invoke(
        app,
        ["sim", "--state-dir", str(tmp_path), "--plain-port", "0", "--tls-port", "off",
         "--secrets", str(missing)],
    )  # fmt: skip
    assert result.exit_code == 2
    assert str(missing) in result.output


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT])
def test_sim_runs_as_a_process_prints_one_ready_line_and_stops_cleanly(
    tmp_path: Path, stop: signal.Signals
) -> None:
    child = subprocess.Popen(
        [sys.executable, "-m", "labgate", "sim", "--plain-port", "0", "--tls-port", "0",
         "--state-dir", str(tmp_path), "--time-scale", "100"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        assert child.stdout is not None
        ready = json.loads(child.stdout.readline())
        assert set(ready) == {"plain", "tls", "legacy", "tls_cert"}
        assert ready["legacy"] is None
        assert Path(ready["tls_cert"]).is_file()
        host, _, port = ready["plain"].rpartition(":")
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            assert sock.recv(200).startswith(b"READy -session=")
        child.send_signal(stop)
        out, err = child.communicate(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == 0
    assert out == ""  # exactly one line on stdout, already read
    passwords = tmp_path / "passwords.toml"
    assert str(passwords) in err
    assert stat.S_IMODE(os.stat(passwords).st_mode) == 0o600
    for line in passwords.read_text().splitlines():
        if line.startswith("secret"):
            assert line.split('"')[1] not in err


def test_idle_timeout_is_in_the_help() -> None:
    result = CliRunner().invoke(app, ["sim", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert "--idle-timeout" in result.output
    assert "hung up on" in result.output


def test_sim_hangs_up_on_a_silent_client_after_the_idle_timeout(tmp_path: Path) -> None:
    child = subprocess.Popen(
        [sys.executable, "-m", "labgate", "sim", "--plain-port", "0", "--tls-port", "off",
         "--state-dir", str(tmp_path), "--idle-timeout", "0.3"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )  # fmt: skip
    try:
        assert child.stdout is not None
        host, _, port = json.loads(child.stdout.readline())["plain"].rpartition(":")
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            received = b""
            while data := sock.recv(200):  # the greeting, then the end of the stream
                received += data
        assert received.startswith(b"READy -session=")
    finally:
        child.send_signal(signal.SIGTERM)
        child.communicate(timeout=30)
