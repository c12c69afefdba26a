"""The protocol state of one relayed connection, with no I/O: idents, pending replies, and how a
reply is rewritten for the client it answers.

Theory of operation
-------------------
A holder (the gateway) speaks to the instrument on a connection of its own and numbers the
commands it sends there itself: its login used the first idents, and a command of its own (an
`ACC` that brings the instrument to the session's level) may go out between two of the client's.
`Exchange` remembers, for every ident it handed out, the `Pending` command: whose it is (the
client's ident, or None for the holder's own), what it was, when it went.

`receive(raw)` reads one framed instrument message and says what it means, as a `Reply`: the
bytes to send the client (the ident rewritten to the client's), the pending command a final
reply ends, its status, or why the message belongs to no command (`stray`: a malformed reply, a
second greeting, an ident nobody sent). A `MESSage` passes unchanged; a `NEXT` to the holder's
own command, and any final reply to one, are not relayed.

The fast head parse: `COMMAND_HEAD` finds a client command's ident and where the command after
it begins, so a command seen before is known by those bytes. An `OK` or `WARNing` whose head is
written exactly as the instrument writes it and whose bytes are ASCII says exactly what
`parse_reply` would, so only its ident is read and rewritten, and the body goes to the client as
a view of the bytes received (no decoding and no copy of a file of many megabytes). Every other
message goes through `parse_reply`. Both ways end in the same `Reply`, so a holder has one path
for replies. `start_long(first)` is that fast path for the first piece of a reply too long to
hold whole.
"""

import re
from dataclasses import dataclass, replace
from typing import NamedTuple

from labgate.scpi.access import AccessLevel
from labgate.scpi.errors import ParseError
from labgate.scpi.messages import Error, Message, Next, Ok, Ready, Warning, parse_reply, serialise

# `OK 12 ...` / `WARNing 12 ...` as the instrument writes them: the word exactly so, the ident
# without leading zeros, then a space or the end. Anything else goes through `parse_reply`.
_CANONICAL_FINAL = re.compile(rb"(OK|WARNing) (0|[1-9][0-9]{0,17})(?= |\Z)")
_STATUS = {Ok: "OK", Error: "ERRor", Warning: "WARNing"}
# A client's command as `parse_command` reads its head: the ident, one space, then the command.
# A holder that knows a command by its bytes after the ident finds them with this (one C-level
# match), without parsing the command again.
COMMAND_HEAD = re.compile(rb"([0-9]{1,18}) (?=[^\s])")


@dataclass(slots=True, kw_only=True)
class Pending:
    """A command sent on the connection whose final reply has not come yet."""

    client_ident: int | None  # None: the holder's own command; its replies are not relayed
    command: str  # its canonical name, as the holder records it
    sent_at: float
    sets_level: AccessLevel | None = None  # an ACC: the level it sets once the instrument agrees
    must_succeed: str = ""  # a holder's command the session cannot do without: why


class Reply(NamedTuple):
    """What one instrument message means for the client. A named tuple: one is built per reply,
    on the relay's hot path, and a tuple costs half what a frozen dataclass does."""

    parts: tuple[bytes | memoryview, ...] = ()
    """For the client, in order (none: nothing to send); a big body is a view of the bytes."""
    command: str | None = None
    """The client's command this final reply ends, as the holder recorded it."""
    status: str | None = None
    """`OK`, `ERRor` or `WARNing` for a final reply to a client's command."""
    sent_at: float | None = None
    """When that command went out, for latency."""
    ended: Pending | None = None
    """The pending command this final reply ends, the holder's own included."""
    ok: bool = False
    """The final reply is an OK."""
    stray: str = ""
    """Why the message belongs to no command the holder knows of ("" when it does)."""

    @property
    def to_client(self) -> bytes:
        """Everything the client is sent, in one piece (for tests and small replies)."""
        return b"".join(self.parts)


_NOTHING = Reply()
_UNKNOWN = Reply(stray="the instrument answered a command nobody sent")


class Exchange:
    """Idents handed out on one connection and the commands still awaiting their final reply."""

    __slots__ = ("next_ident", "pending")

    def __init__(self, next_ident: int = 0) -> None:
        self.next_ident = next_ident
        self.pending: dict[int, Pending] = {}

    def take(self, pending: Pending) -> int:
        """The ident `pending` goes out under; it awaits its final reply from now on."""
        ident = self.next_ident
        self.next_ident = ident + 1
        self.pending[ident] = pending
        return ident

    def receive(self, raw: bytes) -> Reply:
        """What the framed instrument message `raw` (without its b"\\n") means for the client."""
        quick = canonical_final(raw)
        if quick is not None:
            return self._final(raw, *quick)
        try:
            reply = parse_reply(raw)
        except ParseError:
            # The instrument's garbage is not the client's business.
            return Reply(stray="the instrument sent a malformed reply")
        if isinstance(reply, Message):
            return Reply((raw, b"\n"), stray="the instrument sent MESSage events")
        if isinstance(reply, Ready):  # only the first greeting is relayed, at session start
            return Reply(stray="the instrument greeted again")
        pending = self.pending.get(reply.ident)
        if pending is None:
            return _UNKNOWN
        if isinstance(reply, Next):
            if pending.client_ident is None:
                return _NOTHING
            return Reply((serialise(Next(ident=pending.client_ident)),))
        del self.pending[reply.ident]
        ok = isinstance(reply, Ok)
        if pending.client_ident is None:
            return Reply(ended=pending, ok=ok)
        out = serialise(replace(reply, ident=pending.client_ident))
        return Reply((out,), pending.command, _STATUS[type(reply)], pending.sent_at, pending, ok)

    def start_long(self, first: bytes) -> Reply | None:
        """For the first piece of a reply too long to hold: when it is a canonical ASCII
        OK/WARNing to a client's command (and not one the session cannot do without), its
        rewritten start, to send now (the caller sends the rest as it comes, then b"\\n"); else
        None, and the caller gathers the whole reply for `receive`."""
        quick = canonical_final(first)
        if quick is None:
            return None
        pending = self.pending.get(quick[1])
        if pending is None or pending.client_ident is None or pending.must_succeed:
            return None
        return self._final(first, *quick, end=b"")

    def _final(
        self, raw: bytes, word: bytes, ident: int, body_at: int, end: bytes = b"\n"
    ) -> Reply:
        pending = self.pending.pop(ident, None)
        if pending is None:
            return _UNKNOWN
        ok = word == b"OK"
        if pending.client_ident is None:
            return Reply(ended=pending, ok=ok)
        head = b"%s %d" % (word, pending.client_ident)
        status = "OK" if ok else "WARNing"
        parts = (head, memoryview(raw)[body_at:], end)
        return Reply(parts, pending.command, status, pending.sent_at, pending, ok)


def canonical_final(raw: bytes) -> tuple[bytes, int, int] | None:
    """(word, ident, where the rest begins) of a canonical OK/WARNing, else None.

    Only ASCII qualifies (`isascii` is a C scan that allocates nothing): ASCII is valid UTF-8,
    so `parse_reply` would accept the same message and return the same word, ident and text.
    """
    match = _CANONICAL_FINAL.match(raw)
    if match is None or not raw.isascii():
        return None
    return match.group(1), int(match.group(2)), match.end()
