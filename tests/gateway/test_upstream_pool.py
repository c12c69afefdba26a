"""Warm upstream connections: a clean session's logged-in connection serves the next session,
and nothing of one user's session (a subscription, a level, exclusive access) reaches the next.

The greeting's `-session=N` is the instrument's number for the connection behind a session: the
same number for two clients means the second got the first one's connection."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import time
from pathlib import Path
from typing import Any

import pytest

from labgate.gateway.config import load_config
from labgate.gateway.filter import SessionFilter
from labgate.gateway.upstream import connect
from labgate.scpi.access import AccessLevel
from labgate.scpi.framing import Decoder, Limits


def _session_number(greeting: bytes) -> int:
    match = re.search(rb"-session=(\d+)", greeting)
    assert match is not None, greeting
    return int(match.group(1))


def _events(gateway: Any, kind: str) -> list[dict[str, Any]]:
    gateway.call(gateway.gateway.audit.flush())
    lines = gateway.gateway.audit.path.read_text().splitlines()
    return [e for e in map(json.loads, lines) if e.get("event") == kind]


def _wait_until_warm(gateway: Any, count: int = 1) -> None:
    slots = gateway.gateway.slots["qs5-plain"]
    deadline = time.monotonic() + 10
    while gateway.run(lambda: slots.warm) < count:
        assert time.monotonic() < deadline, "the connection was never kept warm"
        time.sleep(0.02)


def _quit(client: Any, ident: int) -> None:
    assert client.ask(f"{ident} QUIT") == f"OK {ident}".encode()
    client.sock.settimeout(10)
    assert client.line() == b""  # the gateway hangs up after answering QUIT


def test_a_clean_session_connection_serves_the_next_session(
    gateway: Any, pki: Any, raw_client: Any
) -> None:
    first = raw_client(gateway, pki, "alice")
    number = _session_number(first.line())
    assert first.ask("0 ACC -stealth=false -exclusive=false Controller") == b"OK 0"
    assert first.ask("1 POW?").startswith(b"OK 1")
    _quit(first, 2)
    _wait_until_warm(gateway)

    second = raw_client(gateway, pki, "olive")
    assert _session_number(second.line()) == number
    # The session starts at Guest, as on a new connection, and works.
    assert second.ask("0 ACC?") == b"OK 0 -stealth=False -exclusive=False Guest"
    assert second.ask("1 ACC -stealth=false -exclusive=false Observer") == b"OK 1"
    assert second.ask("2 POW?").startswith(b"OK 2")
    assert gateway.run(lambda: gateway.gateway.slots["qs5-plain"].reused) == 1
    # The audit log says which instrument connection served whom.
    served = [
        (e["identity"], e["upstream"], e["upstream_session"]) for e in _events(gateway, "connect")
    ]
    assert served[-2:] == [
        ("labgate:user:alice", "new", str(number)),
        ("labgate:user:olive", "warm", str(number)),
    ]


def test_a_controller_level_never_carries_over_to_an_observer(
    gateway: Any, pki: Any, raw_client: Any, simulator: Any
) -> None:
    first = raw_client(gateway, pki, "alice")
    number = _session_number(first.line())
    assert first.ask("0 ACC -stealth=false -exclusive=false Controller") == b"OK 0"
    assert first.ask("1 POW?").startswith(b"OK 1")  # the instrument follows her to Controller
    _quit(first, 2)
    _wait_until_warm(gateway)

    second = raw_client(gateway, pki, "olive")
    assert _session_number(second.line()) == number
    # Olive cannot use what alice left: the gateway judges her at Guest, and Controller is
    # above her grant.
    assert second.ask("0 OPEN").startswith(b"ERRor 0 [InsufficientAccess]")
    refused = second.ask("1 ACC -stealth=false -exclusive=false Controller")
    assert refused.startswith(b"ERRor 1 [AccessLevelExceeded]")
    assert second.ask("2 ACC -stealth=false -exclusive=false Observer") == b"OK 2"
    assert second.ask("3 POW?").startswith(b"OK 3")
    # And the instrument itself had the connection at her level before her command ran: it logs
    # each command with the connection's level before running it.
    on_connection = [e for e in simulator.received() if e.get("session") == number]
    raw = [e["raw"] for e in on_connection]
    assert on_connection[-3]["level"] == "Controller"  # where alice left it
    assert on_connection[-2]["raw"].endswith("ACC -stealth=false -exclusive=false Observer")
    assert on_connection[-1]["raw"].endswith("POW?") and on_connection[-1]["level"] == "Observer"
    assert not any("OPEN" in r for r in raw)  # her refused command never reached it


def test_a_subscribers_events_never_reach_the_next_client(
    gateway: Any, pki: Any, raw_client: Any
) -> None:
    first = raw_client(gateway, pki, "olive")
    number = _session_number(first.line())
    assert first.ask("0 ACC -stealth=false -exclusive=false Observer") == b"OK 0"
    assert first.ask("1 SUBS+ Temperature") == b"OK 1"
    while not first.line().startswith(b"MESSage Temperature"):  # the subscription is live
        pass
    first.send("2 QUIT")
    first.sock.settimeout(10)
    while first.line():
        pass

    second = raw_client(gateway, pki, "olive")
    assert _session_number(second.line()) != number
    assert second.ask("0 ACC -stealth=false -exclusive=false Observer") == b"OK 0"
    second.sock.settimeout(1.0)  # temperature events come every 0.1 s to a subscriber
    with pytest.raises(TimeoutError):
        second.line()
    disconnect = [e for e in _events(gateway, "disconnect") if e["level"] == "Observer"]
    assert disconnect[0]["upstream_kept"] is False


@pytest.mark.parametrize(
    "request_line",
    [
        "0 ACC -stealth=false -exclusive=true Observer",
        "0 ACC -stealth=true -exclusive=false Observer",
    ],
)
def test_a_connection_that_asked_for_exclusive_or_stealth_access_is_closed(
    gateway: Any, pki: Any, raw_client: Any, request_line: str
) -> None:
    first = raw_client(gateway, pki, "alice")
    number = _session_number(first.line())
    assert first.ask(request_line) == b"OK 0"
    _quit(first, 1)

    second = raw_client(gateway, pki, "alice")
    assert _session_number(second.line()) != number
    assert gateway.run(lambda: gateway.gateway.slots["qs5-plain"].reused) == 0


def test_a_client_that_leaves_with_a_command_unanswered_does_not_leave_its_connection(
    tmp_path: Path, pki: Any, raw_client: Any, start_simulator: Any, gateway_factory: Any
) -> None:
    with start_simulator(tmp_path / "slow", time_scale=1.0) as slow:  # the drawer takes 2 s
        gateway = gateway_factory(slow)
        first = raw_client(gateway, pki, "alice")
        number = _session_number(first.line())
        assert first.ask("0 ACC -stealth=false -exclusive=false Controller") == b"OK 0"
        assert first.ask("1 OPEN") == b"NEXT 1"  # its OK is still to come when the client leaves
        first.close()

        second = raw_client(gateway, pki, "alice")
        assert _session_number(second.line()) != number
        second.close()


def test_a_pooled_connection_the_instrument_dropped_is_replaced(
    tmp_path: Path, pki: Any, raw_client: Any, start_simulator: Any, gateway_factory: Any
) -> None:
    with start_simulator(tmp_path / "impatient", idle_timeout=0.5) as impatient:
        gateway = gateway_factory(impatient)
        first = raw_client(gateway, pki, "alice")
        number = _session_number(first.line())
        _quit(first, 0)
        _wait_until_warm(gateway)
        time.sleep(1.5)  # the instrument hangs up on the warm connection

        second = raw_client(gateway, pki, "alice")
        assert _session_number(second.line()) != number
        assert second.ask("0 ACC -stealth=false -exclusive=false Observer") == b"OK 0"
        assert second.ask("1 POW?").startswith(b"OK 1")
        assert gateway.run(lambda: gateway.gateway.slots["qs5-plain"].reused) == 0
        second.close()


def test_a_warm_connection_unused_too_long_is_closed(
    gateway_factory: Any, pki: Any, raw_client: Any
) -> None:
    gateway = gateway_factory(extra_instrument="upstream_idle_timeout = 0.3")
    slots = gateway.gateway.slots["qs5-plain"]
    first = raw_client(gateway, pki, "alice")
    assert first.line().startswith(b"READy")
    _quit(first, 0)
    _wait_until_warm(gateway)
    deadline = time.monotonic() + 10
    while gateway.run(lambda: (slots.warm, slots.held)) != (0, 0):
        assert time.monotonic() < deadline, "the idle connection was never closed"
        time.sleep(0.05)


def test_no_warm_connections_when_upstream_idle_is_zero(
    gateway_factory: Any, pki: Any, raw_client: Any
) -> None:
    gateway = gateway_factory(extra_instrument="upstream_idle = 0")
    first = raw_client(gateway, pki, "alice")
    number = _session_number(first.line())
    _quit(first, 0)
    second = raw_client(gateway, pki, "alice")
    assert _session_number(second.line()) != number


def test_a_warm_connections_level_is_set_again_before_anything_of_the_next_session(
    tmp_path: Path, pki: Any, simulator: Any, config_writer: Any
) -> None:
    instrument = load_config(config_writer(tmp_path, pki, simulator)).instruments[0]

    async def scenario() -> list[bytes]:
        upstream = await connect(instrument, limits=Limits())
        try:
            ident = upstream.next_ident
            upstream.writer.write(b"%d ACC -exclusive=true Administrator\n" % ident)
            assert (await upstream.stream.messages()) == [b"OK %d" % ident]
            # The next session (an Observer) knows nothing of the level the connection has: its
            # first command goes out behind the ACC that sets the session's own.
            session = SessionFilter(
                grant=AccessLevel.OBSERVER, next_ident=ident + 1, upstream_level=None
            )
            assert session.from_client(b"7 ACC?", now=0.0).to_upstream == b""
            raised = session.from_client(b"8 ACC Observer", now=0.0)  # answered here
            assert raised.to_upstream == b""
            sent = session.from_client(b"9 POW?", now=0.0).to_upstream
            ahead = b"%d ACC -stealth=false -exclusive=false Observer\n" % (ident + 1)
            assert sent.startswith(ahead)
            probe = ident + 3
            upstream.writer.write(sent + b"%d ACC?\n" % probe)
            answers: list[bytes] = []
            while len(answers) < 3:
                answers += await upstream.stream.messages()
            return answers
        finally:
            await upstream.close()

    # The ACC? behind them says where the level is now: hers, and no longer exclusive.
    answers = asyncio.run(scenario())
    assert answers[0].startswith(b"OK ") and answers[1].startswith(b"OK ")
    assert answers[-1].endswith(b"-stealth=False -exclusive=False Observer")


def test_a_warm_connection_that_sent_something_unasked_is_not_lent() -> None:
    async def scenario() -> bool:
        # A real socket pair stands in for the instrument: it greets, then sends an event
        # nobody subscribed to while the connection waits in the pool.
        from labgate.gateway.upstream import InstrumentStream

        ours, theirs = socket.socketpair()
        loop = asyncio.get_running_loop()
        stream = InstrumentStream(Decoder())
        transport, _ = await loop.create_connection(lambda: stream, sock=ours)
        assert stream.quiet
        theirs.sendall(b"MESSage Temperature 37\n")
        await asyncio.sleep(0.1)
        try:
            return stream.quiet
        finally:
            transport.close()
            theirs.close()

    assert asyncio.run(scenario()) is False
