"""The simulator's command tables: each module's own, merged in one place with a duplicate check,
serving exactly what the simulator served when handlers registered themselves on import."""

from __future__ import annotations

import ast
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import labgate.instrument
from labgate.instrument import commands, connection_commands, file_commands, hardware_commands
from labgate.instrument.commands import COMMANDS
from labgate.instrument.dispatch import DuplicateCommand, merge, table
from labgate.scpi.access import AccessLevel
from labgate.scpi.messages import Ok

# What the registry held before the tables (command -> module.handler), read from it before it
# was removed: every one of these is still served, by the same handler.
SERVED_BEFORE = {
    "ABORTRUN": "run_commands.abort",
    "ACCESS": "connection_commands.set_access",
    "ACCESS?": "connection_commands.get_access",
    "AUTH": "connection_commands.authenticate",
    "BLOCK": "hardware_commands.block_set",
    "BLOCK?": "hardware_commands.block_state",
    "CHAL?": "connection_commands.challenge",
    "CLOSE": "hardware_commands.drawer_close",
    "COVERDOWN": "hardware_commands.cover_down",
    "DRAWER?": "hardware_commands.drawer_position",
    "ENG?": "hardware_commands.cover_position",
    "EVAL?": "connection_commands.evaluate",
    "EXP:DELETE": "experiment_commands.delete_experiment",
    "EXP:LIST?": "experiment_commands.list_experiments",
    "EXP:NEW": "experiment_commands.new_experiment",
    "EXP:READ?": "experiment_commands.read_experiment_file",
    "EXP:ZIPWRITE": "experiment_commands.unpack_into_experiment",
    "FILE:LIST?": "file_commands.list_files",
    "FILE:MOVE": "file_commands.move_file",
    "FILE:READ?": "file_commands.read_file",
    "FILE:REMOVE": "file_commands.remove_file",
    "FILE:WRITE": "file_commands.write_file",
    "HELP?": "connection_commands.describe",
    "ISTAT?": "run_commands.run_state",
    "LED:BLUEBLINK": "hardware_commands.led_set",
    "LED:BLUEOFF": "hardware_commands.led_set",
    "LED:BLUEON": "hardware_commands.led_set",
    "LED:CYANBLINK": "hardware_commands.led_set",
    "LED:CYANOFF": "hardware_commands.led_set",
    "LED:CYANON": "hardware_commands.led_set",
    "LED:GREENBLINK": "hardware_commands.led_set",
    "LED:GREENOFF": "hardware_commands.led_set",
    "LED:GREENON": "hardware_commands.led_set",
    "LED:LEDTEMPERATURE?": "hardware_commands.led_temperature",
    "LED:LIGHTOFF": "hardware_commands.led_off",
    "LED:MAGENTABLINK": "hardware_commands.led_set",
    "LED:MAGENTAOFF": "hardware_commands.led_set",
    "LED:MAGENTAON": "hardware_commands.led_set",
    "LED:REDBLINK": "hardware_commands.led_set",
    "LED:REDOFF": "hardware_commands.led_set",
    "LED:REDON": "hardware_commands.led_set",
    "LED:STATUS?": "hardware_commands.led_status",
    "LED:WHITEBLINK": "hardware_commands.led_set",
    "LED:WHITEOFF": "hardware_commands.led_set",
    "LED:WHITEON": "hardware_commands.led_set",
    "LED:YELLOWBLINK": "hardware_commands.led_set",
    "LED:YELLOWOFF": "hardware_commands.led_set",
    "LED:YELLOWON": "hardware_commands.led_set",
    "LST?": "hardware_commands.lamp_status",
    "OPEN": "hardware_commands.drawer_open",
    "PAUSE": "run_commands.pause",
    "POW": "hardware_commands.power_set",
    "POW?": "hardware_commands.power_state",
    "PROTOCOL": "run_commands.define",
    "PROTOCOL?": "run_commands.read_protocol",
    "QUIT": "connection_commands.quit_session",
    "RAND?": "connection_commands.random_key",
    "RESUME": "run_commands.resume",
    "RET": "expansion.ret",
    "RP": "run_commands.start_run",
    "RUNTITLE?": "run_commands.run_title",
    "STOPRUN": "run_commands.stop",
    "SUBS+": "connection_commands.subscribe",
    "SYSTEM:EXEC": "connection_commands.system_exec",
    "TBC:BLOCKTEMPERATURES?": "hardware_commands.block_temperatures",
    "TBC:CONT?": "hardware_commands.controls",
    "TBC:CONTROLZONES?": "hardware_commands.zone_count",
    "TBC:COVERTEMPERATURES?": "hardware_commands.cover_temperature",
    "TBC:SAMPLETEMPERATURES?": "hardware_commands.sample_temperatures",
    "TBC:SETT?": "hardware_commands.settings",
    "UNS": "connection_commands.unsubscribe",
}


