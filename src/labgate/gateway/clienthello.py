"""The server name a client asks for, read from its TLS ClientHello as the bytes arrive (sans-IO).

OpenSSL reports the server name of a resumed TLS 1.2 session, not the one the client sent this
time (in TLS 1.2 the name belongs to the session), so on a listener shared by several instruments
a session made for one could be resumed under the name of another and be served as the first.
The gateway therefore reads the name from the ClientHello itself, before OpenSSL sees a byte, and
holds the two against each other. The same read tells a silent or trickling connection (no
complete ClientHello yet) from one already in its handshake, which decides whom to shed first.

Only what the name needs is parsed: TLS records of type handshake, the first handshake message
(which must be a ClientHello), its fixed fields, then the extensions up to server_name (RFC 6066,
section 3). Anything else is `NotAHello`: the bytes go on to OpenSSL, which refuses them itself.
"""

from __future__ import annotations

from dataclasses import dataclass

_HANDSHAKE = 22  # TLS record content type
_CLIENT_HELLO = 1  # handshake message type
_SERVER_NAME = 0  # extension type
_HOST_NAME = 0  # server name type
_RECORD_HEADER = 5
# A ClientHello is a few hundred bytes; with post-quantum key shares about 2 KiB. 16 KiB (one
# full record) leaves room for every real one and bounds what a connection may make us hold.
MAX_HELLO = 16 * 1024


@dataclass(frozen=True, slots=True, kw_only=True)
class Incomplete:
    """More bytes are needed."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Hello:
    server_name: str | None  # the host_name asked for, lower case; None when none was sent


@dataclass(frozen=True, slots=True, kw_only=True)
class NotAHello:
    reason: str


Reading = Incomplete | Hello | NotAHello

INCOMPLETE = Incomplete()


def read_hello(data: bytes) -> Reading:
    """What the bytes received so far say: `Incomplete` until the whole ClientHello is there."""
    # The usual case, read without copies: one record that holds the whole ClientHello.
    if len(data) >= 9 and data[0] == _HANDSHAKE and data[1] == 3 and data[5] == _CLIENT_HELLO:
        fragment = int.from_bytes(data[3:5], "big")
        length = int.from_bytes(data[6:9], "big")
        if 4 + length <= fragment <= MAX_HELLO and len(data) >= _RECORD_HEADER + fragment:
            return _parse_hello(memoryview(data)[9 : 9 + length])
    message = bytearray()
    offset = 0
    while True:
        if len(message) >= 4:
            length = int.from_bytes(message[1:4], "big")
            if len(message) >= 4 + length:
                return _parse_hello(memoryview(message)[4 : 4 + length])
        if len(data) - offset < _RECORD_HEADER:
            return INCOMPLETE
        if data[offset] != _HANDSHAKE:
            return NotAHello(reason=f"a TLS record of type {data[offset]}, not a handshake")
        if data[offset + 1] != 3:
            return NotAHello(reason="not a TLS record (SSL 2 or another protocol)")
        fragment = int.from_bytes(data[offset + 3 : offset + 5], "big")
        if fragment == 0 or fragment > MAX_HELLO:
            return NotAHello(reason=f"a handshake record of {fragment} bytes")
        start = offset + _RECORD_HEADER
        # Judged as soon as its first four bytes are in, whole record or not.
        wrong = _wrong_header(bytes(message) + data[start : start + fragment])
        if wrong is not None:
            return wrong
        if len(data) < start + fragment:
            return INCOMPLETE
        message += data[start : start + fragment]
        offset = start + fragment


def _wrong_header(message: bytes) -> NotAHello | None:
    """Why the handshake message beginning `message` cannot be a ClientHello we read, if so."""
    if len(message) < 4:
        return None
    if message[0] != _CLIENT_HELLO:
        return NotAHello(reason=f"first handshake message is of type {message[0]}")
    length = int.from_bytes(message[1:4], "big")
    if length > MAX_HELLO:
        return NotAHello(reason=f"a ClientHello of {length} bytes (at most {MAX_HELLO})")
    return None


def _parse_hello(body: bytes | memoryview) -> Hello | NotAHello:
    reader = _Reader(body)
    try:
        reader.skip(2 + 32)  # legacy_version, random
        session_id = reader.number(1)
        if session_id > 32:
            return NotAHello(reason=f"a session id of {session_id} bytes (at most 32)")
        reader.skip(session_id)
        reader.skip(reader.number(2))  # cipher_suites
        reader.skip(reader.number(1))  # legacy_compression_methods
        if reader.left == 0:
            return Hello(server_name=None)  # no extensions at all
        extensions = _Reader(reader.take(reader.number(2)))
        while extensions.left:
            kind = extensions.number(2)
            content = extensions.take(extensions.number(2))
            if kind == _SERVER_NAME:
                return Hello(server_name=_host_name(content))
    except _Short:
        return NotAHello(reason="a ClientHello cut short inside its own lengths")
    except UnicodeDecodeError:
        return NotAHello(reason="a server name that is not ASCII")
    return Hello(server_name=None)


def _host_name(content: bytes | memoryview) -> str | None:
    names = _Reader(content)
    entries = _Reader(names.take(names.number(2)))
    while entries.left:
        kind = entries.number(1)
        value = entries.take(entries.number(2))
        if kind == _HOST_NAME:
            return bytes(value).decode("ascii").lower()
    return None


class _Short(Exception):
    """A length points past the end of what holds it."""


class _Reader:
    def __init__(self, data: bytes | memoryview) -> None:
        self._data = data
        self._at = 0

    @property
    def left(self) -> int:
        return len(self._data) - self._at

    def take(self, count: int) -> bytes | memoryview:
        if count > self.left:
            raise _Short
        start, self._at = self._at, self._at + count
        return self._data[start : self._at]

    def skip(self, count: int) -> None:
        self.take(count)

    def number(self, size: int) -> int:
        return int.from_bytes(self.take(size), "big")
