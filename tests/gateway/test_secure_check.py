"""`labgate secure --check` against a real gateway: green when every switch holds, and exit 1
naming the drift for each kind of it (a socket on a configured port outside the configured
address, a configured listener not listening, a switch on in the file but off in the running
gateway, no record of the running gateway at all)."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.gateway.conftest import GatewayThread, write_config
from typer.testing import CliRunner

from labgate.cli.app import app
from labgate.gateway.config import load_config
from labgate.gateway.drift import check_gateway
from labgate.posture.listening import Listening, parse_table

ALL_ON = "[secure]\npwd = true\nfw = true\nfull = true\n"


@contextlib.contextmanager
def _listening(host: str, port: int) -> Iterator[None]:
    with socket.socket() as other:
        other.bind((host, port))
        other.listen()
        yield


def _config(tmp_path: Path, pki: Any, simulator: Any, port: int, secure: str = ALL_ON) -> Path:
    return write_config(
        tmp_path,
        pki,
        simulator,
        grants={"adam": "Administrator", "alice": "Controller"},
        shared_listen=f'listen = "127.0.0.1:{port}"',
        extra_sections=secure,
    )


def _check(path: Path) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["secure", "--check", "--config", str(path)])
    return result.exit_code, result.output


def test_check_is_green_while_every_switch_holds(
    tmp_path: Path, pki: Any, simulator: Any, free_port: Any
) -> None:
    path = _config(tmp_path, pki, simulator, free_port())
    running = GatewayThread(load_config(path))
    try:
        code, output = _check(path)
    finally:
        running.stop()
    assert code == 0, output
    assert "DRIFT" not in output
    assert "ok    fw: instrument[0].listen" in output
    assert "ok    full: no grant above Controller is effective" in output
    assert "ok    full: the running gateway has it on" in output


def test_check_finds_a_socket_on_a_configured_port_outside_the_configured_address(
    tmp_path: Path, pki: Any, simulator: Any, free_port: Any
) -> None:
    port = free_port()
    path = _config(tmp_path, pki, simulator, port)
    running = GatewayThread(load_config(path))
    try:
        with _listening("127.0.0.2", port):  # something else answers on the gateway's port
            code, output = _check(path)
    finally:
        running.stop()
    assert code == 1, output
    assert f"DRIFT fw: 127.0.0.2:{port} listens on a configured port but outside" in output


def test_check_finds_a_configured_listener_not_listening(
    tmp_path: Path, pki: Any, simulator: Any, free_port: Any
) -> None:
    port = free_port()
    path = _config(tmp_path, pki, simulator, port)
    GatewayThread(load_config(path)).stop()  # it ran, and stopped
    code, output = _check(path)
    assert code == 1, output
    assert f"DRIFT fw: instrument[0].listen = 127.0.0.1:{port}: nothing listens there" in output


def test_check_finds_a_switch_on_in_the_file_but_off_in_the_running_gateway(
    tmp_path: Path, pki: Any, simulator: Any, free_port: Any
) -> None:
    port = free_port()
    path = _config(
        tmp_path, pki, simulator, port, "[secure]\npwd = false\nfw = false\nfull = false\n"
    )
    running = GatewayThread(load_config(path))
    running.stop()
    # The file is edited while the gateway is down: the next start would have it, this one not.
    path.write_text(path.read_text().replace("full = false", "full = true"))
    code, output = _check(path)
    assert code == 1, output
    assert "DRIFT full: on in the file but off in the running gateway" in output
    assert "says 'none'" in output


def test_check_finds_no_record_of_a_running_gateway(
    tmp_path: Path, pki: Any, simulator: Any
) -> None:
    path = _config(tmp_path, pki, simulator, 0, "[secure]\nfw = false\n")
    code, output = _check(path)
    assert code == 1, output
    assert "DRIFT secure: cannot read the audit log" in output


def test_check_of_a_configuration_without_secure_says_it_is_off(
    tmp_path: Path, pki: Any, simulator: Any
) -> None:
    path = _config(tmp_path, pki, simulator, 0, "")
    code, output = _check(path)
    assert code == 0, output
    assert "on: none" in output and "no [secure] table" in output


def test_a_wildcard_listener_on_a_configured_port_is_drift(
    tmp_path: Path, pki: Any, simulator: Any
) -> None:
    # 0.0.0.0 and :: cannot be bound next to the gateway's own socket here, so the kernel's
    # table is given as the kernel prints it: one row for 0.0.0.0:7443, one for [::]:7443.
    port = 7443
    path = _config(tmp_path, pki, simulator, port, "[secure]\nfull = false\npwd = false\n")
    tcp = (
        "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid\n"
        "   0: 0100007F:1D13 00000000:0000 0A 00000000:00000000 00:00000000 00000000 0\n"
        "   1: 00000000:1D13 00000000:0000 0A 00000000:00000000 00:00000000 00000000 0\n"
    )
    tcp6 = (
        "  sl  local_address                         remote_address                        st\n"
        "   0: 00000000000000000000000000000000:1D13 00000000000000000000000000000000:0000 0A\n"
        "   1: 00000000000000000000000001000000:0016 00000000000000000000000000000000:0000 0A\n"
    )
    sockets = parse_table(tcp) | parse_table(tcp6)
    assert Listening(host="::1", port=22) in sockets
    report = check_gateway(load_config(path), sockets=sockets)
    drift = [f.text for f in report.drift if f.switch == "fw"]
    assert f"0.0.0.0:{port} listens on a configured port but outside" in drift[0]
    assert f"[::]:{port} listens on a configured port but outside" in drift[1]
    assert len(drift) == 2  # 127.0.0.1:7443 is the configured one, ::1:22 is not a gateway port


def test_listening_reads_this_machines_own_sockets() -> None:
    from labgate.posture.listening import listening

    with socket.socket() as mine:
        mine.bind(("127.0.0.1", 0))
        mine.listen()
        port = mine.getsockname()[1]
        assert Listening(host="127.0.0.1", port=port) in listening()
    assert Listening(host="127.0.0.1", port=port) not in listening()


@pytest.mark.slow
def test_check_as_a_real_command_exits_one_on_drift(
    tmp_path: Path, pki: Any, simulator: Any, free_port: Any
) -> None:
    path = _config(tmp_path, pki, simulator, free_port())
    done = subprocess.run(
        [sys.executable, "-m", "labgate", "secure", "--check", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1, done.stderr
    assert "DRIFT fw:" in done.stdout and "Traceback" not in done.stderr
