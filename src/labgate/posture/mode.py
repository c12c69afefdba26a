"""The `[secure]` table: three switches and the networks clients may come from.

- `pwd`: the enhanced password policy, idle timeouts for console and API sessions, and stored
  passwords that fail the policy forced to change at their next login.
- `fw`: clients only from `client_networks` (checked at accept, before any TLS byte), and
  listeners only on the addresses configured (never a wildcard such as 0.0.0.0 or ::).
- `full`: Full and Administrator refused over the network whatever the grants say: every
  session's level is capped at Controller in the one admission function.

A new installation writes the table with every switch on. A configuration without the table is an
existing one from before the mode: it keeps what it had (every switch off), and the process says so
once when it starts (`LEGACY_NOTICE`). Within the table, an omitted switch is on (the safe default).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, PlainValidator

from labgate.scpi.access import AccessLevel

Feature = Literal["pwd", "fw", "full"]
FEATURES: tuple[Feature, ...] = ("pwd", "fw", "full")
# The highest level a session may have over the network while `full` is on.
NETWORK_CEILING = AccessLevel.CONTROLLER
FULL_REASON = (
    "labgate secure full is on: Full and Administrator are refused over the network "
    f"(at most {NETWORK_CEILING.label}), whatever the grants say"
)
# Under `pwd`, API and console logins idle out: a user's access token lasts at most 5 minutes and
# a login not refreshed within 15 minutes ends (its refresh token expires).
PWD_ACCESS_SECONDS = 300
PWD_IDLE_SECONDS = 900
LEGACY_NOTICE = (
    "this configuration has no [secure] table, so it keeps what it had: enhanced security is "
    "off (pwd, fw and full); `labgate secure +all --config FILE` turns it on"
)
# Loopback only, until an operator names the networks clients really come from.
DEFAULT_CLIENT_NETWORKS = ("127.0.0.0/8", "::1/128")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class SwitchError(ValueError):
    """A `labgate secure` argument that is not `[+|-]pwd|fw|full|all`."""


def _strict_bool(value: object) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"expected true or false, got {value!r}")
    return value


def _networks(value: object) -> tuple[Network, ...]:
    if isinstance(value, str) or not isinstance(value, list | tuple):
        raise ValueError(f'expected a list of networks such as ["10.1.0.0/16"], got {value!r}')
    networks: list[Network] = []
    for item in value:
        if isinstance(item, ipaddress.IPv4Network | ipaddress.IPv6Network):
            networks.append(item)
            continue
        if not isinstance(item, str):
            raise ValueError(f'expected a network such as "10.1.0.0/16", got {item!r}')
        try:
            networks.append(ipaddress.ip_network(item, strict=True))
        except ValueError as exc:
            raise ValueError(f"{item!r} is not a network ({exc})") from None
    return tuple(networks)


Switch = Annotated[bool, BeforeValidator(_strict_bool)]


class SecureConfig(BaseModel):
    """One `[secure]` table. `present` is false for a configuration written before the mode."""

    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True)

    pwd: Switch = True
    fw: Switch = True
    full: Switch = True
    client_networks: Annotated[tuple[Network, ...], PlainValidator(_networks)] = _networks(
        list(DEFAULT_CLIENT_NETWORKS)
    )
    present: bool = True  # not a key of the file: set by `from_table`

    @classmethod
    def from_table(cls, table: object) -> SecureConfig:
        """The mode a file's `[secure]` table (None when it has none) asks for."""
        if table is None:
            return cls(pwd=False, fw=False, full=False, present=False)
        if not isinstance(table, dict):
            raise ValueError("[secure]: expected a table")
        if "present" in table:
            raise ValueError("[secure].present: unknown option")
        return cls.model_validate(table)

    def enabled(self) -> tuple[Feature, ...]:
        on: list[Feature] = []
        if self.pwd:
            on.append("pwd")
        if self.fw:
            on.append("fw")
        if self.full:
            on.append("full")
        return tuple(on)

    def describe(self) -> str:
        """What `labgate secure` prints: `all`, the switches on, or `none`."""
        on = self.enabled()
        if len(on) == len(FEATURES):
            return "all"
        return " ".join(on) if on else "none"

    def admits_source(self, host: str) -> bool:
        """Whether a client from address `host` may connect (always, while `fw` is off)."""
        if not self.fw:
            return True
        try:
            address = ipaddress.ip_address(host.split("%", 1)[0])
        except ValueError:
            return False  # not an address (a Unix socket, "unknown"): not from a listed network
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped  # ::ffff:10.0.0.1 is 10.0.0.1, and judged as such
        return any(address in network for network in self.client_networks)


@dataclass(frozen=True, slots=True, kw_only=True)
class Capped:
    """A level after the mode: `reason` says why it is below what was granted ("" if not)."""

    level: AccessLevel
    reason: str


def cap_level(mode: SecureConfig, granted: AccessLevel) -> Capped:
    """The most a network session granted `granted` may have under `mode`."""
    if mode.full and granted > NETWORK_CEILING:
        return Capped(level=NETWORK_CEILING, reason=FULL_REASON)
    return Capped(level=granted, reason="")


@dataclass(frozen=True, slots=True, kw_only=True)
class Switches:
    """Parsed `labgate secure` arguments: what to turn on and off."""

    on: frozenset[Feature]
    off: frozenset[Feature]


def parse_switches(arguments: Iterable[str]) -> Switches:
    """`+pwd -fw all ...` (no sign means on); SwitchError naming a bad one."""
    on: set[Feature] = set()
    off: set[Feature] = set()
    for argument in arguments:
        sign, name = ("-", argument[1:]) if argument.startswith("-") else ("+", argument)
        name = name.removeprefix("+") if sign == "+" else name
        if name == "all":
            features: tuple[Feature, ...] = FEATURES
        elif name in FEATURES:
            features = (name,)
        else:
            raise SwitchError(f"{argument!r}: expected [+|-]pwd, [+|-]fw, [+|-]full or [+|-]all")
        target, other = (on, off) if sign == "+" else (off, on)
        target.update(features)
        other.difference_update(features)  # the last word on a switch wins
    return Switches(on=frozenset(on), off=frozenset(off))
