"""A long reply goes on to the client as it arrives: intact however the instrument cut it, with
the client's ident, checked as UTF-8 on the way, gathered whole when it must be judged whole,
and never held whole by the gateway for a client that reads slowly.

The instrument is a fake one on a loopback port: it lets the gateway log in, says OK to ACC, and
answers each forwarded command with bytes the test writes, cut where the test wants them cut."""

from __future__ import annotations

import base64
import codecs
import itertools
import json
import random
import socket
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

from labgate.gateway.upstream import STREAM_OVER
from labgate.scpi.framing import Decoder, Piece

MIB = 1024 * 1024
GREETING = b"READy -session=1 -product=QuantStudio3_5\n"
READ = "FILE:READ? -encoding=base64 experiments/x.eds"
# The fake instrument speaks plain TCP only; the TLS instruments of the config are never used.
UNUSED_PIN = "sha256/" + "A" * 43 + "="
# Write sizes for "small and odd" TCP segments: primes, and a few single bytes.
ODD_SIZES = (1, 3, 7, 61, 509, 1021, 4093, 16381)

Send = Callable[[bytes | memoryview], None]
Answer = Callable[[int, Send], None]  # (the gateway's ident, send) -> writes a reply


class FakeInstrument:
    """An instrument on 127.0.0.1 that greets, lets anyone log in and change level, and answers
    every other command with the next of `answers`, called with the gateway's ident."""

    def __init__(self, answers: Iterable[Answer]) -> None:
        self._answers = deque(answers)
        self.forwarded: list[bytes] = []  # the commands answered by `answers`, as received
        self.sent = 0  # bytes sent by `answers` so far
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.1)  # so that the accepting thread sees `_stop`
        self.plain = self.tls = self.legacy = self._listener.getsockname()[:2]
        self._stop = threading.Event()
        self._connections: list[socket.socket] = []
        self._threads = [threading.Thread(target=self._accept, daemon=True)]
        self._threads[0].start()

    def close(self) -> None:
        self._stop.set()
        for connection in self._connections:
            connection.close()
        for thread in self._threads:
            thread.join(5)
        self._listener.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                connection, _ = self._listener.accept()
            except TimeoutError:
                continue
            self._connections.append(connection)
            thread = threading.Thread(target=self._serve, args=(connection,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, connection: socket.socket) -> None:
        connection.settimeout(30)
        connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # each write a segment
        # A small, fixed send buffer: a gateway that stops reading stops this side soon.
        connection.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)

        def send(data: bytes | memoryview) -> None:
            connection.sendall(data)
            self.sent += len(data)

        try:
            connection.sendall(GREETING)
            for line in connection.makefile("rb"):
                ident, _, command = line.rstrip(b"\n").partition(b" ")
                if not ident.isdigit():
                    return  # not SCPI: the gateway's TLS client, asking a tls:// instrument
                name = command.partition(b" ")[0].upper()
                if name == b"CHAL?":
                    connection.sendall(b"OK %s 5eedc0ffee\n" % ident)
                elif name in (b"AUTH", b"ACC"):
                    connection.sendall(b"OK %s\n" % ident)
                elif name == b"QUIT":
                    connection.sendall(b"OK %s\n" % ident)
                    return
                else:
                    self.forwarded.append(line.rstrip(b"\n"))
                    self._answers.popleft()(int(ident), send)
        except OSError:
            pass  # the gateway hung up, or `close` did
        finally:
            connection.close()


@pytest.fixture
def fake_instrument() -> Iterator[Callable[..., FakeInstrument]]:
    """`fake_instrument(*answers)`: a FakeInstrument, closed at the end of the test."""
    started: list[FakeInstrument] = []

    def start(*answers: Answer) -> FakeInstrument:
        started.append(FakeInstrument(answers))
        return started[-1]

    yield start
    for instrument in started:
        instrument.close()


@pytest.fixture
def pieces_seen(monkeypatch: pytest.MonkeyPatch) -> list[Piece]:
    """Every piece the gateway's instrument connections hand on (the gateway runs in this
    process), to prove that a test really cut a reply where it meant to."""
    seen: list[Piece] = []
    feed_pieces = Decoder.feed_pieces

    def spy(self: Decoder, data: bytes, *, stream_over: int) -> list[Piece]:
        pieces = feed_pieces(self, data, stream_over=stream_over)
        seen.extend(pieces)
        return pieces

    monkeypatch.setattr(Decoder, "feed_pieces", spy)
    return seen


