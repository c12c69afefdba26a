"""`labgate gateway`: refusals through Typer's runner, and the real command as a child process:
the ready line, SIGHUP, and a clean stop on SIGTERM that leaves a verifiable audit log."""

from __future__ import annotations

import http.server
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
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


def _taken_port() -> socket.socket:
    """A loopback port another process could hold: bound and listening, never accepting."""
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    return holder


@pytest.mark.parametrize("which", ["metrics_listen", "listen"])
def test_a_port_clash_names_the_port_and_leaves_no_audit_log(
    tmp_path: Path, pki: Any, simulator: Any, config_writer: Any, which: str
) -> None:
    with _taken_port() as holder:
        port = holder.getsockname()[1]
        taken = f'"127.0.0.1:{port}"'
        if which == "metrics_listen":
            path = config_writer(tmp_path, pki, simulator)
            path.write_text(path.read_text().replace('metrics_listen = "127.0.0.1:0"',
                                                     f"metrics_listen = {taken}"))  # fmt: skip
            key = "gateway.metrics_listen"
        else:
            path = config_writer(tmp_path, pki, simulator, shared_listen=f"listen = {taken}")
            key = "instrument[0].listen"
        result = subprocess.run(
            [sys.executable, "-m", "labgate", "gateway", "--config", str(path)],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    assert result.returncode == 1, result.stderr
    assert f"{key} = '127.0.0.1:{port}': cannot listen there: Address already in use" in (
        result.stderr
    )
    assert "Traceback" not in result.stderr and result.stdout == ""
    assert not (tmp_path / "audit.jsonl").exists()  # nothing was opened, so nothing half-open


def test_a_failed_start_leaves_an_existing_audit_log_as_it_was(
    gateway_process_factory: Any, tmp_path: Path
) -> None:
    first = gateway_process_factory()
    assert first.stop() == 0
    audit = first.directory / "audit.jsonl"
    before = audit.read_bytes()
    config = first.directory / "gateway.toml"
    with _taken_port() as holder:
        text = config.read_text().replace(
            'metrics_listen = "127.0.0.1:0"',
            f'metrics_listen = "127.0.0.1:{holder.getsockname()[1]}"',
        )
        config.write_text(text)
        result = subprocess.run(
            [sys.executable, "-m", "labgate", "gateway", "--config", str(config)],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    assert result.returncode == 1
    assert audit.read_bytes() == before  # no start without a stop appended


class _Stderr:
    """`labgate gateway` with stderr in a file, for what an operator reads there."""

    def __init__(self, config: Path, **env: str) -> None:
        self.path = config.parent / "stderr.log"
        self._file = self.path.open("w")
        self.child = subprocess.Popen(
            [sys.executable, "-m", "labgate", "gateway", "--config", str(config)],
            stdout=subprocess.PIPE, stderr=self._file, text=True, env={**os.environ, **env},
        )  # fmt: skip
        assert self.child.stdout is not None
        line = self.child.stdout.readline()
        assert line, self.text()
        self.ready = json.loads(line)

    def address(self, instrument: str) -> tuple[str, int]:
        host, _, port = self.ready["instruments"][instrument].rpartition(":")
        return host, int(port)

    def text(self) -> str:
        return self.path.read_text()

    def wait_for(self, needle: str) -> str:
        deadline = time.monotonic() + 20
        while needle not in self.text():
            assert time.monotonic() < deadline, f"{needle!r} not in stderr:\n{self.text()}"
            time.sleep(0.1)
        return next(line for line in self.text().splitlines() if needle in line)

    def stop(self) -> None:
        if self.child.poll() is None:
            self.child.send_signal(signal.SIGTERM)
            self.child.wait(30)
        if self.child.stdout is not None:
            self.child.stdout.close()
        self._file.close()


def test_a_wrong_instrument_password_is_one_warning_naming_instrument_and_identity(
    tmp_path: Path, pki: Any, simulator: Any, config_writer: Any, raw_client: Any
) -> None:
    running = _Stderr(config_writer(tmp_path, pki, simulator, password="not-the-password"))
    try:
        client = raw_client(running, pki, "alice")
        assert b"IOError" in client.refused()
        line = running.wait_for("(labgate:user:alice on qs5-plain) refused")
    finally:
        running.stop()
    assert " WARNING labgate.gateway: " in line
    assert "instrument 'qs5-plain' refused the gateway's password" in line
    # Found at start already, when the gateway asked what the password reaches.
    start = next(x for x in running.text().splitlines() if "cannot learn" in x)
    assert " WARNING " in start and "refused the gateway's password" in start
    assert "not-the-password" not in running.text()


def test_a_withdrawn_grant_and_the_reload_are_info_lines(
    tmp_path: Path, pki: Any, simulator: Any, config_writer: Any, raw_client: Any
) -> None:
    config = config_writer(tmp_path, pki, simulator)
    running = _Stderr(config)
    try:
        client = raw_client(running, pki, "olive")
        assert client.line().startswith(b"READy")
        config_writer(tmp_path, pki, simulator, grants={"alice": "Controller"})  # olive's gone
        closed = running.wait_for("closed: grant withdrawn")
        reloaded = running.wait_for("reloaded")
    finally:
        running.stop()
    assert " INFO labgate.gateway: " in closed and "labgate:user:olive on qs5-plain" in closed
    assert " INFO labgate.gateway: " in reloaded


def test_bundle_polls_are_not_logged_by_the_http_client(
    tmp_path: Path, pki: Any, simulator: Any, config_writer: Any
) -> None:
    from labgate.pki.profiles import Profile

    issued = pki.ca.issue(Profile.SERVER, "control-test", dns=["localhost"], ips=["127.0.0.1"])
    issued.write(tmp_path / "control", combined=True)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(tmp_path / "control.pem"))

    class NotHere(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_error(404)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), NotHere)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    control = (f'[control]\nurl = "https://127.0.0.1:{port}"\ngateway_name = "site-1"\n'
               f'server_ca = "{pki.root}"\npoll_interval = 0.2\n')  # fmt: skip
    running = _Stderr(config_writer(tmp_path, pki, simulator, extra_sections=control))
    try:
        warning = running.wait_for("cannot fetch the bundle")
        time.sleep(1)  # several polls more
    finally:
        running.stop()
        server.shutdown()
    assert " WARNING labgate.gateway: " in warning and "404" in warning
    assert "HTTP Request" not in running.text()


