"""Limits: each one passed gets a clear refusal in the log, never a crash, and the fragile
instrument never holds more upstream sessions than it was promised."""

from __future__ import annotations

import asyncio
import contextlib
import json
import select
import socket
import ssl
import threading
import time
from pathlib import Path
from typing import Any

import pytest


def _events(gateway: Any, kind: str) -> list[dict[str, Any]]:
    gateway.call(gateway.gateway.audit.flush())
    lines = gateway.gateway.audit.path.read_text().splitlines()
    return [e for e in map(json.loads, lines) if e.get("event") == kind]


async def _one_client(address: tuple[str, int], context: ssl.SSLContext) -> str:
    """One session: greeting, a status query, a short pause so sessions overlap, QUIT."""
    reader, writer = await asyncio.open_connection(
        *address, ssl=context, server_hostname="qs5-plain"
    )
    try:
        first = await asyncio.wait_for(reader.readline(), 30)
        if b" -refused=InstrumentBusy" in first:
            writer.write(b"0 ACC?\n")
            answer = await asyncio.wait_for(reader.readline(), 30)
            assert answer.startswith(b"ERRor 0 [InstrumentBusy]") and b"is busy" in answer
            return "busy"
        assert first.startswith(b"READy"), first
        writer.write(b"0 ACC -stealth=false -exclusive=false Observer\n1 POW?\n")
        assert (await reader.readline()).startswith(b"OK 0")
        assert (await reader.readline()).startswith(b"OK 1")
        await asyncio.sleep(0.5)
        writer.write(b"2 QUIT\n")
        assert (await reader.readline()).startswith(b"OK 2")
        return "served"
    finally:
        writer.close()


@pytest.mark.parametrize("warm", [0, 8], ids=["no-pool", "pooled"])
def test_fifty_clients_never_put_more_than_eight_sessions_on_the_instrument(
    pki: Any, gateway_factory: Any, small_simulator: Any, warm: int
) -> None:
    # Pooled: every slot may hold a warm connection, and they count against max_upstream too.
    gateway = gateway_factory(
        small_simulator,
        # Fifty handshakes at once, on the loop beside the gateway's: on a loaded machine the last
        # ClientHello could miss the 5 s default (a reset). Handshake deadlines are not tested here.
        extra_gateway=(
            "max_connections_per_identity = 64\nclient_hello_timeout = 30\nhandshake_timeout = 30"
        ),
        extra_instrument=(
            f"max_upstream = 8\nupstream_queue = 4\nupstream_wait = 5\nupstream_idle = {warm}"
        ),
    )
    context = ssl.create_default_context(cafile=str(pki.root))
    context.load_cert_chain(str(pki.clients["alice"].pem))
    address = gateway.address("qs5-plain")

    async def crowd() -> list[str]:
        return await asyncio.gather(*(_one_client(address, context) for _ in range(50)))

    outcomes = asyncio.run(crowd())
    assert len(outcomes) == 50
    assert set(outcomes) <= {"served", "busy"}
    assert outcomes.count("served") >= 8
    assert outcomes.count("busy") >= 1  # more than 8 slots + 4 waiting: some are told at once
    assert small_simulator.peak_connections <= 8
    busy = _events(gateway, "refused")
    assert busy and all(e["kind"] == "instrument_busy" for e in busy)
    assert "is busy" in busy[0]["reason"]
    if warm:
        # A second crowd is served on the warm connections, still within the bound.
        slots = gateway.gateway.slots["qs5-plain"]
        assert 1 <= gateway.run(lambda: slots.warm) <= 8
        again = asyncio.run(crowd())
        assert again.count("served") >= 8
        assert gateway.run(lambda: slots.reused) >= 1
        assert gateway.run(lambda: slots.held) <= 8
        assert small_simulator.peak_connections <= 8


def test_connection_limit_refuses_and_logs(gateway_factory: Any, pki: Any, raw_client: Any) -> None:
    gateway = gateway_factory(extra_gateway="max_connections = 1")
    first = raw_client(gateway, pki, "alice")
    assert first.line().startswith(b"READy")
    with pytest.raises((ssl.SSLError, ConnectionResetError, OSError)):
        second = raw_client(gateway, pki, "olive")
        assert second.line() == b""
        raise ConnectionResetError("closed without a greeting")
    refusals = _events(gateway, "handshake_failure")
    assert refusals[-1]["kind"] == "connection_limit"
    assert first.ask("0 ACC?").startswith(b"OK 0")  # the gateway is still serving