# Commands added since, each by its own module's table.
ADDED_SINCE = {
    "CONFIG?": "access_commands.read_access",
    "CONFIG=": "access_commands.write_access",
}


def test_the_merged_table_serves_every_command_served_before_by_the_same_handler() -> None:
    served = {
        name: f"{entry.handler.__module__.rsplit('.', 1)[-1]}.{entry.handler.__qualname__}"
        for name, entry in COMMANDS.items()
    }
    assert served == {**SERVED_BEFORE, **ADDED_SINCE}


def test_a_command_in_two_tables_is_refused_naming_it_and_both_tables() -> None:
    with pytest.raises(DuplicateCommand) as raised:
        merge({"file_commands": file_commands.COMMANDS, "mine": table(
            ("FILE:READ?", file_commands.COMMANDS["FILE:READ?"].handler, "another FILE:READ?"),
        )})  # fmt: skip
    assert "'FILE:READ?'" in str(raised.value)
    assert "file_commands" in str(raised.value) and "mine" in str(raised.value)


def test_a_command_given_twice_in_one_table_is_refused() -> None:
    handler = hardware_commands.COMMANDS["OPEN"].handler
    with pytest.raises(DuplicateCommand, match="'OPEN' is given twice"):
        table(("OPEN", handler, "OPEN"), (("CLOSE", "OPEN"), handler, "both"))


def test_the_tables_are_read_only() -> None:
    with pytest.raises(TypeError):
        COMMANDS["SYSTEM:EXEC"] = COMMANDS["QUIT"]  # type: ignore[index]
    with pytest.raises(TypeError):
        connection_commands.COMMANDS["HELP?"] = COMMANDS["QUIT"]  # type: ignore[index]


def test_the_command_modules_tables_are_what_commands_merges() -> None:
    modules = [module for name, module in vars(commands).items() if hasattr(module, "COMMANDS")
               and name != "COMMANDS" and name.endswith(("_commands", "expansion"))]  # fmt: skip
    assert sum(len(module.COMMANDS) for module in modules) == len(COMMANDS)


def test_help_answers_for_every_command_from_the_table(
    make_config: Callable[..., Any], tmp_path: Path, raw: Callable[..., Any]
) -> None:
    from labgate.instrument import run_in_thread

    with run_in_thread(make_config(tmp_path, access_limit=AccessLevel.OBSERVER)) as simulator:
        client = raw(simulator.plain)
        assert client.ask("0 ACC Observer") == Ok(ident=0)
        for ident, (name, entry) in enumerate(sorted(COMMANDS.items()), 1):
            reply = client.ask(f"{ident} HELP? {name}")
            assert isinstance(reply, Ok) and entry.help in reply.text, (name, reply)


def _runtime_imports(path: Path) -> set[str]:
    """The labgate.instrument modules `path` imports when it runs (not under TYPE_CHECKING)."""
    tree = ast.parse(path.read_text())
    guarded = {
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING"
        for inner in ast.walk(node)
    }
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in guarded or not isinstance(node, ast.ImportFrom) or not node.module:
            continue
        if node.module == "labgate.instrument":
            found |= {alias.name for alias in node.names}
        elif node.module.startswith("labgate.instrument."):
            found.add(node.module.removeprefix("labgate.instrument.").split(".")[0])
    return found


def test_no_instrument_module_imports_itself_back_through_others() -> None:
    package = Path(labgate.instrument.__file__).parent
    graph = {path.stem: _runtime_imports(path) for path in package.glob("*.py")}
    graph.pop("__init__")  # the package's face: it imports the parts, none imports it
    cycles = []
    for start in graph:
        stack = [(start, [start])]
        seen: set[str] = set()
        while stack:
            node, trail = stack.pop()
            for nxt in graph.get(node, ()):
                if nxt == start:
                    cycles.append([*trail, nxt])
                elif nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, [*trail, nxt]))
    assert cycles == []


def test_a_simulator_serves_the_table_it_is_given(
    make_config: Callable[..., Any], tmp_path: Path, raw: Callable[..., Any]
) -> None:
    from labgate.instrument import run_in_thread

    only = {name: entry for name, entry in COMMANDS.items() if name in ("ACCESS", "ACCESS?")}
    with run_in_thread(make_config(tmp_path), handlers=only) as small:
        client = raw(small.plain)
        assert isinstance(client.ask("0 ACC?"), Ok)
        reply = client.ask("1 CHAL?")
        assert not isinstance(reply, Ok) and "Unknown command" in reply.message
