"""A grant above what the instrument's password reaches: found at start and on reload by logging in
and asking, warned about, and refused to the session with the instrument's limit named, instead of
a session that dies without a word. The instrument is the real `labgate sim`, run with a password
file whose gateway password reaches Controller only."""

from __future__ import annotations

import contextlib
import json
import logging
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from qslib.scpi_commands import AccessLevelExceeded
from tests.gateway.conftest import GatewayProcess, GatewayThread

from labgate.gateway.config import load_config

CONTROLLER_PASSWORD = "controller-only-4e1b"
ADMINISTRATOR_PASSWORD = "administrator-9c2d"
LIMIT = (
    b'[AccessLevelExceeded] -accessLimit="Controller" '
    b"--> the instrument's password for qs5-plain reaches Controller only"
)


@contextlib.contextmanager
def _labgate_sim(directory: Path) -> Iterator[str]:
    """`labgate sim` with two passwords, one reaching Controller, one Administrator; yields
    its plain address."""
    directory.mkdir()
    secrets = directory / "secrets.toml"
    secrets.write_text(
        f'[[password]]\nlevel = "Controller"\nsecret = "{CONTROLLER_PASSWORD}"\n'
        f'[[password]]\nlevel = "Administrator"\nsecret = "{ADMINISTRATOR_PASSWORD}"\n'
    )
    secrets.chmod(0o600)
    child = subprocess.Popen(
        [sys.executable, "-m", "labgate", "sim", "--plain-port", "0", "--tls-port", "off",
         "--secrets", str(secrets), "--access-limit", "Guest", "--state-dir", str(directory),
         "--time-scale", "100"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    try:
        assert child.stdout is not None
        yield json.loads(child.stdout.readline())["plain"]
    finally:
        child.send_signal(signal.SIGTERM)
        child.wait(30)
        assert child.stdout is not None
        child.stdout.close()


def _config(directory: Path, pki: Any, plain: str, grants: dict[str, str], password: str) -> Path:
    secret = directory / "instrument.secret"
    secret.write_text(password + "\n")
    secret.chmod(0o600)
    grant_text = "".join(
        f'[[grant]]\nidentity = "labgate:user:{who}"\ninstrument = "qs5-plain"\nlevel = "{level}"\n'
        for who, level in grants.items()
    )
    path = directory / "gateway.toml"
    path.write_text(
        f'[gateway]\ncert = "{pki.gateway_crt}"\nkey = "{pki.gateway_key}"\n'
        f'client_ca = "{pki.root}"\naudit_log = "audit.jsonl"\nmetrics_listen = ""\n'
        f"reload_interval = 0.2\n\n"
        f'[[instrument]]\nname = "qs5-plain"\nlisten = "127.0.0.1:0"\nupstream = "plain://{plain}"\n'
        f'password_file = "instrument.secret"\n\n{grant_text}'
    )
    return path


def _asked_for_administrator(state_dir: Path) -> int:
    """How often the instrument's own command log shows an ACC for Administrator."""
    from labgate.instrument.commandlog import read_log

    entries = read_log(state_dir / "commands.jsonl")
    return sum(
        "ACC" in e.get("command", "") and "Administrator" in e.get("raw", "") for e in entries
    )


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[str]:
    with _labgate_sim(tmp_path / "sim") as plain:
        yield plain


@pytest.fixture
def started(pki: Any) -> Iterator[list[GatewayThread]]:
    running: list[GatewayThread] = []
    yield running
    for gateway in running:
        gateway.stop()


def _events(gateway: GatewayThread, kind: str) -> list[dict[str, Any]]:
    gateway.call(gateway.gateway.audit.flush())
    lines = gateway.gateway.audit.path.read_text().splitlines()
    return [e for e in map(json.loads, lines) if e.get("event") == kind]


def test_a_grant_above_the_password_is_warned_at_start_and_refused_by_name(
    tmp_path: Path, pki: Any, sim: str, started: list[GatewayThread], raw_client: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    caplog.set_level(logging.INFO, logger="labgate.gateway")
    path = _config(tmp_path, pki, sim, {"adam": "Administrator", "alice": "Controller"},
                   CONTROLLER_PASSWORD)  # fmt: skip
    gateway = GatewayThread(load_config(path))
    started.append(gateway)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(
        "grant of Administrator to labgate:user:adam on qs5-plain is above Controller" in w
        for w in warnings
    ), warnings
    assert not any("labgate:user:alice" in w for w in warnings)  # a grant within it is fine
    assert _events(gateway, "instrument_reach")[-1]["level"] == "Controller"

    adam = raw_client(gateway, pki, "adam", "qs5-plain")
    assert adam.line().startswith(b"READy")
    probed = _asked_for_administrator(tmp_path / "sim")  # the gateway's own question at start
    assert probed >= 1  # the log is read right: the probe itself is in it
    refused = adam.ask("3 ACC Administrator")
    assert refused == b"ERRor 3 " + LIMIT, refused
    # Asked for stealthily (forwarded when within the session's limit): refused the same way.
    sneaky = adam.ask("7 ACC -stealth=true -exclusive=false Administrator")
    assert sneaky == b"ERRor 7 " + LIMIT, sneaky
    assert adam.ask("4 ACC?") == b"OK 4 -stealth=False -exclusive=False Guest"
    # Up to the instrument's limit all is as granted, and the session goes on.
    assert adam.ask("5 ACC Controller") == b"OK 5"
    assert adam.ask("6 OPEN").startswith(b"NEXT 6")
    assert adam.line() == b"OK 6"
    assert _asked_for_administrator(tmp_path / "sim") == probed  # none of adam's reached it
    connect = _events(gateway, "connect")[-1]
    assert connect["grant"] == "Administrator" and connect["level_limit"] == "Controller"


def test_a_reload_asks_again(
    tmp_path: Path, pki: Any, sim: str, started: list[GatewayThread], raw_client: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    caplog.set_level(logging.INFO, logger="labgate.gateway")
    path = _config(tmp_path, pki, sim, {"adam": "Administrator"}, ADMINISTRATOR_PASSWORD)
    gateway = GatewayThread(load_config(path))
    started.append(gateway)
    first = raw_client(gateway, pki, "adam", "qs5-plain")
    assert first.line().startswith(b"READy")
    assert first.ask("1 ACC Administrator") == b"OK 1"
    assert not any(r.levelno >= logging.WARNING for r in caplog.records)
    # The instrument's password is changed to the weaker one: the reload finds it out.
    _config(tmp_path, pki, sim, {"adam": "Administrator"}, CONTROLLER_PASSWORD)
    deadline = time.monotonic() + 20
    while gateway.run(lambda: gateway.gateway.reach.levels.get("qs5-plain")) != _controller():
        assert time.monotonic() < deadline, "the reload did not ask the instrument again"
        time.sleep(0.1)
    assert any("grant of Administrator to labgate:user:adam on qs5-plain" in r.getMessage()
               for r in caplog.records if r.levelno == logging.WARNING)  # fmt: skip
    later = raw_client(gateway, pki, "adam", "qs5-plain")
    assert later.line().startswith(b"READy")
    assert later.ask("2 ACC Administrator") == b"ERRor 2 " + LIMIT


def _controller() -> Any:
    from labgate.scpi.access import AccessLevel

    return AccessLevel.CONTROLLER


def test_an_unreachable_instrument_at_start_is_a_warning_not_a_failed_start(
    tmp_path: Path, pki: Any, started: list[GatewayThread], caplog: pytest.LogCaptureFixture
) -> None:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # nothing listens here once the probe is closed
    path = _config(tmp_path, pki, f"127.0.0.1:{port}", {"adam": "Administrator"},
                   CONTROLLER_PASSWORD)  # fmt: skip
    gateway = GatewayThread(load_config(path))
    started.append(gateway)
    assert gateway.gateway.addresses["qs5-plain"]
    assert any("cannot learn the highest level its password reaches" in r.getMessage()
               and r.levelno == logging.WARNING for r in caplog.records)  # fmt: skip


@pytest.mark.slow
def test_qslib_is_told_the_instruments_limit(tmp_path: Path, pki: Any, sim: str) -> None:
    from qslib import Machine

    running = GatewayProcess(
        _config(tmp_path, pki, sim, {"adam": "Administrator"}, CONTROLLER_PASSWORD)
    )
    try:
        host, port = running.address("qs5-plain")
        m = Machine(host, port=port, ssl=True, client_certificate_path=str(pki.clients["adam"].pem),
                    server_ca_file=str(pki.root), tls_server_name="qs5-plain",
                    max_access_level="Administrator")  # fmt: skip
        with pytest.raises(AccessLevelExceeded, match="reaches Controller only"):
            m.set_access_level("Administrator")
        m.set_access_level("Controller")  # the same connection serves on at Controller
        assert m.drawer_position in ("Open", "Closed", "Unknown")
    finally:
        assert running.stop() == 0
