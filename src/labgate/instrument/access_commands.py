"""The instrument's own access settings, read and written over SCPI: its password-free limits per
network interface and its secrets (`CONF access ...` on the real machine, whose exact syntax is
not known: this is the simulator's model of it, and what `labgate instrument setup` speaks).

- `CONF? access` -> `OK n -accessLimits.default=Observer -accessLimits.eth0=Observer
  -secrets.Controller=1 ...`: the limits and how many secrets grant each level. Secrets
  themselves are never read back.
- `CONF= access.accessLimits.IFACE LEVEL`: set one interface's limit (`default` or `eth0`).
- `CONF= access.secrets SECRET LEVEL [SECRET LEVEL ...]`: replace every secret at once, so an
  instrument is never left between two sets of passwords.

Both `CONF?` and `CONF=` need Administrator on the instrument (and Full through labgate). The
command log records them redacted.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from labgate.instrument.dispatch import table
from labgate.instrument.expansion import expanded_args
from labgate.instrument.outcomes import Outcome, error
from labgate.scpi.access import AccessLevel
from labgate.scpi.messages import Command, Ok

if TYPE_CHECKING:
    from labgate.instrument.session import Session

INTERFACES = ("default", "eth0")
# A secret shorter than this is refused: the instrument's own floor in the model.
MIN_SECRET = 12


async def read_access(session: Session, command: Command) -> Outcome:
    args = await expanded_args(session, command)
    if list(args) != ["access"]:
        return error(command.ident, "InvocationError", "CONF? reads 'access' only")
    security = session.security
    parts = [f"-accessLimits.{name}={_limit(session, name).label}" for name in INTERFACES]
    counts = {level: 0 for level in AccessLevel}
    for level in security.passwords.values():
        counts[level] += 1
    parts += [f"-secrets.{level.label}={count}" for level, count in counts.items()]
    return Ok(ident=command.ident, text=" ".join(parts))


async def write_access(session: Session, command: Command) -> Outcome:
    args = await expanded_args(session, command)
    if not args:
        return error(command.ident, "InvocationError", "CONF= needs a key and a value")
    key, values = args[0], args[1:]
    security = session.security
    if key.startswith("access.accessLimits."):
        interface = key.removeprefix("access.accessLimits.")
        if interface not in INTERFACES or len(values) != 1:
            return error(
                command.ident,
                "InvocationError",
                f"CONF= access.accessLimits.{{{'|'.join(INTERFACES)}}} LEVEL",
            )
        try:
            level = AccessLevel.parse(values[0])
        except ValueError as exc:
            return error(command.ident, "InvocationError", str(exc))
        if interface == "default":
            security.access_limit = level
        else:
            security.interface_limits[interface] = level
        return Ok(ident=command.ident)
    if key == "access.secrets":
        if not values or len(values) % 2:
            return error(
                command.ident,
                "InvocationError",
                "CONF= access.secrets SECRET LEVEL [SECRET LEVEL ...]",
            )
        replacement: dict[str, AccessLevel] = {}
        for secret, level_text in zip(values[::2], values[1::2], strict=True):
            if len(secret) < MIN_SECRET:
                return error(
                    command.ident,
                    "InvocationError",
                    f"a secret needs at least {MIN_SECRET} characters",
                )
            try:
                replacement[secret] = AccessLevel.parse(level_text)
            except ValueError as exc:
                return error(command.ident, "InvocationError", str(exc))
        security.passwords.clear()
        security.passwords.update(replacement)
        return Ok(ident=command.ident)
    return error(command.ident, "InvocationError", f"CONF= does not know {key!r}")


def _limit(session: Session, interface: str) -> AccessLevel:
    security = session.security
    if interface == "default":
        return security.access_limit
    return security.interface_limits.get(interface, security.access_limit)


COMMANDS = table(
    ("CONFIG?", read_access, "CONF? access: the access limits and how many secrets per level"),
    (
        "CONFIG=",
        write_access,
        "CONF= access.accessLimits.IFACE LEVEL | access.secrets SECRET LEVEL ...: set access",
    ),
)
