import pytest

from labgate.scpi.access import AccessLevel


def test_levels_are_ordered_as_the_instrument_orders_them() -> None:
    assert (
        AccessLevel.GUEST
        < AccessLevel.OBSERVER
        < AccessLevel.CONTROLLER
        < AccessLevel.ADMINISTRATOR
        < AccessLevel.FULL
    )


@pytest.mark.parametrize("text", ["observer", "OBSERVER", "Observer", " Observer "])
def test_level_names_parse_case_insensitively(text: str) -> None:
    assert AccessLevel.parse(text) is AccessLevel.OBSERVER


def test_unknown_level_name_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="unknown access level 'Root'"):
        AccessLevel.parse("Root")


def test_label_is_the_instrument_spelling() -> None:
    assert [level.label for level in AccessLevel] == [
        "Guest",
        "Observer",
        "Controller",
        "Administrator",
        "Full",
    ]


# ---- the tables and check() -----------------------------------------------------------------

from labgate.scpi import names  # noqa: E402
from labgate.scpi.access import (  # noqa: E402
    FIXED_EXPRESSIONS,
    INSTRUMENT,
    LABGATE,
    Allowed,
    Denied,
    check,
    required_level,
)
from labgate.scpi.messages import Body, Command, parse_command  # noqa: E402

OBSERVER = AccessLevel.OBSERVER
CONTROLLER = AccessLevel.CONTROLLER
FULL = AccessLevel.FULL


def cmd(text: str) -> Command:
    return parse_command(text.encode())


def test_every_table_entry_is_a_known_canonical_name() -> None:
    for table in (INSTRUMENT, LABGATE):
        for name in table.levels:
            assert names.is_known(name), name
            assert names.canonical(name) == name, name


def test_both_tables_list_the_same_commands() -> None:
    assert set(INSTRUMENT.levels) == set(LABGATE.levels)


def test_labgate_is_never_weaker_than_the_instrument() -> None:
    for name, level in INSTRUMENT.levels.items():
        assert LABGATE.levels[name] >= level, name


def test_every_captured_client_command_passes_labgate_at_the_level_qslib_used(
    client_lines: list[bytes],
) -> None:
    # qslib asked for Observer or Controller in these captures, and only for its own commands
    # (FOO, TESTSTARTRUN and SYST:EXEC were the capture's probes of unknown and forbidden ones).
    probes = {"FOO", "TESTSTARTRUN", "SYSTEM:EXEC"}
    for line in client_lines:
        command = parse_command(line[:-1])
        if command.canonical in probes:
            continue
        assert isinstance(check(command, CONTROLLER, LABGATE), Allowed), line


def test_machine_status_and_run_status_pass_both_tables_at_observer(
    client_lines: list[bytes],
) -> None:
    status = [parse_command(line[:-1]) for line in client_lines if b" RET " in line]
    assert any("$[" in " ".join(c.args) for c in status)
    for command in status:
        for table in (INSTRUMENT, LABGATE):
            assert check(command, OBSERVER, table) == Allowed(required=OBSERVER)


def test_the_fixed_expressions_are_the_ones_qslib_sends(client_lines: list[bytes]) -> None:
    sent = {
        arg
        for line in client_lines
        for arg in parse_command(line[:-1]).args
        if arg.startswith("$[")
    }
    assert sent == FIXED_EXPRESSIONS


@pytest.mark.parametrize(
    "text",
    [
        '4 SYST:EXEC "killall zygote"',
        "4 syst:exec reboot",
        "4 SYSTem:EXEC reboot",
        "4 SYST:SOMETHINGNEW x",
        "4 eval? 1+1",
        "4 CONF= access accessLimits default CONTROLLER",
        "4 CONF? access secrets",
        "4 CONF* access secrets",
        "4 TOTALLYUNKNOWN",
        "4 :SYST:EXEC reboot",
        "4 \u017fyst:exec reboot",  # long s upper-cases to S: still not a name labgate knows
        "4 SYST:EXEC\treboot",
    ],
)
def test_controller_cannot_reach_the_holes_through_labgate(text: str) -> None:
    decision = check(cmd(text), CONTROLLER, LABGATE)
    assert isinstance(decision, Denied)
    assert decision.required is FULL


def test_controller_reaches_syst_exec_on_the_instrument_itself() -> None:
    # the hole labgate exists to close
    assert check(cmd('4 SYST:EXEC "killall zygote"'), CONTROLLER, INSTRUMENT) == Allowed(
        required=CONTROLLER
    )


