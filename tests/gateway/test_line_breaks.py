"""Line and command breaks other than b"\\n": below Full, none reaches the instrument outside a
tag. The firmware's parser is not known, so every character a common line splitter may break at
(C getline with "\\r" stripped, Python's str.splitlines, Java's readLine) counts as a break, and
NUL too, where a C string ends.

From outside: a real client through the real gateway in front of the simulator, whose command
log is the witness."""

from __future__ import annotations

import time
from typing import Any

import pytest

from labgate.gateway.filter import Decision, SessionFilter
from labgate.scpi.access import AccessLevel
from labgate.scpi.arguments import LINE_BREAKS

# Every break as it would hide a second command, the way the issue found it.
BREAKS = sorted(set(LINE_BREAKS) - {"\n"})  # a b"\n" outside a tag ends the message itself


def _attacks(char: str) -> list[str]:
    return [
        f"RET {char}1 SYST:EXEC id",
        f"RET x{char}1 SYST:EXEC id",
        f'RET "{char}1 SYST:EXEC id"',
        f"DRAW? -x=a{char}1 SYST:EXEC id",
        f"HELP? {char}",
        f"RET $(HELP? a{char}b) SYST:EXEC id",
        f"RET ${{Var:-a{char}b}}",
        f"FILE:LIST? public_run_complete:{char}",
    ]


@pytest.mark.parametrize("char", BREAKS, ids=[f"U+{ord(c):04X}" for c in BREAKS])
def test_a_break_outside_tags_never_reaches_the_instrument(
    char: str, gateway: Any, pki: Any, raw_client: Any, simulator: Any
) -> None:
    client = raw_client(gateway, pki, "alice")
    assert client.line().startswith(b"READy")
    assert client.ask("0 ACC Controller") == b"OK 0"
    mark = len(simulator.received())
    attacks = _attacks(char)
    for ident, attack in enumerate(attacks, start=1):
        answer = client.ask(f"{ident} {attack}")
        assert answer.startswith(b"ERRor %d " % ident), (attack, answer)
        reasons = (b"outside a tag", b"not written out plainly", b"control character")
        assert any(reason in answer for reason in reasons), answer
    assert client.ask("99 POW?").startswith(b"OK 99")
    deadline = time.monotonic() + 5
    entries = simulator.received()[mark:]
    while not any(e["command"] == "POW?" for e in entries) and time.monotonic() < deadline:
        time.sleep(0.02)
        entries = simulator.received()[mark:]
    assert [e["command"] for e in entries if e["command"] != "ACCESS"] == ["POW?"], entries
    assert not any(char in e["raw"] for e in entries)


def test_a_break_inside_a_tag_still_passes(
    gateway: Any, pki: Any, raw_client: Any, simulator: Any
) -> None:
    # Tags carry multi-line text (files, protocols) by design: the framing ends no message there.
    client = raw_client(gateway, pki, "alice")
    assert client.line().startswith(b"READy")
    assert client.ask("0 ACC Controller") == b"OK 0"
    answer = client.ask("1 FILE:WRITE public_run_complete/crlf.txt <quote>a\r\nb\x0cc</quote>")
    assert answer.startswith(b"OK 1"), answer
    assert client.ask("2 RET <quote>a\rb</quote>").startswith(b"OK 2")


@pytest.mark.parametrize("char", BREAKS, ids=[f"U+{ord(c):04X}" for c in BREAKS])
def test_below_full_refused_with_the_reason_at_full_passed(char: str) -> None:
    for level in (AccessLevel.OBSERVER, AccessLevel.ADMINISTRATOR):
        f = SessionFilter(grant=level, level=level, upstream_level=level)
        verdict = f.from_client(f"4 RET {char}1 SYST:EXEC id".encode(), now=0)
        assert verdict.decision is Decision.DENIED and verdict.to_upstream == b""
        assert "line splitter" in verdict.reason
        assert verdict.to_client.count(b"\n") == 1 and char.encode() not in verdict.to_client
    full = SessionFilter(grant=AccessLevel.FULL, level=AccessLevel.FULL)
    full.upstream_level = AccessLevel.FULL
    assert full.from_client(f"4 RET {char}1".encode(), now=0).decision is Decision.ALLOWED
