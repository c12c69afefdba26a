"""The run state machine and the protocol outline that drives it."""

from __future__ import annotations

import pytest

from labgate.instrument.protocols import ProtocolError, outline
from labgate.instrument.run import ProtocolDefinition, Run

# The body qslib 0.15.3 sent for a two-stage protocol (captured).
CAPTURED = (
    "\n\tSTAGE 1 STAGE_1 <multiline.stage>\n\t\tSTEP 1 <multiline.step>\n"
    "\t\t\tRAMP 95 95 95 95 95 95\n\t\t\tHOLD 30\n\t\t</multiline.step>\n"
    "\t</multiline.stage>\n\tSTAGE -repeat=3 2 STAGE_2 <multiline.stage>\n"
    "\t\tSTEP 1 <multiline.step>\n\t\t\tRAMP -increment=-10 60 60 60 60 60 60\n"
    "\t\t\tHACFILT\n\t\t\tHOLDANDCOLLECT -tiff=False -quant=True -pcr=False 100\n"
    "\t\t</multiline.step>\n\t</multiline.stage>\n"
)


def _run() -> Run:
    protocol = ProtocolDefinition(
        name="demo",
        volume="50",
        runmode="standard",
        body_tag="multiline.protocol",
        body=CAPTURED,
        stages=outline(CAPTURED),
    )
    return Run(title="r", protocol=protocol)


def test_outline_reads_stages_repeats_and_holds() -> None:
    stages = outline(CAPTURED)
    assert [stage.repeat for stage in stages] == [1, 3]
    assert stages[0].steps[0].hold == 30 and stages[0].steps[0].temperatures[0] == 95
    assert stages[1].steps[0].hold == 100 and stages[1].steps[0].temperatures[0] == 60


@pytest.mark.parametrize(
    ("body", "expected"),
    [("\n\tHOLD 3\n", "no STAGE"), ("STAGE 1 S <multiline.stage>\n</multiline.stage>", "no STEP")],
)
def test_outline_refuses_what_cannot_run(body: str, expected: str) -> None:
    with pytest.raises(ProtocolError, match=expected):
        outline(body)


def test_run_walks_stages_and_cycles_then_ends() -> None:
    run = _run()
    assert run.advance(29) == []
    assert run.advance(2) == ["Stage 2", "Cycle 1", "Step 1"]
    assert run.advance(100) == ["Cycle 2", "Step 1"]
    assert run.advance(1000) == ["Cycle 3", "Step 1", "Ended"]
    assert run.state == "Idle"


def test_paused_run_does_not_move() -> None:
    run = _run()
    assert run.pause() == ["Paused"]
    assert run.advance(1000) == []
    assert (run.stage, run.cycle, run.state) == (1, 1, "Paused")
    assert run.resume() == ["Resumed"]
    assert run.advance(31) == ["Stage 2", "Cycle 1", "Step 1"]


def test_stop_ends_at_the_end_of_the_cycle_and_abort_at_once() -> None:
    run = _run()
    run.advance(31)
    run.stop()
    assert run.advance(50) == []
    assert run.advance(60) == ["Stopped"]
    other = _run()
    assert other.abort() == ["Aborted"]
    assert other.outcome == "Aborted"
