"""Framing: cut a byte stream into complete SCPI messages.

Theory of operation
-------------------
A message ends at b"\\n", but only when no tag is open. A tag is `<name>` or `</name>` with name
characters [A-Za-z0-9_.-]; tags nest as a stack, and a closing tag must match the tag on top of the
stack. A `<` that does not begin such a tag (`Temperature < 37.5`, `<a b>`, `<>`) is plain text.

The decoder never looks at bytes one at a time in Python. Outside tags it asks `bytes.find` for the
next b"<" and cuts every whole line before it with one `bytes.split`; inside tags it asks only for
the next b"<", so a base64 body of many megabytes (which holds no `<`) is skipped by one C-level
search per `feed`. A `<` that opens no tag is stepped over by a regex search for the next real
tag, so a peer sending `<<<<...` costs C time, not a Python loop per byte. Every byte is scanned
once: `_scan` remembers how far the pending buffer has been read, so a message that arrives in
thousands of pieces costs the same as one that arrives whole. The only exception is a tag cut by
the end of a piece (`<quo`): the scan stops at its `<` and resumes there, and `MAX_TAG_NAME`
bounds what is re-read.

Streaming
---------
`feed_pieces` is `feed` for a relay that must not hold a whole message: a FILE:READ? reply of many
megabytes is passed on as it arrives. Complete messages come out whole, as `Piece(msg, True, True)`.
A message still incomplete after a feed, with at least one tag open and `stream_over` bytes or more
pending, is handed out as far as it has been scanned and dropped from the buffer; later pieces
continue it, and the one that reaches its final b"\\n" has `last=True`. The pieces of a message,
joined, are exactly what `feed` would have returned, however the bytes were split.

Two rules keep this as simple as `feed`. Streaming happens only inside a tag, where `max_line` does
not apply, so line accounting never spans a piece handed out. And the scan position is where a
piece may end: it stops at the `<` of a tag cut by the end of the data, so those bytes stay
pending until the tag is whole (`</quo` + `te.base64>` is still recognised). `max_message` counts
a message's bytes already handed out as well as those pending: the decoder no longer holds them,
but a peer may not send more of one message than the limit allows. A decoder is used with `feed`
or with `feed_pieces`; `feed` refuses to run while a message is half handed out.

Text and encodings
------------------
The decoder works on bytes and never decodes them. Its three structural bytes (`\\n`, `<`, `>`) are
ASCII, and UTF-8 never uses ASCII bytes inside a multi-byte character, so framing UTF-8 text as
bytes is exact. Undecodable bytes (a TLS ClientHello sent to a plain port, say) are framed like any
other bytes, within the limits; `messages.parse_command` / `parse_reply` then refuse them with a
`ParseError`. The decoder itself raises nothing but `FramingError`.

Memory
------
Pending bytes never exceed the limits by more than the piece being fed: a limit is checked while
that piece is scanned, and when one is passed the decoder raises `FramingError`, drops its buffer
and refuses all later input (the stream cannot be resynchronised: we no longer know whether we are
inside a tag).
"""

import re
from dataclasses import dataclass
from typing import NamedTuple

from labgate.scpi.errors import FramingError

KIB = 1024
MIB = 1024 * KIB

# The longest line the real client sends is a few hundred bytes (run_status()'s RET); replies
# outside tags are short too, since anything long (file lists, protocols, files) comes in a tag.
# 64 KiB leaves two orders of magnitude of room and still stops a peer that never sends b"\n".
DEFAULT_MAX_LINE = 64 * KIB

# FILE:WRITE / FILE:READ? carry whole files as base64 in one message. A 64 MiB file is 4/3 larger
# in base64 (about 85.4 MiB, plus line breaks every 76 characters: about 86.5 MiB); 96 MiB holds
# that with the command line and tags around it.
DEFAULT_MAX_MESSAGE = 96 * MIB

# The deepest nesting qslib writes is a protocol: <multiline.protocol> / <multiline.stage> /
# <multiline.step>, three levels. 32 is far beyond any real message and keeps the tag stack tiny.
DEFAULT_MAX_DEPTH = 32

