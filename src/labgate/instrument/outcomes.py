"""What a command handler answers: a reply now, or `Deferred` work whose reply comes later.

Handlers and the session both use these; keeping them apart from `session` is what lets the
command modules import no session code at run time.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from labgate.instrument.errors import SimulatorError
from labgate.scpi.messages import Error, Ok


@dataclass(frozen=True, slots=True, kw_only=True)
class Deferred:
    """Answer `NEXT n` now, then the reply `work()` gives."""

    work: Callable[[], Awaitable[Ok | Error]]


Outcome = Ok | Error | Deferred


class Refusal(SimulatorError):
    """The command cannot run (a substitution in it failed); `reply` is the `ERRor` it answers
    with."""

    def __init__(self, reply: Error) -> None:
        super().__init__(reply.message)
        self.reply = reply


def error(ident: int, error_class: str | None, message: str) -> Error:
    """An `ERRor` reply whose message is safe to frame (one line, no tags)."""
    return Error(ident=ident, error_class=error_class, message=one_line(message))


def one_line(text: str) -> str:
    return text.replace("\n", " ").replace("<", "(").replace(">", ")")[:500]
