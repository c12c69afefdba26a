"""The real qslib client, with a client certificate, through the gateway to the simulator's plain,
TLS and SSLv3 listeners; and what an Observer or a Controller cannot get past it."""

from __future__ import annotations

import base64
import contextlib
import os
from collections.abc import Iterator
from typing import Any

import pytest
from qslib import CommandError, Protocol, Stage, Step
from qslib.scpi_commands import (
    AccessLevelExceeded,
    InsufficientAccess,
    specialize_command_error,
)

from labgate.scpi.names import canonical


@contextlib.contextmanager
def _refused_as(kind: type[CommandError]) -> Iterator[None]:
    """qslib's run_command raises the plain CommandError; its class is in the error's fields."""
    with pytest.raises(CommandError) as caught:
        yield
    assert isinstance(specialize_command_error(caught.value), kind), caught.value


def _received_since(simulator: Any, mark: int) -> list[str]:
    return [entry.get("command", "") for entry in simulator.received()[mark:]]


@pytest.mark.parametrize("instrument", ["qs5-plain", "qs5-tls", "qs5-legacy"])
def test_qslib_works_through_the_gateway(
    gateway_process: Any, pki: Any, simulator: Any, machine: Any, instrument: str
) -> None:
    m = machine(gateway_process, pki, "alice", instrument)
    status = m.machine_status()
    assert status.drawer in ("Open", "Closed")
    assert m.run_status().name is not None
    assert m.drawer_position in ("Open", "Closed", "Unknown")
    # SSLv3 upstream: the simulator's legacy listener and the gateway's SSLv3 client are pure
    # Python; 1 MiB each way took 24 s on an idle machine and ran past qslib's response wait on
    # a loaded one. 128 KiB still crosses many TLS records and quote-block lines.
    payload = os.urandom(128 * 1024 if instrument == "qs5-legacy" else 1024 * 1024)
    path = f"public_run_complete/gateway-{instrument}.bin"
    with m.at_access("Controller"):
        m.write_file(path, payload)
    assert m.read_file(path) == payload


def test_protocols_and_drawer_through_the_gateway(
    gateway_process: Any, pki: Any, simulator: Any, machine: Any
) -> None:
    m = machine(gateway_process, pki, "alice")
    protocol = Protocol([Stage([Step(30, 95.0)]), Stage([Step(60, 60.0)], repeat=3)])
    with m.at_access("Controller"):
        m.define_protocol(protocol)
        m.drawer_open()
        assert m.drawer_position == "Open"
        m.drawer_close(lower_cover=False)
    assert m.drawer_position == "Closed"


def test_observer_cannot_open_drawer(
    gateway_process: Any, pki: Any, simulator: Any, machine: Any
) -> None:
    m = machine(gateway_process, pki, "olive")
    mark = len(simulator.received())
    with pytest.raises(AccessLevelExceeded):
        m.drawer_open()
    with _refused_as(InsufficientAccess):
        m.run_command("OPEN")
    assert canonical("OPEN") not in _received_since(simulator, mark)


def test_nested_open_and_arbitrary_python_do_not_reach_the_instrument(
    gateway_process: Any, pki: Any, simulator: Any, machine: Any
) -> None:
    observer = machine(gateway_process, pki, "olive")
    controller = machine(gateway_process, pki, "alice")
    mark = len(simulator.received())
    with _refused_as(InsufficientAccess):
        observer.run_command("RET $(OPEN)")
    with controller.at_access("Controller"), _refused_as(InsufficientAccess):
        controller.run_command('RET $[ __import__("os").system("id") ]')
    raws = [entry.get("raw", "") for entry in simulator.received()[mark:]]
    assert not any("OPEN" in raw.upper() or "__import__" in raw for raw in raws)


def test_system_exec_is_refused_at_controller(
    gateway_process: Any, pki: Any, simulator: Any, machine: Any
) -> None:
    m = machine(gateway_process, pki, "alice")
    mark = len(simulator.received())
    with m.at_access("Controller"), _refused_as(InsufficientAccess):
        m.run_command('SYST:EXEC "killall zygote"')
    assert canonical("SYST:EXEC") not in _received_since(simulator, mark)


def test_administrator_grant_cannot_reach_full(
    gateway_process: Any, pki: Any, simulator: Any, machine: Any
) -> None:
    m = machine(gateway_process, pki, "adam")
    m.max_access_level = "Full"
    with pytest.raises(AccessLevelExceeded):
        m.set_access_level("Full")


def test_client_never_learns_the_instruments_password(
    gateway_process: Any, pki: Any, simulator: Any, machine: Any, instrument_password: str
) -> None:
    m = machine(gateway_process, pki, "alice")
    with m.at_access("Controller"):
        answer = m.run_command("ACC?")
    assert instrument_password not in answer
    audit = (gateway_process.directory / "audit.jsonl").read_bytes()
    assert instrument_password.encode() not in audit
    assert base64.b64encode(instrument_password.encode()) not in audit


def test_denied_command_is_a_qslib_command_error(
    gateway_process: Any, pki: Any, simulator: Any, machine: Any
) -> None:
    with pytest.raises(CommandError):
        machine(gateway_process, pki, "olive").run_command("POW off")


def test_qslib_shows_why_it_was_refused(
    gateway_process_factory: Any, pki: Any, machine: Any, raw_client: Any
) -> None:
    running = gateway_process_factory(extra_instrument="max_upstream = 1\nupstream_wait = 0.2")
    with pytest.raises(CommandError, match="no grant for labgate:user:nobody"):
        machine(running, pki, "nobody").machine_status()
    holder = raw_client(running, pki, "alice")  # takes the one upstream slot
    assert holder.line().startswith(b"READy")
    with pytest.raises(CommandError, match="is busy"):
        machine(running, pki, "olive").machine_status()
