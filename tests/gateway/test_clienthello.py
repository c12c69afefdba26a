"""Reading the server name from a ClientHello as it arrives: real ClientHellos made by OpenSSL,
cut at every byte and spread over records, and whatever else a peer may send instead."""

from __future__ import annotations

import contextlib
import ssl

from hypothesis import given
from hypothesis import strategies as st

from labgate.gateway.clienthello import (
    MAX_HELLO,
    Hello,
    Incomplete,
    NotAHello,
    read_hello,
)


def _client_hello(
    server_name: str | None, version: ssl.TLSVersion = ssl.TLSVersion.TLSv1_3
) -> bytes:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.maximum_version = version
    tls = context.wrap_bio(
        ssl.MemoryBIO(), outgoing := ssl.MemoryBIO(), server_hostname=server_name
    )
    with contextlib.suppress(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


def _records(hello: bytes, size: int) -> bytes:
    """The same handshake message in records of at most `size` bytes (as a client may send)."""
    body = hello[5:]
    out = b""
    for at in range(0, len(body), size):
        piece = body[at : at + size]
        out += hello[:3] + len(piece).to_bytes(2, "big") + piece
    return out


def test_the_server_name_is_read_once_the_whole_hello_is_there() -> None:
    hello = _client_hello("QS5-Plain")
    for cut in range(len(hello)):
        assert read_hello(hello[:cut]) == Incomplete()
    assert read_hello(hello) == Hello(server_name="qs5-plain")
    assert read_hello(hello + b"more bytes after it") == Hello(server_name="qs5-plain")


def test_a_hello_spread_over_many_records_is_read_whole() -> None:
    hello = _client_hello("qs5-tls", ssl.TLSVersion.TLSv1_2)
    for size in (1, 7, 100):
        spread = _records(hello, size)
        assert read_hello(spread[:-1]) == Incomplete()
        assert read_hello(spread) == Hello(server_name="qs5-tls")


def test_a_hello_without_a_server_name() -> None:
    assert read_hello(_client_hello(None)) == Hello(server_name=None)


def test_what_is_not_a_hello_is_said_so() -> None:
    assert isinstance(read_hello(b"GET / HTTP/1.1\r\n\r\n"), NotAHello)
    assert isinstance(read_hello(b"\x80\x2e\x01\x00\x02" + b"\x00" * 60), NotAHello)  # SSL 2
    assert isinstance(read_hello(b"\x15\x03\x03\x00\x02\x02\x28"), NotAHello)  # an alert
    too_long = b"\x16\x03\x01\x40\x00\x01" + (MAX_HELLO + 1).to_bytes(3, "big")
    assert isinstance(read_hello(too_long), NotAHello)
    # A hello whose own lengths point past its end.
    hello = bytearray(_client_hello("qs5-plain"))
    hello[5 + 4 + 34] = 0xFF  # the session id's length
    assert isinstance(read_hello(bytes(hello)), NotAHello)


@given(st.binary(max_size=512))
def test_any_bytes_give_an_answer_never_an_exception(data: bytes) -> None:
    assert isinstance(read_hello(data), Incomplete | Hello | NotAHello)


@given(st.binary(min_size=1, max_size=64), st.integers(min_value=0, max_value=600))
def test_a_real_hello_with_bytes_changed_gives_an_answer(noise: bytes, at: int) -> None:
    hello = bytearray(_client_hello("qs5-plain"))
    at %= len(hello)
    hello[at : at + len(noise)] = noise
    assert isinstance(read_hello(bytes(hello)), Incomplete | Hello | NotAHello)