# Longest tag name. qslib's longest is `multiline.protocol` (18). The bound is part of the grammar
# (a longer name is plain text, everywhere) so that a tag cut at the end of a piece, which is
# re-read when the next piece comes, costs at most this much to re-read: without it a peer
# sending `<aaaa...` one byte at a time would make every feed re-read the whole run.
MAX_TAG_NAME = 255

# A whole tag, anchored at a `<`.
_TAG = re.compile(rb"<(/?)([A-Za-z0-9_.-]{1,%d})>" % MAX_TAG_NAME)
# A tag cut short by the end of the data: it may still become a tag when more comes.
_TAG_CUT = re.compile(rb"</?[A-Za-z0-9_.-]{0,%d}\Z" % MAX_TAG_NAME)


@dataclass(frozen=True, slots=True, kw_only=True)
class Limits:
    """How much a peer may make the decoder hold. Each bound raises `FramingError` when passed."""

    max_line: int = DEFAULT_MAX_LINE
    """Bytes of a message outside any tag (from its start, or from where its last tag closed)."""
    max_message: int = DEFAULT_MAX_MESSAGE
    """Bytes of a whole message, tag bodies included, without its b"\\n"."""
    max_depth: int = DEFAULT_MAX_DEPTH
    """Tags open at once."""

    def __post_init__(self) -> None:
        for field in ("max_line", "max_message", "max_depth"):
            value = getattr(self, field)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"Limits.{field} must be a positive int, got {value!r}")


class Piece(NamedTuple):
    """Bytes of one message, handed out by `Decoder.feed_pieces` (see "Streaming" at the top).

    A named tuple rather than a frozen dataclass: one is built per message on the relay path,
    and a tuple costs half as much to build.
    """

    data: bytes
    """Bytes of the message, never including its final b"\\n"."""
    first: bool
    """This piece begins a message."""
    last: bool
    """This piece ends the message: its final b"\\n" was consumed."""