def test_per_identity_limit_refuses_with_a_clear_error(
    gateway_factory: Any, pki: Any, raw_client: Any
) -> None:
    gateway = gateway_factory(extra_gateway="max_connections_per_identity = 2")
    sessions = [raw_client(gateway, pki, "alice") for _ in range(2)]
    assert all(s.line().startswith(b"READy") for s in sessions)
    third = raw_client(gateway, pki, "alice").refused()
    assert third.startswith(b"ERRor 0 [IOError]") and b"2 sessions open" in third
    assert raw_client(gateway, pki, "olive").line().startswith(b"READy")  # others still get in


def test_handshake_timeout_drops_a_silent_connection(gateway_factory: Any) -> None:
    gateway = gateway_factory(extra_gateway="handshake_timeout = 0.3")
    with socket.create_connection(gateway.address("qs5-plain"), timeout=10) as silent:
        started = time.monotonic()
        assert silent.recv(1) == b""  # closed by the gateway, not by us
        assert time.monotonic() - started < 5
    assert _events(gateway, "handshake_failure")[-1]["kind"] == "handshake_timeout"


def test_idle_timeout_ends_a_quiet_session(gateway_factory: Any, pki: Any, raw_client: Any) -> None:
    gateway = gateway_factory(extra_gateway="idle_timeout = 0.5")
    client = raw_client(gateway, pki, "alice")
    assert client.line().startswith(b"READy")
    client.sock.settimeout(10)
    assert client.line() == b""
    assert _events(gateway, "disconnect")[-1]["reason"].startswith("idle for 0.5 s")


def test_maximum_session_length_is_enforced(
    gateway_factory: Any, pki: Any, raw_client: Any
) -> None:
    gateway = gateway_factory(extra_gateway="max_session = 0.5")
    client = raw_client(gateway, pki, "alice")
    assert client.line().startswith(b"READy")
    client.sock.settimeout(10)
    assert b"maximum length" in client.line()
    assert client.line() == b""


def test_overlong_line_is_refused_and_never_forwarded(
    gateway_factory: Any, pki: Any, raw_client: Any, simulator: Any
) -> None:
    gateway = gateway_factory(extra_gateway="max_line = 1024")
    client = raw_client(gateway, pki, "alice")
    assert client.line().startswith(b"READy")
    mark = len(simulator.received())
    client.send(b"0 RET " + b"A" * 4096)
    client.sock.settimeout(10)
    answer = client.line()
    assert answer.startswith(b"ERRor 0 [IOError]") and b"framing" in answer
    assert client.line() == b""
    assert all("AAAA" not in e.get("raw", "") for e in simulator.received()[mark:])
    assert _events(gateway, "disconnect")[-1]["reason"].startswith("client broke a framing limit")


def test_session_ends_when_the_client_certificate_expires(
    gateway_factory: Any, pki: Any, raw_client: Any, tmp_path: Any
) -> None:
    import datetime

    from labgate.pki.authority import CertificateAuthority
    from labgate.pki.profiles import Profile

    # A day-long client certificate issued a day ago, less two seconds: it expires mid-session.
    issued_at = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=1, seconds=-2)
    with CertificateAuthority.open(
        pki.directory / "ca", passphrase=None, clock=lambda: issued_at
    ) as ca:
        ca.issue(Profile.CLIENT, "brief").write(tmp_path / "brief", combined=True)
    gateway = gateway_factory(grants={"brief": "Controller"})
    client = raw_client(gateway, pki, "brief", pem=tmp_path / "brief.pem")
    assert client.line().startswith(b"READy")
    client.sock.settimeout(10)
    assert b"certificate expired during the session" in client.line()
    assert client.line() == b""


def test_at_the_per_source_limit_the_oldest_silent_handshake_makes_way(
    gateway_factory: Any, pki: Any, raw_client: Any
) -> None:
    gateway = gateway_factory(
        extra_gateway="max_handshakes_per_source = 2\nclient_hello_timeout = 60"
    )
    address = gateway.address("qs5-plain")
    # Two connections that never start TLS: a slow-handshake attacker's, from our own address.
    stalled = [socket.create_connection(address, timeout=10) for _ in range(2)]
    try:
        client = raw_client(gateway, pki, "alice")  # a third, prompt one from the same address
        assert client.line().startswith(b"READy")
        assert stalled[0].recv(1) == b""  # the oldest silent one was dropped for it
        shed = _events(gateway, "handshake_failure")[-1]
        assert shed["kind"] == "shed"
        assert "2 TLS handshakes from 127.0.0.1 in progress" in shed["reason"]
        assert "the oldest without a ClientHello made way" in shed["reason"]
        stalled[1].settimeout(0.5)
        with pytest.raises(TimeoutError):
            stalled[1].recv(1)  # the other one is still held: it was not the oldest
    finally:
        for s in stalled:
            s.close()


