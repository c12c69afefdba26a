"""An instrument that goes away mid-session (killed with SIGKILL here): every client command still
waiting for it is answered `ERRor n [IOError]` with the reason before the connection closes, so
qslib raises a CommandError that says why instead of `DisconnectedBeforeResponse`."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest
from qslib import CommandError


def _kill(simulator: Any) -> None:
    os.kill(simulator.pid, signal.SIGKILL)


def test_a_command_waiting_for_a_killed_instrument_gets_an_ioerror(
    tmp_path: Path, pki: Any, start_simulator: Any, gateway_factory: Any, raw_client: Any
) -> None:
    # A slow clock: the drawer takes seconds to open, so OPEN is still waiting when it dies.
    with start_simulator(tmp_path / "sim", time_scale=0.1) as simulator:
        gateway = gateway_factory(simulator)
        client = raw_client(gateway, pki, "alice")
        assert client.line().startswith(b"READy")
        assert client.ask("1 ACC Controller") == b"OK 1"
        assert client.ask("2 OPEN") == b"NEXT 2"
        _kill(simulator)
        error = client.line()
        assert error.startswith(b"ERRor 2 [IOError]"), error
        assert b"instrument 'qs5-plain' went away" in error
        assert client.line() == b""  # and then the connection closes


def test_an_idle_session_is_told_when_the_instrument_dies(
    tmp_path: Path, pki: Any, start_simulator: Any, gateway_factory: Any, raw_client: Any
) -> None:
    with start_simulator(tmp_path / "sim") as simulator:
        gateway = gateway_factory(simulator)
        client = raw_client(gateway, pki, "olive")
        assert client.line().startswith(b"READy")
        assert client.ask("1 ACC?").startswith(b"OK 1")
        _kill(simulator)
        error = client.line()
        assert error.startswith(b"ERRor 0 [IOError]"), error
        assert b"went away" in error
        assert client.line() == b""


def test_a_quit_the_instrument_answered_is_no_error(
    tmp_path: Path, pki: Any, start_simulator: Any, gateway_factory: Any, raw_client: Any
) -> None:
    with start_simulator(tmp_path / "sim") as simulator:
        # No warm connections: the gateway forwards QUIT, and the instrument hangs up after OK.
        gateway = gateway_factory(simulator, extra_instrument="upstream_idle = 0")
        client = raw_client(gateway, pki, "olive")
        assert client.line().startswith(b"READy")
        assert client.ask("5 QUIT") == b"OK 5"
        assert client.line() == b""


@pytest.mark.slow
def test_qslib_sees_why_when_the_instrument_is_killed(
    tmp_path: Path, pki: Any, start_simulator: Any, gateway_process_factory: Any, machine: Any
) -> None:
    with start_simulator(tmp_path / "sim", time_scale=0.1) as simulator:
        running = gateway_process_factory(simulator)
        m = machine(running, pki, "alice")
        m.set_access_level("Controller")  # not `at_access`: its exit would reconnect to ask
        # qslib holds the GIL while it waits: the killer is a process of its own.
        killer = subprocess.Popen(["sh", "-c", f"sleep 1; kill -9 {simulator.pid}"])
        with pytest.raises(CommandError) as caught:
            m.drawer_open()  # NEXT at once, OK 5 s later: it dies in between
        killer.wait(10)
        assert "IOError" in str(caught.value) and "went away" in str(caught.value)
