"""Every command the simulator answers: the tables of the modules that define them, merged.

Adding a command module means adding its table here; `merge` refuses a command that two modules
both answer.
"""

from __future__ import annotations

from labgate.instrument import (
    access_commands,
    connection_commands,
    expansion,
    experiment_commands,
    file_commands,
    hardware_commands,
    run_commands,
)
from labgate.instrument.dispatch import CommandTable, merge

COMMANDS: CommandTable = merge(
    {
        "access_commands": access_commands.COMMANDS,
        "connection_commands": connection_commands.COMMANDS,
        "expansion": expansion.COMMANDS,
        "experiment_commands": experiment_commands.COMMANDS,
        "file_commands": file_commands.COMMANDS,
        "hardware_commands": hardware_commands.COMMANDS,
        "run_commands": run_commands.COMMANDS,
    }
)

__all__ = ["COMMANDS"]