def _client_hello(server_name: str) -> bytes:
    """The bytes of a real ClientHello (Python's, TLS 1.2 and 1.3), for a client that sends it and
    then never answers the server."""
    context = ssl.create_default_context()
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname=server_name)
    with contextlib.suppress(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


def test_when_every_handshake_from_a_source_is_past_its_hello_the_oldest_makes_way(
    gateway_factory: Any, pki: Any, raw_client: Any
) -> None:
    gateway = gateway_factory(extra_gateway="max_handshakes_per_source = 2")
    address = gateway.address("qs5-plain")
    # Two that sent a real ClientHello and then never answered the gateway's reply.
    stalled = [socket.create_connection(address, timeout=10) for _ in range(2)]
    try:
        for s in stalled:
            s.sendall(_client_hello("qs5-plain"))
            assert s.recv(1)  # the gateway's ServerHello: both are in their TLS handshake
        client = raw_client(gateway, pki, "alice")
        assert client.line().startswith(b"READy")
        shed = _events(gateway, "handshake_failure")[-1]
        assert shed["kind"] == "shed"
        assert "; the oldest made way for a new one" in shed["reason"]
        stalled[0].settimeout(10)
        with contextlib.suppress(ConnectionResetError):
            while stalled[0].recv(65536):
                pass  # the rest of the gateway's flight, then the end
    finally:
        for s in stalled:
            s.close()


@pytest.mark.parametrize(
    ("sent", "kind"),
    [(b"", "hello_timeout"), (b"\x16\x03\x01\x02", "hello_timeout")],
    ids=["silent", "trickling"],
)
def test_a_connection_without_a_whole_client_hello_is_dropped_at_its_deadline(
    gateway_factory: Any, sent: bytes, kind: str
) -> None:
    gateway = gateway_factory(extra_gateway="client_hello_timeout = 0.3\nhandshake_timeout = 30")
    with socket.create_connection(gateway.address("qs5-plain"), timeout=10) as slow:
        slow.sendall(sent)  # nothing, or the first bytes of a record and no more
        started = time.monotonic()
        assert slow.recv(1) == b""  # closed by the gateway, long before the handshake timeout
        assert time.monotonic() - started < 10
    refusal = _events(gateway, "handshake_failure")[-1]
    assert refusal["kind"] == kind
    assert "no TLS ClientHello within 0.3 s" in refusal["reason"]


def test_a_client_hello_that_is_not_one_goes_to_openssl_and_is_refused(
    gateway_factory: Any,
) -> None:
    gateway = gateway_factory()
    with socket.create_connection(gateway.address("qs5-plain"), timeout=10) as odd:
        odd.sendall(b"GET / HTTP/1.1\r\nHost: qs5-plain\r\n\r\n")
        with contextlib.suppress(ConnectionResetError):
            assert b"READy" not in odd.recv(4096)
    deadline = time.monotonic() + 10
    while not (refusals := _events(gateway, "handshake_failure")):
        assert time.monotonic() < deadline, "no refusal recorded"
        time.sleep(0.05)
    assert refusals[-1]["kind"] == "tls"


class _Attacker:
    """Holds `count` slow connections to `address` from our own address, half of them silent and
    half having sent a real ClientHello and then nothing, and opens a new one for each the
    gateway drops, on a thread of its own, until stopped (or for at most `seconds`)."""

    def __init__(self, address: tuple[str, int], count: int, *, seconds: float = 120) -> None:
        self._address = address
        self._hello = _client_hello("qs5-plain")
        self._stop = threading.Event()
        self._deadline = time.monotonic() + seconds
        self.opened = 0
        self.dropped = 0
        self._sockets = [self._open(i) for i in range(count)]
        self._thread = threading.Thread(target=self._hold, daemon=True)
        self._thread.start()

    def _open(self, index: int) -> socket.socket:
        s = socket.create_connection(self._address, timeout=10)
        if index % 2:
            s.sendall(self._hello)
        s.setblocking(False)
        self.opened += 1
        return s

    def _hold(self) -> None:
        while not self._stop.is_set() and time.monotonic() < self._deadline:  # bounded
            readable, _, _ = select.select(self._sockets, [], [], 0.05)
            for s in readable:
                try:
                    gone = s.recv(65536) == b""
                except (BlockingIOError, InterruptedError):
                    gone = False
                except OSError:
                    gone = True
                if gone:
                    index = self._sockets.index(s)
                    s.close()
                    self.dropped += 1
                    with contextlib.suppress(OSError):
                        self._sockets[index] = self._open(index)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        for s in self._sockets:
            s.close()


@pytest.mark.slow
def test_300_slow_connections_from_one_address_do_not_lock_out_a_prompt_client(
    gateway_process_factory: Any, pki: Any, machine: Any
) -> None:
    # The real client behind the same address as the attacker (as behind a NAT, a VPN
    # concentrator, or here loopback). The ClientHello deadline is long, so that what serves
    # the client is the shedding, not the attacker's connections timing out.
    gateway = gateway_process_factory(extra_gateway="client_hello_timeout = 60")
    attacker = _Attacker(gateway.address("qs5-plain"), 300)
    try:
        served, failures = 0, []
        for _ in range(5):
            m = machine(gateway, pki, "alice")
            try:
                if m.machine_status().drawer in ("Open", "Closed"):
                    served += 1
            except (OSError, ValueError) as exc:  # qslib's transport errors are ValueErrors
                failures.append(str(exc))
        assert served == 5, f"served {served} of 5: {failures}"
        assert attacker.opened >= 300
        assert attacker.dropped >= 300 - 64  # the gateway shed the attacker's own connections
    finally:
        attacker.stop()


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads Linux's VmRSS")
def test_a_client_waiting_for_its_session_cannot_make_the_gateway_hold_what_it_sends(
    gateway_factory: Any,
    pki: Any,
    raw_client: Any,
    resident_bytes: Any,
) -> None:
    # The only upstream slot is taken, so the second client's session does not start: until it
    # does, the gateway keeps what that client sends, and must stop reading early.
    gateway = gateway_factory(
        extra_instrument="max_upstream = 1\nupstream_wait = 10\nupstream_idle = 0"
    )
    holder = raw_client(gateway, pki, "alice")
    assert holder.line().startswith(b"READy")
    flooder = raw_client(gateway, pki, "olive")  # verified; now waiting for the slot
    before = resident_bytes()
    flooder.sock.settimeout(0.5)
    chunk, sent, limit = b"x" * 65536, 0, 64 * 1024 * 1024
    deadline = time.monotonic() + 20
    with contextlib.suppress(TimeoutError, OSError):
        while sent < limit and time.monotonic() < deadline:
            flooder.sock.sendall(chunk)
            sent += len(chunk)
    grown = resident_bytes() - before
    assert sent < limit, "the gateway read everything it was sent"
    assert grown < 8 * 1024 * 1024, f"the gateway grew by {grown} bytes for a waiting client"
    flooder.close()
    assert holder.ask("0 ACC?").startswith(b"OK 0")  # still serving


def test_at_the_connection_limit_a_silent_connection_makes_way_but_a_session_does_not(
    gateway_factory: Any, pki: Any, raw_client: Any
) -> None:
    gateway = gateway_factory(extra_gateway="max_connections = 2\nclient_hello_timeout = 60")
    address = gateway.address("qs5-plain")
    session = raw_client(gateway, pki, "olive")  # an established session: never shed
    assert session.line().startswith(b"READy")
    with socket.create_connection(address, timeout=10) as silent:
        client = raw_client(gateway, pki, "alice")  # over the limit: the silent one makes way
        assert client.line().startswith(b"READy")
        assert silent.recv(1) == b""
    shed = _events(gateway, "handshake_failure")[-1]
    assert shed["kind"] == "shed"
    assert "2 connections open; the oldest without a ClientHello made way" in shed["reason"]
    assert session.ask("0 ACC?").startswith(b"OK 0")
    assert client.ask("0 ACC?").startswith(b"OK 0")
    client.close()
    # Only sessions left: a new connection is refused, and the sessions go on.
    deadline = time.monotonic() + 10
    while gateway.run(lambda: gateway.gateway._connections) > 1:
        assert time.monotonic() < deadline, "the closed session was never counted out"
        time.sleep(0.05)
    other = raw_client(gateway, pki, "adam")
    assert other.line().startswith(b"READy")
    with pytest.raises((ssl.SSLError, ConnectionResetError, OSError)):
        third = raw_client(gateway, pki, "gus")
        assert third.line() == b""
        raise ConnectionResetError("closed without a greeting")
    assert _events(gateway, "handshake_failure")[-1]["kind"] == "connection_limit"
