"""The real qslib 0.15.3 client against the simulator, on the plain and the TLS listener."""

from __future__ import annotations

import os
import time
from collections.abc import Callable

import pytest
from qslib import Machine, Protocol, Stage, Step
from qslib._qslib import CommandError
from qslib.scpi_commands import AuthError, specialize_command_error

from labgate.instrument.process import SimulatorProcess

MachineFactory = Callable[..., Machine]


@pytest.fixture(params=["plain", "tls"])
def connect(
    request: pytest.FixtureRequest, simulator: SimulatorProcess, controller_password: str
) -> MachineFactory:
    """Build a qslib Machine for one listener; TLS checks the chain and the host name."""

    def factory(password: str | None = controller_password, **options: object) -> Machine:
        if request.param == "plain":
            assert simulator.plain is not None
            host, port = simulator.plain
            return Machine(host, port=port, ssl=False, password=password, **options)
        assert simulator.tls is not None
        host, port = simulator.tls
        return Machine(
            host,
            port=port,
            ssl=True,
            password=password,
            server_ca_file=str(simulator.tls_cert),
            tls_server_name="localhost",
            **options,
        )

    return factory


def _wait_for(check: Callable[[], bool], seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)


def test_machine_status_reads_drawer_cover_and_temperatures(connect: MachineFactory) -> None:
    status = connect().machine_status()
    assert status.drawer in ("Open", "Closed")
    assert status.cover in ("Up", "Down")
    assert status.lamp_status.startswith(("On ", "Off "))
    assert len(status.sample_temperatures) == 6
    assert all(10.0 < value < 110.0 for value in status.sample_temperatures)


def test_temperatures_drift_between_readings(connect: MachineFactory) -> None:
    machine = connect()
    first = machine.machine_status().sample_temperatures
    # Readings carry one decimal, so two close ones may match by chance; a few will not.
    _wait_for(lambda: machine.machine_status().sample_temperatures != first)


def test_run_status_is_idle_without_a_run(
    connect: MachineFactory, simulator: SimulatorProcess
) -> None:
    status = connect().run_status()
    assert status.state == "Idle"
    assert status.name == "-"
    assert status.stage == -1


def test_drawer_opens_and_closes_with_cover(connect: MachineFactory) -> None:
    machine = connect()
    machine.drawer_open()
    assert machine.drawer_position == "Open"
    assert machine.cover_position == "Up"
    machine.drawer_close()  # lowers the cover too, and checks both
    assert machine.drawer_position == "Closed"
    assert machine.cover_position == "Down"


def test_file_round_trip_of_one_mebibyte(connect: MachineFactory) -> None:
    machine = connect()
    data = os.urandom(1024 * 1024)
    machine.write_file("public_run_complete:roundtrip.bin", data)
    assert machine.read_file("public_run_complete:roundtrip.bin") == data
    listed = machine.list_files("public_run_complete:round*")
    assert listed == ["public_run_complete:roundtrip.bin"]
    verbose = machine.list_files("public_run_complete:round*", verbose=True)
    assert verbose[0]["size"] == len(data)
    assert verbose[0]["type"] == "file"


def test_list_files_globs_and_finds_nothing_for_other_patterns(connect: MachineFactory) -> None:
    machine = connect()
    machine.write_file("experiments:glob-a.eds", b"a")
    machine.write_file("experiments:glob-b.txt", b"b")
    assert machine.list_files("experiments:glob-*.eds") == ["experiments:glob-a.eds"]
    assert machine.list_files("experiments:nothing-*") == []


def _protocol(name: str) -> Protocol:
    return Protocol(
        [
            Stage([Step(30, 95)]),
            Stage([Step(20, 95), Step(40, 60)], repeat=40),
        ],
        name=name,
    )


def test_protocol_defined_then_read_back_from_the_run(connect: MachineFactory) -> None:
    machine = connect()
    protocol = _protocol("readback")
    machine.define_protocol(protocol)
    with machine:  # a manual connection stays at qslib's initial level, Observer
        listing = machine.run_command("PROT? readback")
    assert "STEP" in listing
    with machine.ensured_connection("Controller"):
        machine.run_command_to_ack("RP -samplevolume=50 -runmode=standard readback readback_run")
    try:
        assert machine.get_running_protocol() == protocol
        status = machine.run_status()
        assert status.name == "readback_run"
        assert status.num_stages == 2
    finally:
        machine.abort_current_run()


def test_run_pauses_resumes_and_aborts(connect: MachineFactory) -> None:
    machine = connect()
    machine.define_protocol(_protocol("pausing"))
    with machine.ensured_connection("Controller"):
        machine.run_command_to_ack("RP -samplevolume=50 -runmode=standard pausing pause_run")
    _wait_for(lambda: machine.run_status().stage == 2)
    machine.pause_current_run()
    paused = machine.run_status()
    assert paused.state == "Paused"
    time.sleep(0.3)  # 30 simulated seconds: a paused run must not move
    still = machine.run_status()
    assert (still.stage, still.cycle, still.step) == (paused.stage, paused.cycle, paused.step)
    machine.resume_current_run()
    assert machine.run_status().state == "Running"
    _wait_for(lambda: machine.run_status().cycle > paused.cycle)
    machine.abort_current_run()
    assert machine.run_status().state == "Idle"
    assert machine.current_run_name is None


def test_wrong_password_fails_with_auth_error(connect: MachineFactory) -> None:
    machine = connect(password="not-the-password")
    with pytest.raises(CommandError) as caught:
        machine.machine_status()
    assert isinstance(specialize_command_error(caught.value), AuthError)


def test_observer_cannot_open_drawer(connect: MachineFactory, observer_password: str) -> None:
    machine = connect(password=observer_password)
    assert machine.drawer_position in ("Open", "Closed")  # Observer may look
    with pytest.raises(CommandError, match="AccessLevelExceeded"):
        machine.drawer_open()
    # Asking for Controller directly, past qslib's own limit, still fails at the instrument.
    with machine, pytest.raises(CommandError, match="InsufficientAccess"):
        machine.run_command("OPEN")
    assert machine.drawer_position == "Closed"


def test_power_and_status_led(connect: MachineFactory) -> None:
    machine = connect()
    machine.power = False
    assert machine.power is False
    machine.power = True
    assert machine.power is True
    machine.set_status_led("blue", "blink")
    state = machine.status_led
    assert str(state.color).upper().endswith("BLUE")
    machine.status_led_off()
    assert machine.status_led.color is None


def test_qslib_trying_tls_first_on_the_plain_port_falls_back_and_works(
    simulator: SimulatorProcess, controller_password: str
) -> None:
    assert simulator.plain is not None
    host, port = simulator.plain
    # ssl=None on a port other than 7000/7443: qslib sends a TLS ClientHello, then retries plain.
    machine = Machine(host, port=port, ssl=None, password=controller_password)
    assert machine.machine_status().drawer in ("Open", "Closed")
    assert machine.run_status().state in ("Idle", "Running", "Paused")


def test_the_child_process_reports_peak_connections_and_received_commands(
    simulator: SimulatorProcess, connect: MachineFactory
) -> None:
    connect().machine_status()
    assert simulator.peak_connections >= 1
    assert any(entry["command"] == "RET" for entry in simulator.received())
