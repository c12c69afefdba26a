"""Every command the simulator answers, gathered from the modules that define them."""

from __future__ import annotations

from labgate.instrument import (  # noqa: F401 - importing registers the handlers
    connection_commands,
    expansion,
    experiment_commands,
    file_commands,
    hardware_commands,
    run_commands,
)
from labgate.instrument.dispatch import DESCRIPTIONS, HANDLERS

__all__ = ["DESCRIPTIONS", "HANDLERS"]
