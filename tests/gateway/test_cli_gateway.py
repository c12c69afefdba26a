"""`labgate gateway`: refusals through Typer's runner, and the real command as a child process:
the ready line, SIGHUP, and a clean stop on SIGTERM that leaves a verifiable audit log."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from labgate.cli.app import app


def test_non_loopback_listen_is_refused_naming_the_option(
    tmp_path: Path, pki: Any, simulator: Any, config_writer: Any
) -> None:
    path = config_writer(tmp_path, pki, simulator, shared_listen='listen = "0.0.0.0:0"')
    result = CliRunner().invoke(app, ["gateway", "--config", str(path)])
    assert result.exit_code == 2
    assert "instrument[0].listen" in result.output and "unsafe_listen" in result.output


def test_missing_configuration_is_a_clear_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["gateway", "--config", str(tmp_path / "nope.toml")])
    assert result.exit_code == 2
    assert "cannot read configuration" in result.output and "nope.toml" in result.output


def test_readable_password_file_stops_the_start(
    tmp_path: Path, pki: Any, simulator: Any, config_writer: Any
) -> None:
    path = config_writer(tmp_path, pki, simulator)
    (tmp_path / "instrument.secret").chmod(0o644)
    result = CliRunner().invoke(app, ["gateway", "--config", str(path)])
    assert result.exit_code == 2
    assert "0644" in result.output and "gateway-only" not in result.output


def _audit_events(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_command_prints_ready_line_reloads_on_sighup_and_stops_cleanly(
    gateway_process_factory: Any, pki: Any, raw_client: Any
) -> None:
    running = gateway_process_factory()
    assert set(running.ready["instruments"]) == {"qs5-plain", "qs5-tls", "qs5-legacy"}
    assert running.ready["metrics"].startswith("127.0.0.1:")
    client = raw_client(running, pki, "alice")
    assert client.line().startswith(b"READy")
    running.child.send_signal(signal.SIGHUP)
    audit = running.directory / "audit.jsonl"
    deadline = time.monotonic() + 10
    while not any(e.get("event") == "reload" for e in _audit_events(audit)):
        assert time.monotonic() < deadline, "SIGHUP did not reload"
        time.sleep(0.1)
    assert client.ask("0 ACC?").startswith(b"OK 0")  # the session outlived the reload
    client.close()
    assert running.stop() == 0
    events = _audit_events(audit)
    assert any(e.get("event") == "gateway_stop" for e in events)
    verify = subprocess.run(
        [sys.executable, "-m", "labgate", "audit", "verify", str(audit)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_unknown_log_level_is_refused(
    tmp_path: Path, pki: Any, simulator: Any, config_writer: Any
) -> None:
    path = config_writer(tmp_path, pki, simulator)
    result = CliRunner().invoke(app, ["gateway", "--config", str(path), "--log-level", "loud"])
    assert result.exit_code == 2 and "--log-level 'loud'" in result.output


def test_audit_log_held_by_another_gateway_stops_the_start(gateway_process_factory: Any) -> None:
    first = gateway_process_factory()
    # Same directory, so the same audit.jsonl: the second writer must not interleave its lines.
    config = str(first.directory / "gateway.toml")
    second = subprocess.run(
        [sys.executable, "-m", "labgate", "gateway", "--config", config],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert second.returncode == 1
    assert "audit" in second.stderr.lower()
    assert second.stdout == ""  # never announced itself ready
