"""Protocol bodies run later on the instrument's authority: what a Controller may define."""

import pytest
from qslib import Protocol, Stage, Step
from qslib.data import FilterSet
from qslib.protocol import CustomStep, Exposure, Hold
from qslib.scpi_commands import SCPICommand

from labgate.scpi import protocols
from labgate.scpi.access import INSTRUMENT, LABGATE, AccessLevel, Allowed, Denied, check
from labgate.scpi.messages import Body, Command, parse_command

CONTROLLER = AccessLevel.CONTROLLER
ADMINISTRATOR = AccessLevel.ADMINISTRATOR
FULL = AccessLevel.FULL


def defined(body: str) -> Command:
    """A PROTOCOL command as qslib frames it, with `body` inside <multiline.protocol>."""
    content = f"\n{body}\n"
    return Command(
        ident=5,
        name="PROTOCOL",
        options=(("volume", "50"), ("runmode", "standard")),
        args=("demo",),
        body=Body(tag="multiline.protocol", content=content),
    )


def step(*lines: str) -> str:
    inner = "\n".join(f"\t\t\t{line}" for line in lines)
    return (
        "\tSTAGE 1 STAGE_1 <multiline.stage>\n\t\tSTEP 1 <multiline.step>\n"
        f"{inner}\n\t\t</multiline.step>\n\t</multiline.stage>"
    )


def prerun(*lines: str) -> str:
    inner = "\n".join(f"\t\t{line}" for line in lines)
    return f"\tPRERUN <multiline.prerun>\n{inner}\n\t</multiline.prerun>"


BREAKOUT = "x'+__import__('os').system('id')+'"


def test_qslibs_richest_protocol_passes_at_controller() -> None:
    protocol = Protocol(
        [
            Stage.hold_at(95, 120),
            Stage([Step(30, 95.0)], label="Denature"),
            Stage.stepped_ramp(60, 80, 600, n_steps=5, collect=True),
            Stage(
                [Step(30, 95.0, temp_increment=-0.5, collect=True, filters=["x1-m1", "x2-m2"])],
                repeat=40,
            ),
            Stage(
                [CustomStep([Exposure([(FilterSet.fromstring("x1-m1"), [400, 800])]), Hold(30)])]
            ),
        ],
        covertemperature=104,
        filters=["x1-m1"],
        prerun=[SCPICommand("SET", CoverTemperature=105)],
        postrun=[SCPICommand("SET", CoverTemperature=30)],
    )
    text = protocol.to_scpi_string().rstrip("\n")
    # what the body holds, so this test fails loudly if qslib stops writing it
    for word in ("PRERUN", "SET -covertemperature=105", "# qslib:default_filters", "EXP -state="):
        assert word in text
    command = parse_command(b"5 " + text.encode())
    assert command.body is not None
    assert check(command, CONTROLLER, LABGATE) == Allowed(required=CONTROLLER)


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (prerun('SYST:EXEC "killall zygote"'), "runs 'SYST:EXEC'"),
        (step("HOLD 30", "SYST:EXEC id"), "runs 'SYST:EXEC'"),
        (step("eval? 1"), "runs 'eval?'"),
        (step("RP demo run2"), "runs 'RP'"),
        (step("FILE:REMOVE public_run_complete:x.eds"), "runs 'FILE:REMOVE'"),
        (prerun(f'SET -RunMacro="{BREAKOUT}"'), "SET -RunMacro="),
        (prerun("SET -LogFolder=/etc"), "SET -LogFolder='/etc'"),
        (prerun("SET -LogFolder=.."), "SET -LogFolder='..'"),
        (prerun("SET x\\y"), "argument 'x\\\\y'"),
        (step("HOLD 30 # it's"), "comment word"),
        (step("RAMP 95 <multiline.step>HOLD 1</multiline.step>"), "gives RAMP a block"),
        (step('HOLD "30 45"'), "argument"),
        (
            '\tSTAGE 1 "Melt curve" <multiline.stage>\n\t</multiline.stage>',
            "argument '\"Melt curve\"'",
        ),
        (
            "\tSTAGE 1 S <multiline.stage>\n\t\tSTEP 1 <multiline.step>\n\t\t\tSTEP 2 "
            "<multiline.step>\n\t\t\t\tSYST:EXEC id\n\t\t\t</multiline.step>\n\t\t"
            "</multiline.step>\n\t</multiline.stage>",
            "runs 'SYST:EXEC'",
        ),
        (
            "\tSTAGE 1 S <multiline.stage>\n\t</multiline.stage>x",
            "has text after the block",
        ),
        ("\t<multiline.stage>\n\t</multiline.stage>", "not one of qslib's protocol steps"),
    ],
)
def test_a_protocol_body_cannot_carry_commands_or_values_qslib_never_writes(
    body: str, problem: str
) -> None:
    decision = check(defined(body), ADMINISTRATOR, LABGATE)
    assert isinstance(decision, Denied), body
    assert decision.required is FULL
    assert decision.command == "PROTOCOL"
    assert "PROTOCOL's body" in decision.reason and problem in decision.reason, decision.reason


def test_a_substitution_in_a_body_needs_full_as_before() -> None:
    decision = check(defined(step("HOLD 30 # $(SYST:EXEC id)")), ADMINISTRATOR, LABGATE)
    assert isinstance(decision, Denied)
    assert decision.required is FULL


def test_the_instrument_itself_runs_any_body_a_controller_defines() -> None:
    # the hole: the machine stores the shell command and runs it with the protocol
    command = defined(prerun('SYST:EXEC "killall zygote"'))
    assert check(command, CONTROLLER, INSTRUMENT) == Allowed(required=CONTROLLER)


def test_full_may_define_any_body() -> None:
    assert check(defined(prerun("SYST:EXEC id")), FULL, LABGATE) == Allowed(required=FULL)


@pytest.mark.parametrize(
    "line",
    ["RAMP -increment=-10 60 60", "HOLD 1e3", "HACFILT m1,x1,quant m2,x2,quant", "SET -x=.5"],
)
def test_plain_values_pass(line: str) -> None:
    assert protocols.body_problem(step(line)) is None


def test_an_unreadable_body_is_refused() -> None:
    found = protocols.body_problem(step('HOLD "30'))
    assert found is not None and "cannot be read" in found


def test_a_body_too_long_to_judge_quickly_needs_full() -> None:
    # a hostile Controller's 8 MiB body of one line: refused before it is walked
    body = "\tHOLD " + "1 " * (4 * 1024 * 1024)
    decision = check(defined(body), ADMINISTRATOR, LABGATE)
    assert isinstance(decision, Denied)
    assert decision.required is FULL
    assert f"more than {protocols.MAX_BODY}" in decision.reason


def test_an_exp_run_block_too_long_needs_full() -> None:
    block = "zip " + "a " * protocols.MAX_BODY
    command = Command(ident=1, name="EXP:RUN", body=Body(tag="block", content=block))
    decision = check(command, ADMINISTRATOR, LABGATE)
    assert isinstance(decision, Denied)
    assert "block is too long" in decision.reason