@pytest.mark.parametrize(
    "text",
    [
        "5 RET $(SYST:EXEC reboot)",
        "5 RET ${X:-$(SYST:EXEC reboot)}",
        '5 RET "quoted $(SYST:EXEC reboot) text"',
        "5 RET $(RET $(RET $(SYST:EXEC reboot)))",
        "5 FILE:LIST? -verbose=$(SYST:EXEC reboot) x",
        '5 RET $[ "$(SYST:EXEC reboot)" or "unknown" ]',
        "5 $(SYST:EXEC reboot)",
    ],
)
def test_a_nested_shell_command_is_found_wherever_it_hides(text: str) -> None:
    decision = check(cmd(text), CONTROLLER, LABGATE)
    assert isinstance(decision, Denied)
    assert decision.required is FULL
    assert (
        "SYSTEM:EXEC" in decision.command
        or "SYSTEM:EXEC" in decision.reason
        or (decision.command.startswith("$"))
    )


def test_a_nested_command_in_a_body_is_judged() -> None:
    body = Body(tag="quote", content="$(OPEN)")
    command = Command(ident=1, name="FILE:LIST?", args=("public_run_complete:p",), body=body)
    decision = check(command, OBSERVER, LABGATE)
    assert isinstance(decision, Denied)
    assert decision.command == "OPEN"


@pytest.mark.parametrize(
    "expression",
    [
        '$[ __import__("os").system("id") ]',
        '$[ "$(ENG?)" or "unknown"  ]',  # one space more than qslib's
        '$[ "$(ENG?)" or __import__("os") ]',
        "$[ 1 ]",
    ],
)
def test_any_expression_but_qslibs_own_needs_full_in_labgate(expression: str) -> None:
    decision = check(cmd(f"5 RET {expression}"), CONTROLLER, LABGATE)
    assert isinstance(decision, Denied)
    assert decision.required is FULL
    assert "not one of qslib's fixed expressions" in decision.reason


def test_an_arbitrary_expression_needs_controller_on_the_instrument() -> None:
    command = cmd('5 RET $[ __import__("os") ]')
    assert isinstance(check(command, OBSERVER, INSTRUMENT), Denied)
    assert check(command, CONTROLLER, INSTRUMENT) == Allowed(required=CONTROLLER)


def test_observer_cannot_open_the_drawer_even_nested() -> None:
    for text in ("5 OPEN", "5 RET $(OPEN)", "5 RET $(open)", "5 RET $(DRAW?) $(OPEN)"):
        for table in (INSTRUMENT, LABGATE):
            decision = check(cmd(text), OBSERVER, table)
            assert isinstance(decision, Denied), (text, table.name)
            assert decision.command == "OPEN"
            assert decision.required is CONTROLLER


def test_unparsable_substitution_needs_full_in_labgate() -> None:
    command = Command(ident=1, name="RET", args=('"$(OPEN"',))
    decision = check(command, CONTROLLER, LABGATE)
    assert isinstance(decision, Denied)
    assert "cannot be parsed" in decision.reason


def test_full_may_do_anything_labgate_judges() -> None:
    assert check(cmd("4 SYST:EXEC reboot"), FULL, LABGATE) == Allowed(required=FULL)


def test_guest_may_authenticate_and_nothing_more() -> None:
    guest = AccessLevel.GUEST
    for text in (
        "0 CHAL?",
        "1 AUTH 00ff",
        "2 ACC -stealth=false -exclusive=false Observer",
        "3 QUIT",
    ):
        assert isinstance(check(cmd(text), guest, LABGATE), Allowed)
    assert isinstance(check(cmd("4 DRAW?"), guest, LABGATE), Denied)


def test_required_level_is_the_highest_part() -> None:
    assert required_level(cmd("5 RET $(DRAW?) $(OPEN)"), LABGATE) is CONTROLLER
    assert required_level(cmd("5 RET $(DRAW?)"), LABGATE) is OBSERVER


def test_denial_names_the_part_and_the_levels() -> None:
    decision = check(cmd("5 RET $(SYST:EXEC reboot)"), CONTROLLER, LABGATE)
    assert isinstance(decision, Denied)
    assert decision.command == "SYSTEM:EXEC"
    assert "needs Full" in decision.reason
    assert "the session has Controller" in decision.reason


# ---- RAND?: a key that AUTH turns into Administrator ----------------------------------------

ADMINISTRATOR = AccessLevel.ADMINISTRATOR


