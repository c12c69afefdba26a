"""Names the instrument splices into Python, commands and file names: what labgate lets through.

Attacks are judged as a Controller (who may define protocols and start runs) under LABGATE; each
must need Full, and the refusal must name the argument.
"""

import pytest
from qslib import Experiment, Protocol, Stage, Step

from labgate.scpi import arguments
from labgate.scpi.access import INSTRUMENT, LABGATE, AccessLevel, Allowed, Denied, check
from labgate.scpi.messages import Command, parse_command

OBSERVER = AccessLevel.OBSERVER
CONTROLLER = AccessLevel.CONTROLLER
ADMINISTRATOR = AccessLevel.ADMINISTRATOR
FULL = AccessLevel.FULL

# Python that closes qslib's '${RunMacro}-Stages' literal and runs a shell.
BREAKOUT = "x'+__import__('os').system('id')+'"
BODY = "<multiline.protocol>\n\tSTAGE 1 STAGE_1 <multiline.stage>\n\t</multiline.stage>\n"
BODY += "</multiline.protocol>"


def cmd(text: str) -> Command:
    return parse_command(text.encode())


def denied_for(text: str, argument: str, level: AccessLevel = ADMINISTRATOR) -> Denied:
    decision = check(cmd(text), level, LABGATE)
    assert isinstance(decision, Denied), text
    assert decision.required is FULL
    assert argument in decision.reason, decision.reason
    return decision


@pytest.mark.parametrize(
    "name",
    [
        f'"{BREAKOUT}"',  # the breakout, quoted as qslib would quote it
        BREAKOUT.replace(" ", ""),
        "\"x\\'+1+\\'\"",  # escaped quotes inside double quotes
        "'single-quoted'",  # the instrument may not strip single quotes: refused, not guessed
        '"two words"',
        "a\\b",
        "$(RUNTitle?)",  # the name would be a reply labgate never saw
        "${RunTitle}",
        '"${RunTitle}"',
        "x$y",
        "..",  # becomes a folder: experiments:../
        ".hidden",
        "-rf",
        "+1",
        '""',
        "a" * (arguments.MAX_NAME + 1),
        "caf\u00e9",  # non-ASCII: one letter or several bytes, depending on who reads it
        "x\u2019y",
    ],
)
def test_a_protocol_name_that_is_not_a_safe_name_needs_full(name: str) -> None:
    decision = denied_for(f"7 PROTOCOL -volume=50 -runmode=standard {name} {BODY}", "protocol name")
    assert decision.command == "PROTOCOL"


def test_the_denial_says_what_is_wrong_with_the_name() -> None:
    decision = denied_for(f'7 PROTOCOL "{BREAKOUT}" {BODY}', "protocol name")
    assert 'holds "\'"' in decision.reason
    assert "${RunMacro}" in decision.reason
    assert "the session has Administrator" in decision.reason
    too_long = denied_for(f"7 PROTOCOL {'a' * 200} {BODY}", "protocol name")
    assert "200 characters long" in too_long.reason
    assert "starts with '.'" in denied_for(f"7 PROTOCOL .. {BODY}", "protocol name").reason


@pytest.mark.parametrize(
    ("text", "argument"),
    [
        (f'8 RP -samplevolume=50 -runmode=standard "{BREAKOUT}" title', "protocol name"),
        (f'8 RP -samplevolume=50 -runmode=standard demo "{BREAKOUT}"', "run title"),
        ("8 RP demo $(FILE:READ? public_run_complete:evil.txt)", "run title"),
        ("8 RP demo ${RunTitle}x", "run title"),
        ("8 RP -samplevolume=50'+1+' demo title", "option -samplevolume"),
        ('8 RP -runmode="fast standard" demo title', "option -runmode"),
        (f'7 PROTOCOL -volume="{BREAKOUT}" demo {BODY}', "option -volume"),
        (f"7 PROTOCOL -runmode=$(RUNTitle?) demo {BODY}", "option -runmode"),
        (f'9 EXP:NEW "{BREAKOUT}" ruo', "run title"),
        ("9 EXP:NEW ../../etc ruo", "run title"),
        ("9 EXP:NEW run ../ruo", "template"),
        (f'9 EXP:ATTR= "{BREAKOUT}" collected True', "run title"),
        ('9 EXP:ATTR= run "collected x" True', "attribute"),
        ("9 EXP:ATTR= run collected $(RAND?)", "value"),
        (
            f'9 EXP:RUN -asynchronous <block> zip "{BREAKOUT}.eds" "run" </block>',
            "block argument 1",
        ),
        ('9 EXP:RUN -asynchronous <block> zip "run.eds" "../.." </block>', "block argument 2"),
        ('9 EXP:RUN -asynchronous <block> SYST:EXEC "id" </block>', "block"),
        ("9 EXP:RUN -asynchronous <block> </block>", "block"),
        ('9 EXP:RUN -asynchronous <block> zip "a </block>', "block"),
        ("9 EXP:RUN ../x", "argument 1"),
    ],
)
def test_names_that_reach_variables_and_folders_must_be_safe(text: str, argument: str) -> None:
    denied_for(text, argument)