class ObserverClient:
    """olive's session at Observer through the gateway. Lines are read in big steps:
    RawClient.line searches all it holds again for each TLS record, which for a reply of many
    megabytes is quadratic."""

    def __init__(self, raw: Any) -> None:
        self.raw = raw
        self._buffer = bytearray()
        assert self.line() == GREETING.rstrip(b"\n")  # the instrument's own greeting
        raw.send("0 ACC -stealth=false -exclusive=false Observer")
        assert self.line() == b"OK 0"

    def send(self, line: str) -> None:
        self.raw.send(line)

    def line(self) -> bytes:
        """The next line; at the end of the stream what is left of one (b"" when nothing)."""
        searched = 0
        while (end := self._buffer.find(b"\n", searched)) < 0:
            searched = len(self._buffer)
            if not self._read():
                rest = bytes(self._buffer)
                self._buffer.clear()
                return rest
        line = bytes(self._buffer[:end])
        del self._buffer[: end + 1]
        return line

    def first(self, size: int) -> bytes:
        """The first `size` bytes not read yet, waiting for them but leaving them unread."""
        while len(self._buffer) < size and self._read():
            pass
        return bytes(self._buffer[:size])

    def _read(self) -> bool:
        try:
            data = self.raw.sock.recv(MIB)
        except (ConnectionResetError, ssl.SSLEOFError):
            data = b""
        self._buffer += data
        return bool(data)


def _send_cut(send: Send, data: bytes, sizes: Iterable[int] = ODD_SIZES) -> None:
    """Send `data` in writes of `sizes` in turn (views: no copy of a reply of many megabytes)."""
    view = memoryview(data)
    at = 0
    for size in itertools.cycle(sizes):
        if at >= len(data):
            return
        send(view[at : at + size])
        at += size


def _first_difference(got: bytes, expected: bytes) -> str | None:
    """Where two long byte strings part (None if they do not), without a diff of megabytes."""
    if got == expected:
        return None
    at = next(
        (i for i, (a, b) in enumerate(zip(got, expected, strict=False)) if a != b),
        min(len(got), len(expected)),
    )
    return (
        f"{len(got)} bytes received, {len(expected)} expected; they part at byte {at}: "
        f"{got[at : at + 20]!r} for {expected[at : at + 20]!r}"
    )


def _ends_inside_a_character(data: bytes) -> bool:
    decoder = codecs.getincrementaldecoder("utf-8")("ignore")  # a start inside one is skipped
    decoder.decode(data[-4:])
    return decoder.getstate()[0] != b""


def _once_still(count: Callable[[], int]) -> int:
    """`count()` once it has stayed the same for 0.3 s (within 5 s)."""
    deadline = time.monotonic() + 5
    last = count()
    while time.monotonic() < deadline:
        time.sleep(0.3)
        if (now := count()) == last:
            return now
        last = now
    raise AssertionError(f"still growing after 5 s: {last}")


def _events(gateway: Any, kind: str) -> list[dict[str, Any]]:
    gateway.call(gateway.gateway.audit.flush())
    lines = gateway.gateway.audit.path.read_text().splitlines()
    return [e for e in map(json.loads, lines) if e.get("event") == kind]


