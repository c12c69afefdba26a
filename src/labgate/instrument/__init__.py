"""A QuantStudio qPCR instrument simulator that the real qslib client cannot tell from a machine.

Plain, TLS 1.2/1.3 and legacy SSLv3/TLS 1.0 listeners; passwords and access levels as the
instrument has them (weak on purpose: `SYST:EXEC` and `eval?` pass at Controller and are only
recorded; `RAND?` at Controller mints a key that logs in as Administrator); drawer, cover,
temperatures, runs, files and events. Every command received is logged; a client silent for
`idle_timeout` is hung up on.
"""

from labgate.instrument.config import SimulatorConfig
from labgate.instrument.errors import ConfigError, FileStoreError, PathEscape, SimulatorError
from labgate.instrument.process import SimulatorProcess, run_in_process
from labgate.instrument.simulator import RunningSimulator, run_in_thread, start

__all__ = [
    "ConfigError",
    "FileStoreError",
    "PathEscape",
    "RunningSimulator",
    "SimulatorConfig",
    "SimulatorError",
    "SimulatorProcess",
    "run_in_process",
    "run_in_thread",
    "start",
]
