"""The simulator's configuration, checked when built."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from labgate.instrument.errors import ConfigError
from labgate.scpi.access import AccessLevel

# Ten minutes. The machine's own value is not known; qslib waits up to 600 s for the final reply
# after a `NEXT`, so an instrument that hung up on quiet clients sooner would break it.
DEFAULT_IDLE_TIMEOUT = 600.0


@dataclass(frozen=True, slots=True, kw_only=True)
class SimulatorConfig:
    """How to run one simulated instrument.

    Ports: `0` picks a free port, `None` turns the listener off. Passwords map each secret to the
    highest level it grants; when empty, `secrets_file` is read, and without one random passwords
    are made and written 0600 into `state_dir`. `time_scale` is simulated seconds per real second.
    `idle_timeout` closes a session that sent nothing for that many real seconds (`None`: never),
    so silent clients cannot hold every connection slot.
    """

    state_dir: Path
    host: str = "127.0.0.1"
    plain_port: int | None = 7000
    tls_port: int | None = 7443
    legacy_port: int | None = None
    passwords: Mapping[str, AccessLevel] = field(default_factory=dict, repr=False)
    secrets_file: Path | None = None
    access_limit: AccessLevel = AccessLevel.OBSERVER
    max_connections: int = 64
    idle_timeout: float | None = DEFAULT_IDLE_TIMEOUT
    time_scale: float = 1.0
    cert: Path | None = None
    key: Path | None = None

    def __post_init__(self) -> None:
        for name in ("plain_port", "tls_port", "legacy_port"):
            port = getattr(self, name)
            if port is not None and not 0 <= port <= 65535:
                raise ConfigError(f"{name} {port}: expected 0 (a free port) to 65535, or off")
        if (self.cert is None) != (self.key is None):
            raise ConfigError("--cert and --key go together: give both or neither")
        if self.max_connections < 1:
            raise ConfigError(f"max_connections {self.max_connections}: expected at least 1")
        if self.idle_timeout is not None and not self.idle_timeout > 0:
            raise ConfigError(
                f"idle_timeout {self.idle_timeout}: expected a positive number of seconds, or off"
            )
        if not self.time_scale > 0:
            raise ConfigError(f"time_scale {self.time_scale}: expected a positive number")
        if self.plain_port is None and self.tls_port is None and self.legacy_port is None:
            raise ConfigError("every listener is off: enable at least one port")
