"""The line protocol an instrument speaks, as the gateway needs it: one small interface.

The gateway's connection handling (`server`, `session`, `upstream`, `refusal`, `reach`) knows
nothing of the instrument's wire format. Everything that does (how messages are framed, how the
gateway logs in, the greeting and refusal lines, the access levels' names, the policy table and
the session filter built on it) is a `LineProtocol`, and `protocol_for` says which one an
instrument speaks. Today that is always QuantStudio's SCPI (`quantstudio.QUANTSTUDIO`); a second
line protocol would be a new module with a `LineProtocol` of its own, and an instrument's
configuration would name it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import asyncio

    from labgate.gateway.config import FramingLimits, InstrumentConfig
    from labgate.gateway.filter import SessionFilter
    from labgate.gateway.upstream import InstrumentStream, UpstreamConnection
    from labgate.scpi.access import AccessLevel


# Bytes of one message as a decoder hands them out: (data, first, last); the whole of it when
# `first` and `last`, else a part of a long one.
Piece = tuple[bytes, bool, bool]


class MessageDecoder(Protocol):
    """Bytes in, complete messages (or pieces of long ones) out; raises the core's
    `FramingError` when the peer breaks the framing or a limit."""

    @property
    def pending(self) -> int: ...

    @property
    def streaming(self) -> bool: ...

    def feed(self, data: bytes) -> list[bytes]: ...

    def feed_pieces(self, data: bytes, *, stream_over: int) -> Sequence[Piece]: ...

    def close(self) -> None: ...


class SessionFilterFactory(Protocol):
    """Build the per-session policy (see `filter.SessionFilter`)."""

    def __call__(
        self,
        *,
        grant: AccessLevel,
        limit_reason: str,
        next_ident: int,
        keep_upstream: bool,
        identity: str,
        instrument: str,
    ) -> SessionFilter: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class LineProtocol:
    """What the gateway needs of an instrument's line protocol, as functions and values."""

    name: str
    # A decoder for messages on either side, within the configured framing limits.
    decoder: Callable[[FramingLimits], MessageDecoder]
    # What a refused client may send before it is answered (its first command, read whole).
    first_command_limits: FramingLimits
    # The greeting a client whose session is refused gets instead of the instrument's.
    refused_greeting: Callable[[str], bytes]  # (error class) -> line
    # The ident of a client's first message, 0 when it is not a command (raises nothing).
    first_ident: Callable[[bytes], int]
    # An error line answering `ident` (0: no command of the client's is to blame).
    error_line: Callable[[int, str, str], bytes]  # (ident, error class, reason) -> line
    # The command name the client ends a session with, as the filter's verdicts name it.
    quit_command: str
    # The greeting read and the gateway's login, on a fresh connection.
    login: Callable[
        [InstrumentConfig, InstrumentStream, asyncio.StreamWriter], Awaitable[UpstreamConnection]
    ]
    # The line that tells the instrument the gateway is done with a connection.
    goodbye: Callable[[int], bytes]  # (next ident) -> line
    # The instrument's own number for a connection, read from its greeting.
    session_number: Callable[[bytes], str | None]
    # The highest level, at most `up_to`, the gateway's login reaches on a logged-in connection.
    highest_level: Callable[
        [UpstreamConnection, InstrumentConfig, AccessLevel], Awaitable[AccessLevel]
    ]
    # The levels' names, as the instrument spells them, and back (ValueError naming the text).
    level_name: Callable[[AccessLevel], str]
    parse_level: Callable[[str], AccessLevel]
    # The policy table the filter judges every command by (QuantStudio's: `scpi.access.LABGATE`).
    policy: object
    # The per-session filter: policy on top of the connection's protocol state.
    session_filter: SessionFilterFactory


def protocol_for(instrument: InstrumentConfig) -> LineProtocol:
    """The line protocol `instrument` speaks. Every instrument speaks QuantStudio's today; its
    configuration could name another later."""
    from labgate.gateway.quantstudio import QUANTSTUDIO  # imported late: it builds on `upstream`

    return QUANTSTUDIO