def test_an_environment_override_is_checked_and_named(
    tmp_path: Path, pki: Any, simulator: Any, config_writer: Any
) -> None:
    path = config_writer(tmp_path, pki, simulator)
    result = CliRunner().invoke(
        app, ["gateway", "--config", str(path)], env={"LABGATE_GATEWAY_MAX_CONNECTIONS": "0"}
    )
    assert result.exit_code == 2
    assert "gateway.max_connections" in result.output
    assert "(from LABGATE_GATEWAY_MAX_CONNECTIONS)" in result.output
    result = CliRunner().invoke(
        app, ["gateway", "--config", str(path)], env={"LABGATE_GATEWAY_ALLOW_FULL": "true"}
    )
    assert result.exit_code == 2 and "renamed to unsafe_allow_full" in result.output


def test_a_start_interrupted_while_asking_an_instrument_leaves_a_closed_log(
    tmp_path: Path, pki: Any, config_writer: Any
) -> None:
    import asyncio
    import contextlib

    from labgate.gateway.config import load_config
    from labgate.gateway.server import Gateway

    # An instrument that takes the connection and never greets: the gateway waits to ask it.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        address = silent.getsockname()

        class Silent:
            plain = tls = legacy = address

        path = config_writer(tmp_path, pki, Silent, upstream_pin="sha256/" + "A" * 43 + "=")

        async def interrupted() -> None:
            gateway = Gateway(load_config(path))
            start = asyncio.create_task(gateway.start())
            await asyncio.sleep(0.5)
            assert not start.done()  # still asking the instrument, not yet serving
            start.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await start

        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(interrupted())
        finally:
            loop.close()  # without waiting for the SSLv3 handshake's thread
    events = _audit_events(tmp_path / "audit.jsonl")
    assert [e["event"] for e in events[-2:]] == ["gateway_stop", "log-stop"]
    assert "start failed" in events[-2]["reason"]
    verify = subprocess.run(
        [sys.executable, "-m", "labgate", "audit", "verify", str(tmp_path / "audit.jsonl")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert verify.returncode == 0, verify.stdout + verify.stderr
