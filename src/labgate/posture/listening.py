"""The TCP sockets listening on this machine, as the kernel lists them (`/proc/net/tcp{,6}`).

No dependency and no child process: the kernel's own table is read and parsed. Where there is no
such table (not Linux, or /proc not mounted) `listening()` raises `NotListable`, and the caller
says the check could not be made rather than guessing.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path

_LISTEN = "0A"  # TCP_LISTEN in the kernel's `st` column
_TABLES = ("tcp", "tcp6")


class NotListable(OSError):
    """The kernel's socket table could not be read here."""


@dataclass(frozen=True, slots=True, kw_only=True, order=True)
class Listening:
    host: str  # as ipaddress prints it: 127.0.0.1, ::, ::1
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def _address(text: str) -> str:
    raw = bytes.fromhex(text)
    # The kernel prints each 32-bit word in host (little-endian) order.
    ordered = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    return str(ipaddress.ip_address(ordered))


def parse_table(text: str) -> set[Listening]:
    """The LISTEN rows of one `/proc/net/tcp` or `tcp6` text."""
    found: set[Listening] = set()
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 4 or fields[3] != _LISTEN:
            continue
        host, _, port = fields[1].partition(":")
        found.add(Listening(host=_address(host), port=int(port, 16)))
    return found


def listening(proc: Path = Path("/proc/net")) -> set[Listening]:
    """Every listening TCP socket on this machine (this network namespace)."""
    found: set[Listening] = set()
    read = 0
    for name in _TABLES:
        try:
            found |= parse_table((proc / name).read_text(encoding="ascii"))
            read += 1
        except FileNotFoundError:
            continue  # no IPv6 in this kernel: tcp alone is the whole table
        except OSError as exc:
            raise NotListable(f"cannot read {proc / name}: {exc.strerror}") from exc
    if not read:
        raise NotListable(f"no socket table under {proc} (not Linux?); the check cannot be made")
    return found


@dataclass(frozen=True, slots=True, kw_only=True)
class Configured:
    """A listener a configuration names: `key` as spelt in the file."""

    key: str
    host: str
    port: int

    def __str__(self) -> str:
        return str(Listening(host=self.host, port=self.port))


@dataclass(frozen=True, slots=True, kw_only=True)
class Comparison:
    verified: tuple[str, ...]
    drift: tuple[str, ...]
    unchecked: tuple[str, ...]


def _hosts(host: str) -> set[str]:
    if host == "localhost":
        return {"127.0.0.1", "::1"}
    try:
        return {str(ipaddress.ip_address(host))}
    except ValueError:
        return {host}


def compare(configured: list[Configured], found: set[Listening]) -> Comparison:
    """Whether the sockets listening on the configured ports are exactly the configured ones."""
    verified: list[str] = []
    drift: list[str] = []
    unchecked: list[str] = []
    by_port: dict[int, set[str]] = {}
    for item in configured:
        if item.port == 0:
            unchecked.append(f"{item.key} = {item} asks for any free port: not checked")
            continue
        hosts = _hosts(item.host)
        by_port.setdefault(item.port, set()).update(hosts)
        if any(s.port == item.port and s.host in hosts for s in found):
            verified.append(f"{item.key} = {item} is listening")
        else:
            drift.append(f"{item.key} = {item}: nothing listens there (is it running?)")
    for socket in sorted(found):
        allowed = by_port.get(socket.port)
        if allowed is not None and socket.host not in allowed:
            drift.append(
                f"{socket} listens on a configured port but outside the configured address "
                f"({', '.join(sorted(allowed))})"
            )
    return Comparison(verified=tuple(verified), drift=tuple(drift), unchecked=tuple(unchecked))
