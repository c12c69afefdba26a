"""The instrument's holes beyond SYST:EXEC, tried through the real gateway with the real qslib
client, and judged from the simulator's own log: nothing refused ever reaches it."""

from __future__ import annotations

from typing import Any

import pytest
from qslib import CommandError
from qslib.scpi_commands import InsufficientAccess, specialize_command_error


def _refused(m: Any, command: str) -> None:
    with pytest.raises(CommandError) as caught:
        m.run_command(command)
    assert isinstance(specialize_command_error(caught.value), InsufficientAccess), caught.value


def _raw_since(simulator: Any, mark: int) -> list[str]:
    return [str(entry.get("raw", "")) for entry in simulator.received()[mark:]]


def test_a_controller_cannot_mint_an_administrator_key_with_rand(
    gateway_process: Any, pki: Any, simulator: Any, machine: Any
) -> None:
    # On the instrument, RAND? at Controller returns a key that AUTH takes for Administrator.
    m = machine(gateway_process, pki, "alice")
    mark = len(simulator.received())
    with m.at_access("Controller"):
        _refused(m, "RAND?")
    assert not any("RAND" in raw.upper() for raw in _raw_since(simulator, mark))


@pytest.mark.parametrize(
    "command",
    [
        # A protocol name that would close the string in qslib's run_status() expression.
        "PROTOCOL \"x'+__import__('os').system('id')+'\" "
        "<multiline.protocol>\n</multiline.protocol>",
        # Reading outside the instrument's file namespaces.
        "FILE:READ? -encoding=base64 ../../etc/shadow",
        "FILE:READ? -encoding=base64 /etc/shadow",
        # A second command after a separator, if the instrument splits lines on ';'.
        "DRAW? ;SYST:EXEC id",
    ],
)
def test_arguments_that_would_run_code_or_leave_the_file_store_never_arrive(
    gateway_process: Any, pki: Any, simulator: Any, machine: Any, command: str
) -> None:
    m = machine(gateway_process, pki, "alice")
    mark = len(simulator.received())
    with m.at_access("Controller"):
        _refused(m, command)
    raws = _raw_since(simulator, mark)
    assert not any(
        "__import__" in raw or "shadow" in raw or "SYST" in raw.upper() for raw in raws
    ), raws
