"""Run folders: qslib's Experiment.run end to end, and uploads that try to escape or explode."""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import time
import zipfile
from collections.abc import Callable
from typing import Any

import pytest
from qslib import Experiment, Machine, Protocol, Stage, Step
from qslib._qslib import CommandError

from labgate.instrument import experiment_commands
from labgate.instrument.process import SimulatorProcess
from labgate.instrument.simulator import RunningSimulator
from labgate.scpi.messages import Error, Ok


def test_qslib_experiment_run_creates_the_folder_and_starts(
    simulator: SimulatorProcess, controller_password: str
) -> None:
    assert simulator.plain is not None
    host, port = simulator.plain
    machine = Machine(host, port=port, ssl=False, password=controller_password)
    protocol = Protocol([Stage([Step(30, 95)]), Stage([Step(20, 95)], repeat=10)], name="exp_p")
    Experiment(name="exp_run", protocol=protocol).run(machine)
    try:
        assert machine.run_status().name == "exp_run"
        with machine:
            assert machine.get_expfile_list("exp_run/*") == ["exp_run/apldbio/"]
    finally:
        machine.abort_current_run()


def _zip(members: dict[str, bytes]) -> str:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return base64.encodebytes(buffer.getvalue()).decode()


def _controller(raw: Callable[..., Any], sim: RunningSimulator, password: str) -> Any:
    client = raw(sim.plain)
    challenge = client.ask("0 CHAL?").text
    answer = hmac.new(password.encode(), challenge.encode(), hashlib.md5).hexdigest()
    client.ask(f"1 AUTH {answer}")
    assert client.ask("2 ACC Controller") == Ok(ident=2)
    return client


def test_zip_slip_is_refused_and_nothing_is_written(
    threaded: RunningSimulator, raw: Callable[..., Any], controller_password: str
) -> None:
    client = _controller(raw, threaded, controller_password)
    body = _zip({"good.txt": b"fine", "../../../escaped.txt": b"owned"})
    reply = client.ask(f"3 EXP:ZIPWRITE run1/ <message>\n{body}</message>")
    assert isinstance(reply, Error) and reply.error_class == "IOError"
    state_dir = threaded.config.state_dir
    assert not list(state_dir.rglob("escaped.txt"))
    assert not list(state_dir.rglob("good.txt"))  # all or nothing