def _base64(size: int, seed: int) -> bytes:
    return base64.b64encode(random.Random(seed).randbytes(size * 3 // 4))


def _odd_answer(body: bytes, release: threading.Event) -> Answer:
    """`OK <ident> <quote.base64>body</quote.base64>` in small, odd writes, its last MiB held
    back until `release` is set (10 s at most), and its closing tag cut in two."""
    tail = b"</quote.base64>\n"

    def answer(ident: int, send: Send) -> None:
        reply = b"OK %d <quote.base64>%s" % (ident, body)
        held_back = len(reply) - MIB
        _send_cut(send, reply[:held_back])
        release.wait(10)
        _send_cut(send, reply[held_back:])
        for part in (tail[:5], tail[5:-1], tail[-1:]):  # `</quo`, `te.base64>`, the end
            time.sleep(0.05)
            send(part)

    return answer


def _short_answer(ident: int, send: Send) -> None:
    send(b"OK %d <quote.base64>aGk=</quote.base64>\n" % ident)


def test_a_long_reply_in_odd_pieces_reaches_the_client_intact_as_it_arrives(
    fake_instrument: Any, gateway_factory: Any, pki: Any, raw_client: Any
) -> None:
    body = _base64(3 * MIB, seed=1)
    release = threading.Event()
    instrument = fake_instrument(_odd_answer(body, release), _short_answer)
    gateway = gateway_factory(instrument, upstream_pin=UNUSED_PIN)
    client = ObserverClient(raw_client(gateway, pki, "olive"))
    client.raw.sock.settimeout(5)
    client.send(f"41 {READ}")
    expected = b"OK 41 <quote.base64>" + body + b"</quote.base64>"
    # Relayed as it arrives: the start reaches the client while the instrument holds the end.
    assert client.first(STREAM_OVER) == expected[:STREAM_OVER]
    release.set()
    assert _first_difference(client.line(), expected) is None
    # The session goes on: the next reply comes next, and nothing of the last one before it.
    client.send("42 FILE:READ? -encoding=base64 experiments/y.eds")
    assert client.first(6) == b"OK 42 "
    assert client.line() == b"OK 42 <quote.base64>aGk=</quote.base64>"

    ident, _, command = instrument.forwarded[0].partition(b" ")
    assert command == READ.encode() and ident != b"41"  # the instrument saw the gateway's ident
    replies = [e for e in _events(gateway, "reply") if e["command"] == "FILE:READ?"]
    assert [e["status"] for e in replies] == ["OK", "OK"]
    assert replies[0]["latency_ms"] >= 150  # recorded when the reply ended, not when it began


def _cut_inside_characters(text: bytes, at_least: int) -> list[bytes]:
    """`text` in parts of `at_least` bytes or a few more, each ending inside a character."""
    parts = []
    while len(text) > at_least:
        cut = at_least
        while text[cut] & 0xC0 != 0x80:  # move on to a continuation byte: cut before it
            cut += 1
        parts.append(text[:cut])
        text = text[cut:]
    return [*parts, text]


def test_characters_cut_between_pieces_arrive_intact(
    fake_instrument: Any,
    gateway_factory: Any,
    pki: Any,
    raw_client: Any,
    pieces_seen: list[Piece],
) -> None:
    start = b"A" * (STREAM_OVER + 4096)  # ASCII: the reply is relayed from its first piece
    text = "é€😀ü漢".encode() * 30_000  # 2-, 3- and 4-byte characters: 420 kB
    parts = _cut_inside_characters(text, STREAM_OVER + 1)
    release = threading.Event()

    def answer(ident: int, send: Send) -> None:
        send(b"OK %d <quote>%s" % (ident, start))
        for part in parts:
            time.sleep(0.05)  # each part is read, and handed on, before the next is sent
            send(part)
        release.wait(10)
        send(b"</quote>\n")

    gateway = gateway_factory(fake_instrument(answer), upstream_pin=UNUSED_PIN)
    client = ObserverClient(raw_client(gateway, pki, "olive"))
    client.raw.sock.settimeout(5)
    client.send(f"7 {READ}")
    expected = b"OK 7 <quote>" + start + text + b"</quote>"
    # Relayed as it came: all but the last part and the closing tag, which is held back.
    assert client.first(len(expected) - 2 * STREAM_OVER) == expected[: -2 * STREAM_OVER]
    release.set()
    assert _first_difference(client.line(), expected) is None
    # What the test is about happened: the reply was relayed piece by piece, and pieces handed
    # on ended inside a character.
    streamed = [piece for piece in pieces_seen if not piece.last]
    assert streamed and streamed[0].first and streamed[0].data.startswith(b"OK ")
    assert sum(_ends_inside_a_character(piece.data) for piece in streamed) >= len(parts) // 2
    assert _events(gateway, "reply")[-1]["status"] == "OK"


@pytest.mark.parametrize(
    "rest",
    [
        pytest.param(b"\xff" + "é".encode() * STREAM_OVER + b"</quote>\n", id="a-stray-byte"),
        pytest.param(b"\xed\xa0\x80" + b"B" * STREAM_OVER + b"</quote>\n", id="a-surrogate"),
        # Text may follow the closing tag: half a character as a reply's very last bytes is
        # found only by the check of the reply's end.
        pytest.param(b"</quote> \xe2\x82\n", id="a-character-cut-at-the-end"),
    ],
)
def test_a_long_reply_that_is_not_utf8_ends_the_session(
    fake_instrument: Any, gateway_factory: Any, pki: Any, raw_client: Any, rest: bytes
) -> None:
    start = b"A" * (2 * STREAM_OVER)

    def answer(ident: int, send: Send) -> None:
        send(b"OK %d <quote>%s" % (ident, start))
        time.sleep(0.1)  # the start goes on to the client before the rest is read
        send(rest)

    gateway = gateway_factory(fake_instrument(answer), upstream_pin=UNUSED_PIN)
    client = ObserverClient(raw_client(gateway, pki, "olive"))
    client.send(f"9 {READ}")
    received = client.line()  # what came before the connection closed: no whole line
    assert len(received) >= STREAM_OVER  # the start was relayed as it came
    assert (b"OK 9 <quote>" + start).startswith(received)  # and nothing after it
    assert client.line() == b""
    disconnect = _events(gateway, "disconnect")[-1]
    assert disconnect["reason"] == "the instrument sent a long reply that is not UTF-8"
    assert not [e for e in _events(gateway, "reply") if e["command"] == "FILE:READ?"]


LONG_BODY = b"<quote>" + b"x" * (100 * 1024) + b"</quote>"


@pytest.mark.parametrize(
    ("reply", "relayed", "status"),
    [
        pytest.param(
            b"ERRor %d [IOError] --> " + LONG_BODY,
            b"ERRor 5 [IOError] --> " + LONG_BODY,
            "ERRor",
            id="an-error",
        ),
        pytest.param(
            b"OK 0%d " + LONG_BODY,  # a leading zero: not the instrument's own way of writing
            b"OK 5 " + LONG_BODY,
            "OK",
            id="a-non-canonical-head",
        ),
        pytest.param(
            b"OK %d \xc3\xa9t\xc3\xa9 " + LONG_BODY,  # "été": not ASCII from its start
            b"OK 5 \xc3\xa9t\xc3\xa9 " + LONG_BODY,
            "OK",
            id="a-non-ascii-start",
        ),
    ],
)
def test_other_long_replies_are_gathered_whole_and_judged_as_before(
    fake_instrument: Any,
    gateway_factory: Any,
    pki: Any,
    raw_client: Any,
    reply: bytes,
    relayed: bytes,
    status: str,
) -> None:
    release = threading.Event()

    def answer(ident: int, send: Send) -> None:
        whole = reply % ident + b"\n"
        send(whole[: STREAM_OVER + 8192])  # enough to be relayed as it comes, were it an OK
        release.wait(10)
        _send_cut(send, whole[STREAM_OVER + 8192 :])

    gateway = gateway_factory(fake_instrument(answer, _short_answer), upstream_pin=UNUSED_PIN)
    client = ObserverClient(raw_client(gateway, pki, "olive"))
    client.send(f"5 {READ}")
    client.raw.sock.settimeout(0.5)
    with pytest.raises(TimeoutError):
        client.first(1)  # nothing of it goes on before it is whole
    release.set()
    client.raw.sock.settimeout(10)
    assert _first_difference(client.line(), relayed) is None
    client.send(f"6 {READ}")
    assert client.line() == b"OK 6 <quote.base64>aGk=</quote.base64>"  # the session goes on
    replies = [e for e in _events(gateway, "reply") if e["command"] == "FILE:READ?"]
    assert [e["status"] for e in replies] == [status, "OK"]


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads Linux's VmRSS")
def test_a_client_that_reads_nothing_holds_the_instrument_back(
    fake_instrument: Any,
    gateway_factory: Any,
    pki: Any,
    raw_client: Any,
    resident_bytes: Any,
) -> None:
    size = 16 * MIB
    body = _base64(size, seed=5)
    rest = b" <quote.base64>" + body + b"</quote.base64>\n"

    def answer(ident: int, send: Send) -> None:
        send(b"OK %d" % ident)
        _send_cut(send, rest, (STREAM_OVER,))

    instrument = fake_instrument(answer)
    gateway = gateway_factory(instrument, upstream_pin=UNUSED_PIN)
    client = ObserverClient(raw_client(gateway, pki, "olive"))
    # A small, fixed receive window: what the client does not read waits on the gateway's side.
    client.raw.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    before = resident_bytes()
    client.send(f"3 {READ}")
    time.sleep(1.0)  # the client reads nothing for a while
    held_back_at = _once_still(lambda: instrument.sent)
    grown = resident_bytes() - before
    # The gateway holds a small part of the reply: about 2 MiB here, against some 30 MiB when
    # it goes on reading from the instrument for a client that reads nothing.
    assert grown < size // 2
    assert held_back_at < size * 3 // 4  # the rest waits in sockets and at the instrument
    client.raw.sock.settimeout(10)
    expected = b"OK 3 <quote.base64>" + body + b"</quote.base64>"
    assert _first_difference(client.line(), expected) is None
    assert _events(gateway, "reply")[-1]["status"] == "OK"
