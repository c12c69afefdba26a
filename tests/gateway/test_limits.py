"""Limits: each one passed gets a clear refusal in the log, never a crash, and the fragile
instrument never holds more upstream sessions than it was promised."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import ssl
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
        extra_gateway="max_connections_per_identity = 64",
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


def test_one_source_cannot_hold_every_slot_with_slow_handshakes(
    gateway_factory: Any, pki: Any, raw_client: Any
) -> None:
    gateway = gateway_factory(extra_gateway="max_handshakes_per_source = 2")
    address = gateway.address("qs5-plain")
    # Two connections that never start TLS: a slow-handshake attacker's first two.
    stalled = [socket.create_connection(address, timeout=10) for _ in range(2)]
    try:
        third = socket.create_connection(address, timeout=10)
        with third:
            assert third.recv(1) == b""  # dropped before any handshake byte was read
        refusal = _events(gateway, "handshake_failure")[-1]
        assert refusal["kind"] == "source_handshake_limit"
        assert "2 TLS handshakes from 127.0.0.1" in refusal["reason"]
    finally:
        for s in stalled:
            s.close()
    # Once those are gone, the same host gets in again.
    deadline = time.monotonic() + 10
    while True:
        try:
            client = raw_client(gateway, pki, "alice")
            assert client.line().startswith(b"READy")
            break
        except (ssl.SSLError, ConnectionResetError, OSError):
            assert time.monotonic() < deadline, "the handshake count was never released"
            time.sleep(0.1)


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