def test_zip_bigger_than_the_bound_is_refused(
    threaded: RunningSimulator,
    raw: Callable[..., Any],
    controller_password: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(experiment_commands, "MAX_UNPACKED", 100)
    client = _controller(raw, threaded, controller_password)
    body = _zip({"big.bin": b"\0" * 1000})
    reply = client.ask(f"3 EXP:ZIPWRITE run2/ <message>\n{body}</message>")
    assert isinstance(reply, Error) and "unpacks past 100" in reply.message


def test_zip_write_then_list_and_read(
    threaded: RunningSimulator, raw: Callable[..., Any], controller_password: str
) -> None:
    client = _controller(raw, threaded, controller_password)
    assert client.ask("3 EXP:NEW run3 template") == Ok(ident=3)
    body = _zip({"apldbio/sds/a.xml": b"<x/>"})
    assert client.ask(f"4 EXP:ZIPWRITE run3/ <message>\n{body}</message>") == Ok(ident=4)
    listing = client.ask("5 EXP:LIST? run3/apldbio/sds/*")
    assert listing == Ok(ident=5, text="<quote.reply>\nrun3/apldbio/sds/a.xml\n</quote.reply>")
    read = client.ask("6 EXP:READ? -encoding=base64 'run3/apldbio/sds/a.xml'")
    assert isinstance(read, Ok)
    assert base64.b64decode(read.text.removeprefix("<quote>\n").removesuffix("</quote>")) == b"<x/>"
    # A folder named without a trailing slash or a glob lists what it holds.
    inside = client.ask("7 EXP:LIST? run3/apldbio")
    assert inside == Ok(ident=7, text="<quote.reply>\nrun3/apldbio/sds/\n</quote.reply>")
    assert client.ask("8 EXP:DELETE run3") == Ok(ident=8)
    assert client.ask("9 EXP:LIST? run3*") == Ok(ident=9, text="<quote.reply>\n</quote.reply>")


def _machine(simulator: SimulatorProcess, password: str) -> Machine:
    assert simulator.plain is not None
    host, port = simulator.plain
    return Machine(host, port=port, ssl=False, password=password)


def _wait_for_stage(machine: Machine, stage: int) -> Any:
    """The first run status that shows `stage` (one reading, so stage and counts agree)."""
    deadline = time.monotonic() + 20.0
    while (status := machine.run_status()).stage != stage:
        assert time.monotonic() < deadline, f"the run did not reach stage {stage} in time"
        time.sleep(0.05)
    return status


def _long_protocol(name: str, repeat: int = 100) -> Protocol:
    # Stage 1 passes in 0.3 s at the test time scale; each cycle of stage 2 takes 2 s.
    return Protocol([Stage([Step(30, 95)]), Stage([Step(200, 95)], repeat=repeat)], name=name)


def test_log_folder_is_the_running_experiments_folder_inside_the_store(
    simulator: SimulatorProcess, controller_password: str
) -> None:
    machine = _machine(simulator, controller_password)
    with machine:
        assert machine.run_command("RET ${LogFolder:-unset}") == "unset"
    Experiment(name="log folder", protocol=_long_protocol("lf_p")).run(machine)
    try:
        with machine:
            assert machine.run_command("RET ${LogFolder}") == "experiments:log_folder/apldbio/sds"
    finally:
        machine.abort_current_run()
    with machine:
        assert machine.run_command("RET ${LogFolder:-unset}") == "unset"


def test_qslib_change_protocol_writes_the_log_folder_and_the_run_follows(
    simulator: SimulatorProcess, controller_password: str
) -> None:
    machine = _machine(simulator, controller_password)
    experiment = Experiment(name="changed run", protocol=_long_protocol("cp_p"))
    experiment.run(machine)
    try:
        experiment.change_protocol(_long_protocol("cp_p", repeat=7), machine)
        sds = simulator.state_dir / "files" / "experiments" / "changed_run" / "apldbio" / "sds"
        for name in ("tcprotocol.xml", "qsl-tcprotocol.xml"):
            assert (sds / name).read_bytes() == experiment._sdspath(name).read_bytes()
        assert b"<NumOfRepetitions>7</NumOfRepetitions>" in (sds / "tcprotocol.xml").read_bytes()
        status = _wait_for_stage(machine, 2)
        assert status.num_cycles == 7  # the running run took the new definition
    finally:
        machine.abort_current_run()


def test_qslib_change_protocol_from_now_appends_stages(
    simulator: SimulatorProcess, controller_password: str
) -> None:
    machine = _machine(simulator, controller_password)
    experiment = Experiment(name="from now", protocol=_long_protocol("fn_p"))
    experiment.run(machine)
    try:
        experiment.change_protocol_from_now([Stage([Step(10, 60)], repeat=3)], machine)
        assert len(machine.get_running_protocol().stages) == 3
        assert machine.run_status().num_stages == 3
    finally:
        machine.abort_current_run()


def test_redefining_the_running_protocol_without_its_current_stage_is_refused(
    simulator: SimulatorProcess, controller_password: str
) -> None:
    machine = _machine(simulator, controller_password)
    Experiment(name="shrunk", protocol=_long_protocol("sh_p")).run(machine)
    try:
        _wait_for_stage(machine, 2)
        with pytest.raises(CommandError, match="the run is in stage 2; the new protocol has 1"):
            machine.define_protocol(Protocol([Stage([Step(30, 95)])], name="sh_p"))
        assert machine.run_status().num_stages == 2
    finally:
        machine.abort_current_run()


def test_qslib_sync_from_machine_copies_nested_run_files(
    simulator: SimulatorProcess, controller_password: str
) -> None:
    machine = _machine(simulator, controller_password)
    experiment = Experiment(name="synced run", protocol=_long_protocol("sy_p"))
    experiment.run(machine)
    try:
        machine.write_file("experiments:synced_run/apldbio/sds/filter/extra.xml", b"<extra/>")
        listed = machine.list_files("experiments:synced_run/", verbose=True, recursive=True)
        paths = {entry["path"] for entry in listed}
        assert "experiments:synced_run/apldbio/sds/filter/extra.xml" in paths
        assert "experiments:synced_run/apldbio/sds/experiment.xml" in paths
        assert all(entry["type"] == "file" for entry in listed)
        experiment.sync_from_machine(machine)
        assert (experiment._dir_eds / "filter" / "extra.xml").read_bytes() == b"<extra/>"
    finally:
        machine.abort_current_run()
