"""The table from canonical command name to handler, filled by the `*_commands` modules."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from labgate.scpi import values
from labgate.scpi.messages import Command

if TYPE_CHECKING:
    from labgate.instrument.session import Outcome, Session

Handler = Callable[["Session", Command], Awaitable["Outcome"]]

HANDLERS: dict[str, Handler] = {}
DESCRIPTIONS: dict[str, str] = {}


def handles(*names: str, help: str) -> Callable[[Handler], Handler]:
    """Register a handler under canonical names, with the line `HELP?` shows for it."""

    def register(handler: Handler) -> Handler:
        for name in names:
            HANDLERS[name] = handler
            DESCRIPTIONS[name] = help
        return handler

    return register


def option(command: Command, key: str, default: str | None = None) -> str | None:
    """An option's value, unquoted (`-exclusive=false` -> `false`)."""
    raw = command.option(key)
    return default if raw is None else values.unquote(raw)


def flag(command: Command, key: str) -> bool:
    value = option(command, key, "false")
    return (value or "").lower() in ("true", "yes", "on", "1")