@pytest.mark.parametrize(
    ("text", "command"),
    [
        (f'5 RET $(RP demo "{BREAKOUT}")', "RP"),
        (f'5 RET "$(PROTOCOL -volume=50 {BREAKOUT.replace(" ", "")})"', "PROTOCOL"),
        ("5 RET ${X:-$(EXP:NEW ../x ruo)}", "EXP:NEW"),
        ("5 RET $(RET $(EXP:ATTR= .. collected True))", "EXP:ATTR="),
    ],
)
def test_an_unsafe_name_in_a_nested_command_is_found(text: str, command: str) -> None:
    decision = check(cmd(text), ADMINISTRATOR, LABGATE)
    assert isinstance(decision, Denied)
    assert decision.required is FULL
    assert decision.command == command
    assert "safe names" in decision.reason


def test_full_may_name_things_as_it_likes() -> None:
    text = f'8 RP demo "{BREAKOUT}"'
    assert check(cmd(text), FULL, LABGATE) == Allowed(required=FULL)


def test_the_instrument_itself_checks_no_names() -> None:
    # the hole: on the machine a Controller names a protocol with Python in it
    text = f'8 RP -samplevolume=50 "{BREAKOUT}" title'
    assert check(cmd(text), CONTROLLER, INSTRUMENT) == Allowed(required=CONTROLLER)


def test_an_observer_is_still_refused_for_the_command_itself() -> None:
    decision = check(cmd("8 RP demo title"), OBSERVER, LABGATE)
    assert isinstance(decision, Denied)
    assert decision.required is CONTROLLER


# ---- qslib's own names pass --------------------------------------------------------------------


def test_qslibs_default_protocol_and_run_names_pass() -> None:
    protocol = Protocol([Stage([Step(30, 95.0)]), Stage([Step(60, 60.0)], repeat=3)])
    experiment = Experiment(protocol=protocol)
    assert protocol.name.startswith("Prot_")
    defined = parse_command(b"5 " + protocol.to_scpi_string().rstrip("\n").encode())
    assert defined.canonical == "PROTOCOL"
    assert check(defined, CONTROLLER, LABGATE) == Allowed(required=CONTROLLER)
    # qslib's Experiment.run, compile_eds: the f-strings of its source, filled in as it fills them
    title = experiment.runtitle_safe
    for text in (
        f"6 EXP:NEW {title} ruo",
        f"7 RP -samplevolume={protocol.volume} -runmode={protocol.runmode} {protocol.name} {title}",
        f'8 exp:run -asynchronous <block> zip "{title}.eds" "{title}" </block>',
        f'9 exp:attr= "{title}" collected True',
    ):
        assert check(cmd(text), CONTROLLER, LABGATE) == Allowed(required=CONTROLLER), text


@pytest.mark.parametrize("name", ["qPCR run 7", "melt_2026-11-23", "SYBR.v2-ROX", "a" * 128])
def test_run_names_qslib_makes_safe_pass(name: str) -> None:
    title = Experiment(name=name).runtitle_safe
    assert arguments.name_problem(title) is None
    assert check(cmd(f"7 RP demo {title}"), CONTROLLER, LABGATE) == Allowed(required=CONTROLLER)


def test_qslibs_volumes_and_run_modes_pass() -> None:
    for volume in (50, 25.5, 1e-3):
        protocol = Protocol([Stage([Step(30, 95.0)])], name="p", volume=volume, runmode="fast")
        defined = parse_command(b"5 " + protocol.to_scpi_string().rstrip("\n").encode())
        assert check(defined, CONTROLLER, LABGATE) == Allowed(required=CONTROLLER), volume


def test_commands_without_names_are_not_judged_here() -> None:
    assert list(arguments.judge("OPEN", (), ("$weird'",), None)) == []
