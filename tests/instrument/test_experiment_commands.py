"""Run folders: qslib's Experiment.run end to end, and uploads that try to escape or explode."""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import zipfile
from collections.abc import Callable
from typing import Any

import pytest
from qslib import Experiment, Machine, Protocol, Stage, Step

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
    assert client.ask("7 EXP:DELETE run3") == Ok(ident=7)
    assert client.ask("8 EXP:LIST? run3*") == Ok(ident=8, text="<quote.reply>\n</quote.reply>")