class Decoder:
    """Turn bytes, split anywhere, into complete raw messages (without their b"\\n").

    >>> d = Decoder()
    >>> d.feed(b"OK 1 <quote>\\na\\n</quo")
    []
    >>> d.feed(b"te>\\nNEXT 2\\n")
    [b'OK 1 <quote>\\na\\n</quote>', b'NEXT 2']
    """

    __slots__ = ("_buf", "_failed", "_limits", "_line_start", "_scan", "_stack", "_streamed")

    def __init__(self, limits: Limits | None = None) -> None:
        self._limits = limits if limits is not None else Limits()
        self._buf = bytearray()  # the pending, incomplete message (starts at a message start)
        self._scan = 0  # bytes of _buf already read
        self._line_start = 0  # where the current stretch outside tags began, in _buf
        self._stack: list[bytes] = []  # names of the open tags, innermost last
        self._streamed = 0  # bytes of the pending message already handed out by feed_pieces
        self._failed: str | None = None

    @property
    def limits(self) -> Limits:
        return self._limits

    @property
    def pending(self) -> int:
        """Bytes held for a message not yet complete (not counting pieces already handed out)."""
        return len(self._buf)

    @property
    def streaming(self) -> bool:
        """`feed_pieces` has handed out the start of a message whose end has not come yet."""
        return self._streamed > 0

    @property
    def open_tags(self) -> tuple[str, ...]:
        """Names of the tags open in the pending message, outermost first."""
        return tuple(name.decode("ascii") for name in self._stack)

    def feed(self, data: bytes) -> list[bytes]:
        """Add bytes from the peer; return every message they complete, in order."""
        if self._streamed:
            raise RuntimeError(
                "feed() called while feed_pieces() is handing out a message; "
                "use one of them for the whole stream"
            )
        self._check_open()
        if not data:
            return []
        work = self._work(data)
        messages, consumed = self._cut_or_refuse(work)
        self._keep(work, consumed)
        return messages

    def feed_pieces(self, data: bytes, *, stream_over: int) -> list[Piece]:
        """Like `feed`, but hand out a long message in tags as it arrives instead of holding it.

        A message still incomplete after this data, whose pending bytes reach `stream_over` while
        at least one tag is open, is handed out as it stands (its first piece, or a continuation)
        and dropped from the buffer; the rest of it follows in later pieces, the last with
        `last=True`. Complete messages come as `Piece(msg, True, True)`. The limits hold over the
        whole message, pieces already handed out included.
        """
        if isinstance(stream_over, bool) or not isinstance(stream_over, int):
            raise TypeError(f"stream_over must be an int, got {stream_over!r}")
        if stream_over < 1:
            raise ValueError(f"stream_over must be at least 1, got {stream_over}")
        self._check_open()
        if not data:
            return []
        work = self._work(data)
        continuing = self._streamed > 0
        messages, consumed = self._cut_or_refuse(work)
        pieces = [Piece(message, True, True) for message in messages]
        if continuing and pieces:
            pieces[0] = Piece(messages[0], False, True)
            self._streamed = 0
        # The scan position is a safe end: everything before it is read, and it stops at the `<`
        # of a tag cut short, so no tag is ever split between two pieces.
        safe = self._scan
        if self._stack and len(work) - consumed >= stream_over and safe > consumed:
            pieces.append(Piece(_slice(work, consumed, safe), self._streamed == 0, False))
            self._streamed += safe - consumed
            consumed = safe
        self._keep(work, consumed)
        return pieces

    def close(self) -> None:
        """End of stream: raise `FramingError` if a message was left incomplete."""
        self._check_open()
        if self._buf or self._streamed:
            tags = ", ".join(f"<{name}>" for name in self.open_tags) or "none"
            handed_out = f" ({self._streamed} already handed out)" if self._streamed else ""
            raise FramingError(
                f"stream ended inside a message: {len(self._buf)} bytes pending{handed_out} "
                f"without a final b'\\n' (open tags: {tags})"
            )

    def _check_open(self) -> None:
        if self._failed is not None:
            raise FramingError(f"the stream was already refused: {self._failed}")

    def _work(self, data: bytes) -> bytes | bytearray:
        """The bytes to scan: the pending buffer followed by `data`, copied at most once."""
        work: bytes | bytearray
        if not self._buf:
            work = data  # no copy at all until a message is cut out
        elif len(self._buf) <= len(data):
            # A short tail of the last read: one copy buys the fast bytes path. The copy is no
            # bigger than the data fed, so it adds O(1) per byte overall.
            work = bytes(self._buf) + data
            self._buf = bytearray()
        else:
            # A long message in progress (a base64 block): append, scan only the new part.
            self._buf += data
            work = self._buf
        return work

    def _cut_or_refuse(self, work: bytes | bytearray) -> tuple[list[bytes], int]:
        """`_cut`, and on a `FramingError` drop everything and refuse all later input."""
        try:
            return self._cut(work)
        except FramingError as exc:
            self._failed = str(exc)
            self._buf = bytearray()
            self._stack.clear()
            self._streamed = 0
            raise

    def _keep(self, work: bytes | bytearray, consumed: int) -> None:
        """Keep the unconsumed tail; positions are rebased to the new buffer start."""
        if work is self._buf:
            if consumed:
                del self._buf[:consumed]
        elif consumed < len(work):
            self._buf = bytearray(work[consumed:])
        self._scan -= consumed
        self._line_start -= consumed

    def _cut(self, work: bytes | bytearray) -> tuple[list[bytes], int]:
        """Scan `work` from `_scan`; return complete messages and how many bytes they used."""
        limits = self._limits
        stack = self._stack
        out: list[bytes] = []
        end = len(work)
        in_buffer = isinstance(work, bytearray)
        start = 0  # start of the current message
        # Where the current message began, counting bytes feed_pieces already handed out (it may
        # be negative): max_message is checked against this, so it bounds the whole message.
        origin = -self._streamed
        pos = self._scan
        line_start = self._line_start
        lt = -2  # the next b"<" at or after pos, once found (-1: there is none)
        while True:
            if lt < pos and lt != -1:
                lt = work.find(b"<", pos)
            if not stack:
                before_tag = end if lt == -1 else lt
                nl = work.find(b"\n", pos, before_tag)
                if nl != -1:
                    # Whole lines before the next `<`: the first may have begun in an earlier
                    # piece or before a tag; the rest are cut in one C-level split.
                    if nl - line_start > limits.max_line:
                        raise _line_too_long(limits, nl - line_start)
                    if nl - origin > limits.max_message:
                        raise _message_too_large(limits, nl - origin)
                    out.append(_copy(work, start, nl) if in_buffer else bytes(work[start:nl]))
                    last = work.rfind(b"\n", nl + 1, before_tag)
                    if last != -1:
                        lines = bytes(work[nl + 1 : last]).split(b"\n")
                        longest = max(map(len, lines))
                        if longest > limits.max_line:
                            raise _line_too_long(limits, longest)
                        if longest > limits.max_message:
                            raise _message_too_large(limits, longest)
                        out += lines
                        nl = last
                    origin = start = pos = line_start = nl + 1
                    continue
                if lt != -1 and lt - line_start > limits.max_line:
                    raise _line_too_long(limits, lt - line_start)
            if lt == -1:
                pos = end
                break
            match = _TAG.match(work, lt)
            if match is None:
                # Not a tag. Jump to the next real tag in C (a run of `<<<<` costs no Python
                # loop); outside tags only up to the next b"\n", which ends the message first.
                bound = end if stack else _find_or_end(work, b"\n", lt + 1, end)
                found = _TAG.search(work, lt + 1, bound)
                if found is not None:
                    pos = lt = found.start()
                    continue
                if bound < end:
                    pos, lt = bound, -2
                    continue
                cut = _TAG_CUT.search(work, max(lt, end - MAX_TAG_NAME - 2))
                pos = cut.start() if cut is not None else end  # a tag cut short: wait at its `<`
                break
            pos = self._tag(match, stack)
            if not stack:
                line_start = pos
            if pos - origin > limits.max_message:
                raise _message_too_large(limits, pos - origin)
        if not stack and end - line_start > limits.max_line:
            raise _line_too_long(limits, end - line_start)
        if end - origin > limits.max_message:
            raise _message_too_large(limits, end - origin)
        self._scan = pos
        self._line_start = line_start
        return out, start

    def _tag(self, match: re.Match[bytes], stack: list[bytes]) -> int:
        """Push or pop the tag `match` found; return where scanning goes on."""
        closing, name = match.group(1), match.group(2)
        if closing:
            if not stack or stack[-1] != name:
                expected = f"</{stack[-1].decode('ascii')}>" if stack else "no closing tag"
                raise FramingError(
                    f"closing tag </{name.decode('ascii')}> does not match the open tags: "
                    f"expected {expected}"
                )
            stack.pop()
        else:
            stack.append(name)
            if len(stack) > self._limits.max_depth:
                raise FramingError(
                    f"tag <{name.decode('ascii')}> nests {len(stack)} deep; "
                    f"the limit is max_depth={self._limits.max_depth}"
                )
        return match.end()


def _find_or_end(work: bytes | bytearray, needle: bytes, start: int, end: int) -> int:
    found = work.find(needle, start, end)
    return end if found == -1 else found


def _copy(work: bytes | bytearray, start: int, stop: int) -> bytes:
    """Cut a message out of the pending buffer with one copy (a bytearray slice would be two)."""
    with memoryview(work) as view:
        return view[start:stop].tobytes()


def _slice(work: bytes | bytearray, start: int, stop: int) -> bytes:
    """`work[start:stop]` as bytes: no copy when that is all of a bytes object, else one."""
    if isinstance(work, bytes):
        return work[start:stop]  # slicing all of a bytes object returns it as it is
    return _copy(work, start, stop)


def _line_too_long(limits: Limits, size: int) -> FramingError:
    return FramingError(
        f"line outside tags is {size} bytes without b'\\n'; the limit is max_line={limits.max_line}"
    )


def _message_too_large(limits: Limits, size: int) -> FramingError:
    return FramingError(
        f"message is {size} bytes and still growing; the limit is max_message={limits.max_message}"
    )
