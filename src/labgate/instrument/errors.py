"""What can go wrong in the simulator, as one small tree.

`SimulatorError` is the root. `ConfigError` is a start-up problem the operator must fix (a bad
secrets file, a certificate that cannot serve). `FileStoreError` and its kinds are refusals of the
instrument's file store; the protocol layer turns them into `ERRor` replies. Two more live next
to the code that raises them: `protocols.ProtocolError` (a protocol body that cannot run) and
`outcomes.Refusal` (a command that cannot run; it carries the `ERRor` to answer with).
"""

from __future__ import annotations


class SimulatorError(Exception):
    """Root of every error the simulator raises on purpose."""


class ConfigError(SimulatorError):
    """The simulator cannot start with this configuration; the message names the input."""


class FileStoreError(SimulatorError):
    """A file store operation was refused."""


class PathEscape(FileStoreError):
    """A path would leave the file store's root."""


class FileMissing(FileStoreError):
    """A path names nothing in the file store."""
