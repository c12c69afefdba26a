"""Every command's --help, through Typer's runner: values named, flags bare, defaults shown."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from labgate.cli.app import app

# Typer's own labels: `<bool>`, `<list[str]>`, `<path>`, `<int range>`, and `{url}` for arguments.
PYTHON_TYPE = re.compile(r"<[a-z][a-z_ \[\]]*>|\{[a-z_]+\}")


def _commands(command: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    yield path, command
    for name, sub in getattr(command, "commands", {}).items():
        yield from _commands(sub, (*path, name))


COMMANDS = list(_commands(typer.main.get_command(app)))


def _help(path: tuple[str, ...]) -> str:
    result = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.parametrize("path", [p for p, _ in COMMANDS], ids=lambda p: " ".join(p) or "labgate")
def test_help_names_values_and_never_python_types(path: tuple[str, ...]) -> None:
    text = _help(path)
    assert PYTHON_TYPE.findall(text) == []


@pytest.mark.parametrize("path", [p for p, _ in COMMANDS], ids=lambda p: " ".join(p) or "labgate")
def test_every_optional_value_shows_its_default(path: tuple[str, ...]) -> None:
    _help(path)  # tidies the parameters, as a real --help does
    command = dict(COMMANDS)[path]
    for param in command.params:
        if (
            param.param_type_name != "option"
            or getattr(param, "is_flag", False)
            or param.required
            or param.multiple
        ):
            continue
        shown = isinstance(param.show_default, str) or (
            param.default is not None and param.show_default is not False
        )
        # An option that only makes sense with another says so instead.
        assert shown or "One of" in (param.help or ""), f"{' '.join(path)} {param.opts[0]}"


@pytest.mark.parametrize(
    ("path", "option", "default"),
    [
        (("sim",), "--state-dir", "$XDG_STATE_HOME/labgate/sim"),
        (("demo",), "--state-dir", "$XDG_STATE_HOME/labgate/demo"),
        (("server", "run"), "--listen", "127.0.0.1:8443"),
    ],
)
def test_the_defaults_people_asked_about_are_shown(
    path: tuple[str, ...], option: str, default: str
) -> None:
    line = next(line for line in _help(path).splitlines() if option in line)
    assert "[default:" in line and default in line


def test_revoke_says_which_options_name_the_certificate() -> None:
    text = _help(("ca", "revoke"))
    assert "exactly one of --serial, --cert or --identity" in text
    assert text.count("One of --serial/--cert/--identity is needed") == 3


def test_a_required_argument_reads_as_in_a_manual() -> None:
    assert "labgate pin [OPTIONS] URL" in _help(("pin",))
    assert "ca sign [OPTIONS] CSR" in _help(("ca", "sign"))
