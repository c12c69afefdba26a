"""A grant lowered while an `ACC` is on its way to the instrument: the level the session gets when
the instrument says OK is at most the grant at that moment, and the instrument is brought down
before the next command it is sent.

From outside: a real gateway in front of a simulator whose drawer takes seconds to move, so that
an `ACC -stealth=true ... Controller` waits behind a long command while the grant is lowered in
the configuration file and reloaded. The simulator's command log is the witness."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from labgate.gateway.filter import Decision, SessionFilter
from labgate.scpi.access import AccessLevel
from labgate.scpi.messages import parse_command


def _rewrite_grants(path: Path, grants: dict[str, str]) -> None:
    text = path.read_text()
    head = text[: text.index("[[grant]]")]
    body = "".join(
        f'[[grant]]\nidentity = "labgate:user:{who}"\ninstrument = "*"\nlevel = "{level}"\n\n'
        for who, level in grants.items()
    )
    path.write_text(head + body)


@pytest.fixture
def slow_simulator(tmp_path_factory: pytest.TempPathFactory, start_simulator: Any) -> Any:
    # 0.4 simulated seconds a real second: the drawer takes 5 s to move.
    with start_simulator(tmp_path_factory.mktemp("slow"), time_scale=0.4) as running:
        yield running


@pytest.mark.slow
@pytest.mark.parametrize(
    "ask", ["ACC -stealth=true -exclusive=false Controller", "ACC -exclusive=true Controller"]
)
def test_an_access_request_in_flight_cannot_restore_a_lowered_grant(
    ask: str, slow_simulator: Any, gateway_factory: Any, pki: Any, raw_client: Any
) -> None:
    gateway = gateway_factory(slow_simulator)
    client = raw_client(gateway, pki, "alice")
    assert client.line().startswith(b"READy")
    assert client.ask("0 ACC Controller") == b"OK 0"
    # The instrument is busy for seconds with this one: what follows waits behind it.
    client.send("1 RET $(OPEN)")
    assert client.ask("2 ACC Observer") == b"OK 2"  # answered by the gateway
    client.send(f"3 {ask}")
    _rewrite_grants(gateway.gateway.state.config.source, {"alice": "Observer"})
    probe = raw_client(gateway, pki, "alice")  # the reload has happened once this one is capped
    assert probe.line().startswith(b"READy")
    deadline = time.monotonic() + 10
    while not probe.ask("0 ACC Controller").startswith(b"ERRor 0 [AccessLevelExceeded]"):
        assert time.monotonic() < deadline, "the grant was never lowered"
        time.sleep(0.05)
    probe.close()
    mark = len(slow_simulator.received())
    client.sock.settimeout(30)
    replies = {client.line().split(b" ")[1] for _ in range(2)}  # RET's OK and the ACC's
    assert replies == {b"1", b"3"}, replies
    assert client.ask("4 ACC?").endswith(b" Observer")
    refused = client.ask("5 OPEN")
    assert refused.startswith(b"ERRor 5 [InsufficientAccess]"), refused
    assert client.ask("6 POW?").startswith(b"OK 6")
    deadline = time.monotonic() + 5
    entries = slow_simulator.received()[mark:]
    while not any(e["command"] == "POW?" for e in entries) and time.monotonic() < deadline:
        time.sleep(0.05)
        entries = slow_simulator.received()[mark:]
    assert all(e["command"] != "OPEN" for e in entries), entries
    pow_ = next(e for e in entries if e["command"] == "POW?")
    assert pow_["level"] == "Observer", entries  # brought down before the next command


def _sent(data: bytes) -> list[str]:
    return [parse_command(line).canonical for line in data.splitlines()]


def test_the_ok_of_an_access_request_gives_at_most_the_grant_of_that_moment() -> None:
    f = SessionFilter(grant=AccessLevel.CONTROLLER, level=AccessLevel.OBSERVER, next_ident=10)
    f.upstream_level = AccessLevel.OBSERVER
    sent = f.from_client(b"1 ACC -exclusive=true Controller", now=0)
    assert sent.decision is Decision.ALLOWED
    assert f.lower_grant(AccessLevel.OBSERVER, now=0) == b""  # the session is not above it
    f.from_upstream(b"OK 10")
    assert f.level is AccessLevel.OBSERVER
    # The instrument took Controller: it is brought down ahead of the next command.
    ahead = f.from_client(b"2 POW?", now=0).to_upstream
    assert _sent(ahead) == ["ACCESS", "POW?"] and b" Observer\n" in ahead
    assert f.from_client(b"3 OPEN", now=0).decision is Decision.DENIED


def test_a_later_access_of_the_gateway_is_not_undone_by_an_earlier_ok() -> None:
    # The gateway lowered the instrument after the client's ACC went out: that ACC's OK says
    # nothing about where the instrument is now, so the next command brings it to the level.
    f = SessionFilter(grant=AccessLevel.ADMINISTRATOR, level=AccessLevel.ADMINISTRATOR)
    f.upstream_level = AccessLevel.ADMINISTRATOR
    f.from_client(b"1 ACC -stealth=true Observer", now=0)
    lowered = f.lower_grant(AccessLevel.CONTROLLER, now=0)
    assert _sent(lowered) == ["ACCESS"]
    f.from_upstream(b"OK 0")
    f.from_upstream(b"OK 1")
    assert f.level is AccessLevel.OBSERVER
    assert _sent(f.from_client(b"2 POW?", now=0).to_upstream) == ["ACCESS", "POW?"]


def test_an_access_request_for_guest_is_settled_like_any_other() -> None:
    # Guest is level 0: its OK must still set the level (a falsy level is still a level).
    f = SessionFilter(grant=AccessLevel.CONTROLLER, level=AccessLevel.OBSERVER, next_ident=3)
    f.upstream_level = AccessLevel.OBSERVER
    f.from_client(b"1 ACC -stealth=true Guest", now=0)
    assert f.awaiting_level
    f.from_upstream(b"OK 3")
    assert f.level is AccessLevel.GUEST and f.upstream_level is AccessLevel.GUEST
    assert not f.awaiting_level
