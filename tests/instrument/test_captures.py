"""Replaying what the real qslib 0.15.3 sent (captured bytes) against the simulator.

The captures' `S>` lines came from a throw-away fake, so only what the fake and the simulator
must agree on is compared: the kind of every reply (`OK`, `NEXT`, `ERRor`), and the exact text of
replies that do not depend on time or randomness. Where the fake was wrong on purpose (it knew
no `PROTOCOL`) the simulator's answer is asserted instead.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from labgate.instrument.simulator import RunningSimulator
from labgate.scpi.messages import Message, Ok, Ready, parse_command, parse_reply

VECTORS = Path(__file__).parent.parent / "scpi" / "vectors" / "qslib-0.15.3"
EXACT = {"DRAWER?", "ENG?", "RUNTITLE?", "ACCESS?", "FILE:READ?", "POW?", "QUIT"}
# The fake answered these wrongly; the instrument (and so the simulator) accepts them.
SIMULATOR_ACCEPTS = {"PROTOCOL"}
# A command only the throw-away fake knew (it started a run without a protocol).
FAKE_ONLY = b"TESTSTARTRUN"


def _exchanges(name: str) -> list[list[tuple[bytes, list[bytes]]]]:
    """Per connection: (bytes the client sent, the fake's replies to it, events left out)."""
    connections: dict[int, list[tuple[bytes, list[bytes]]]] = {}
    for line in (VECTORS / name).read_text().splitlines():
        record = json.loads(line)
        data = record["data"].encode("latin-1")  # the capture kept bytes as latin-1 text
        turns = connections.setdefault(record["conn"], [])
        if record["dir"] == "C>":
            turns.append((data, []))
        elif record["dir"] == "S>" and turns and not data.startswith(b"MESSage"):
            turns[-1][1].append(data.rstrip(b"\n"))
    return [turns for turns in connections.values() if turns]


def _kind(raw: bytes) -> str:
    return raw.split(b" ", 1)[0].decode("latin-1")


def _replay(sim: RunningSimulator, raw: Callable[..., Any], turns: list[Any], password: str) -> int:
    client = raw(sim.plain)
    assert isinstance(client.greeting, Ready)
    challenge = ""
    compared = 0
    for sent, expected in turns:
        if sent.split(b" ", 2)[1:2] == [b"AUTH"]:
            answer = hmac.new(password.encode(), challenge.encode(), hashlib.md5).hexdigest()
            sent = sent.split(b" ")[0] + b" AUTH " + answer.encode() + b"\n"
            expected = [sent.split(b" ")[0].join([b"OK ", b""])]
        client.send(sent)
        name = parse_command(sent.rstrip(b"\n")).canonical if sent[:1].isdigit() else ""
        for wanted in expected:
            reply = client.read()
            while isinstance(reply, Message):
                reply = client.read()
            got = type(reply).__name__.upper()
            if name in SIMULATOR_ACCEPTS:
                assert isinstance(reply, Ok), (sent, reply)
            else:
                assert got[:3] == _kind(wanted).upper()[:3], (sent, wanted, reply)
            if name in EXACT:
                assert reply == parse_reply(wanted), (sent, wanted, reply)
            if name == "CHAL?" and isinstance(reply, Ok):
                challenge = reply.text
            compared += 1
    return compared


@pytest.mark.parametrize("capture", ["plain.jsonl", "misc.jsonl", "prot.jsonl", "guest.jsonl"])
def test_captured_sessions_get_the_same_kinds_of_reply(
    threaded: RunningSimulator, raw: Callable[..., Any], controller_password: str, capture: str
) -> None:
    files = threaded.state.files
    files.write("public_run_complete:run_one.eds", b"PK\x03\x04fake-eds-1")
    files.write("public_run_complete:run two.eds", b"PK\x03\x04fake-eds-2")
    compared = 0
    for turns in _exchanges(capture):
        if any(FAKE_ONLY in sent for sent, _ in turns):
            continue
        compared += _replay(threaded, raw, turns, controller_password)
    assert compared >= 2
