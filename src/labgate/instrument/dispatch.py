"""Command tables: canonical command name -> handler and the line `HELP?` shows for it.

Each `*_commands` module (and `expansion`, for `RET`) ends with its own `COMMANDS = table(...)`;
`commands` merges them into the one table the simulator serves. Nothing registers itself on
import: a table is a value, and `merge` refuses two tables that answer the same command, naming
it and both tables, instead of letting the one imported last win.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING

from labgate.instrument.errors import SimulatorError
from labgate.scpi import values
from labgate.scpi.messages import Command

if TYPE_CHECKING:
    from labgate.instrument.outcomes import Outcome
    from labgate.instrument.session import Session

Handler = Callable[["Session", Command], Awaitable["Outcome"]]


@dataclass(frozen=True, slots=True, kw_only=True)
class Entry:
    """One command the simulator answers: what runs it and what `HELP?` says about it."""

    handler: Handler
    help: str


CommandTable = Mapping[str, Entry]
"""Canonical command name (see `labgate.scpi.names`) -> entry; read-only."""

Row = tuple[str | tuple[str, ...], Handler, str]
"""(canonical name or names, handler, help line) as a module writes its table."""


class DuplicateCommand(SimulatorError):
    """Two rows or two tables answer the same command."""


def table(*rows: Row) -> CommandTable:
    """A module's table from its rows; a name given twice raises `DuplicateCommand`."""
    entries: dict[str, Entry] = {}
    for names, handler, help in rows:
        for name in (names,) if isinstance(names, str) else names:
            if name in entries:
                raise DuplicateCommand(
                    f"command {name!r} is given twice: to {_named(entries[name].handler)} "
                    f"and to {_named(handler)}"
                )
            entries[name] = Entry(handler=handler, help=help)
    return MappingProxyType(entries)


def merge(tables: Mapping[str, CommandTable]) -> CommandTable:
    """One table from the tables named by their keys (`{"file_commands": ...}`); a command in
    two of them raises `DuplicateCommand` naming the command and both tables."""
    merged: dict[str, Entry] = {}
    source: dict[str, str] = {}
    for origin, entries in tables.items():
        for name, entry in entries.items():
            if name in merged:
                raise DuplicateCommand(
                    f"command {name!r} is in the tables of both {source[name]} and {origin}"
                )
            merged[name] = entry
            source[name] = origin
    return MappingProxyType(merged)


def _named(handler: Handler) -> str:
    return f"{handler.__module__}.{handler.__qualname__}"


def option(command: Command, key: str, default: str | None = None) -> str | None:
    """An option's value, unquoted (`-exclusive=false` -> `false`)."""
    raw = command.option(key)
    return default if raw is None else values.unquote(raw)


def flag(command: Command, key: str) -> bool:
    value = option(command, key, "false")
    return (value or "").lower() in ("true", "yes", "on", "1")
