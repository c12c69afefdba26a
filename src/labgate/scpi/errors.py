"""The scpi core's exceptions.

Two kinds, as in h11: the peer misbehaved (`FramingError`, `ParseError`: the bytes we were given are
not the protocol), or the caller asked for something the protocol cannot carry (`MessageError`).
Every message names the offending input and what was expected.
"""


class ScpiError(Exception):
    """Base of every error raised by `labgate.scpi`."""


class FramingError(ScpiError):
    """The peer sent bytes that the framing grammar or its limits refuse; the stream is lost."""


class ParseError(ScpiError):
    """A complete message that is malformed; the stream itself may still be usable."""


class MessageError(ScpiError, ValueError):
    """A message or value that cannot be written as protocol text (the caller's mistake)."""