@pytest.mark.parametrize(
    "text",
    [
        "6 RAND?",
        "6 rand?",
        "6 Rand?",
        "6 RET $(RAND?)",
        "6 RET $(rand?)",
        '6 RET "key $(RAND?)"',
        "6 RET ${Key:-$(RAND?)}",
        "6 RET $(RET $(RAND?))",
        "6 FILE:LIST? -verbose=$(RAND?) public_run_complete:*",
    ],
)
def test_no_grant_below_full_can_mint_an_instrument_key(text: str) -> None:
    # Administrator is the most labgate hands out below Full, and what the key itself gives.
    for level in (OBSERVER, CONTROLLER, ADMINISTRATOR):
        decision = check(cmd(text), level, LABGATE)
        assert isinstance(decision, Denied), (text, level)
        assert decision.required is FULL
        assert decision.command == "RAND?"


def test_a_key_minted_in_a_body_is_found() -> None:
    command = Command(ident=1, name="RET", args=("x",), body=Body(tag="quote", content="$(RAND?)"))
    decision = check(command, ADMINISTRATOR, LABGATE)
    assert isinstance(decision, Denied)
    assert decision.command == "RAND?"


def test_full_may_mint_a_key() -> None:
    assert check(cmd("6 RAND?"), FULL, LABGATE) == Allowed(required=FULL)


def test_the_instrument_mints_keys_for_controllers_not_observers() -> None:
    # qslib's generate_random_key(): "Requires Controller or higher access".
    assert isinstance(check(cmd("6 RAND?"), OBSERVER, INSTRUMENT), Denied)
    assert check(cmd("6 RAND?"), CONTROLLER, INSTRUMENT) == Allowed(required=CONTROLLER)


# ---- qslib's own use passes labgate ----------------------------------------------------------
# The real client drives a simulated instrument through a run; the simulator's command log is the
# witness of what qslib sent, and each command must pass LABGATE at the level its session had.

import tempfile  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

from qslib import Experiment, Machine, Protocol, Stage, Step  # noqa: E402

from labgate.instrument import SimulatorConfig, run_in_process  # noqa: E402

PASSWORD = "controller-password-for-policy-tests"


@pytest.fixture(scope="module")
def qslib_commands() -> Iterator[list[dict[str, Any]]]:
    with tempfile.TemporaryDirectory() as state:
        config = SimulatorConfig(
            state_dir=Path(state),
            plain_port=0,
            tls_port=None,
            passwords={PASSWORD: CONTROLLER},
            access_limit=AccessLevel.GUEST,
            time_scale=100.0,
        )
        with run_in_process(config) as simulator:
            assert simulator.plain is not None
            host, port = simulator.plain
            _drive_qslib(Machine(host, port=port, ssl=False, password=PASSWORD))
            yield simulator.received()


def _drive_qslib(machine: Machine) -> None:
    protocol = Protocol([Stage([Step(30, 95.0)]), Stage([Step(20, 60.0)], repeat=10)])
    experiment = Experiment(name="qPCR run 7", protocol=protocol)
    experiment.run(machine)
    machine.run_status()
    machine.machine_status()
    machine.get_running_protocol()
    with machine:
        assert machine.get_expfile_list("qPCR_run_7/*") == ["qPCR_run_7/apldbio/"]
        assert machine.get_run_title() == "qPCR_run_7"
    # change_protocol_from_now rewrites the running protocol and its files in ${LogFolder}.
    experiment.change_protocol_from_now([Stage([Step(10, 60.0)])], machine)
    machine.abort_current_run()
    with machine.at_access("Controller"):
        machine.write_file("public_run_complete:qPCR_run_7.eds", b"not really a zip")
    assert machine.list_runs_in_storage() == ["qPCR_run_7"]
    assert machine.read_file("qPCR_run_7.eds", context="public_run_complete")
    assert machine.list_files("public_run_complete:*", verbose=True)


def test_qslibs_run_workflow_passes_labgate_at_the_level_qslib_used(
    qslib_commands: list[dict[str, Any]],
) -> None:
    sent = {entry["command"] for entry in qslib_commands}
    assert {"PROTOCOL", "RP", "EXP:NEW", "EXP:ZIPWRITE", "FILE:WRITE", "FILE:READ?"} <= sent
    for entry in qslib_commands:
        if entry["command"] == "EXP:ZIPWRITE":
            continue  # the log keeps no body, so no archive: test_archive judges qslib's own
        command = parse_command(entry["raw"].strip().encode())
        decision = check(command, AccessLevel.parse(entry["level"]), LABGATE)
        assert isinstance(decision, Allowed), (entry["raw"], decision)
