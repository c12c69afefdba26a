"""A command the gateway answers itself or that changes the connection's state (ACC, ACC?, AUTH,
CHAL?, QUIT, SUBS+, UNS, RAND?) never reaches the instrument nested, whatever it is nested in.

Tried from outside: a real client certificate through the real gateway in front of the
simulator. The gateway is logged in with the instrument's password (Administrator), so a nested
`$(ACC Administrator)` that got through would raise the connection's own level; the simulator's
command log is the witness, both for what arrived and for the level the instrument was at.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from labgate.scpi.access import AccessLevel

# (session level, nested command that would raise it); alice's grant is Controller.
RAISE = "ACC -stealth=false -exclusive=false Administrator"

ATTACKS = [
    # the issue's own
    f"RET $({RAISE})",
    "HELP? $(ACCess -stealth=true -exclusive=true Administrator)",
    "RET ${RunTitle:-$(ACC Administrator)}",
    "SUBS+ $(ACC Administrator)",
    "RET $(CHAL?)",
    "RET $(AUTH 0123456789abcdef0123456789abcdef)",
    # every spelling
    "RET $(acc Administrator)",
    "RET $(ACCESS Administrator)",
    "RET $(aCcEsS Administrator)",
    "RET $(ACC? )",
    "RET $(acc?)",
    "RET $(access?)",
    "RET $(chal?)",
    "RET $(auth 00)",
    "RET $(QUIT)",
    "RET $(quit)",
    "RET $(SUBS+ Temperature)",
    "RET $(subs+ -timestamp=true Temperature)",
    "RET $(UNS Temperature)",
    "RET $(RAND?)",
    # names the instrument may fold to one of those, or that a substitution makes
    "RET $(:ACC Administrator)",
    'RET $("ACC" Administrator)',
    "RET $(ACCE Administrator)",
    "RET $(${Name:-ACC} Administrator)",
    "RET $($(RUNTitle?) Administrator)",
    # in every place a substitution is expanded
    f'RET "$({RAISE})"',
    f"RET x$({RAISE})y",
    f"DRAW? -x=$({RAISE})",
    f"HELP? -x=$({RAISE}) ACC",
    f"RET ${{A:-${{B:-$({RAISE})}}}}",
    f'RET $[ "$({RAISE})" or "unknown" ]',
    f"RET $(DRAW?) $({RAISE})",
    # deeply nested
    f"RET $(RET $({RAISE}))",
    f"RET $(RET $(RET $(RET $(HELP? $({RAISE})))))",
    f"RET $(HELP? ${{X:-$(RET $({RAISE}))}})",
    # nested in the options and arguments of the commands the gateway itself handles
    f"ACC -stealth=$({RAISE}) Controller",
    f"ACC -stealth=true -exclusive=false $({RAISE})",
    f"QUIT $({RAISE})",
    f"ACC? $({RAISE})",
    # in a body
    f"HELP? <quote>$({RAISE})</quote>",
    f"FILE:WRITE public_run_complete/x.txt <quote>$({RAISE})</quote>",
]


def _wait_for(simulator: Any, mark: int, count: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 5
    entries = simulator.received()[mark:]
    while len(entries) < count and time.monotonic() < deadline:
        time.sleep(0.02)
        entries = simulator.received()[mark:]
    return entries


@pytest.mark.parametrize("attack", ATTACKS)
def test_a_nested_session_state_command_never_reaches_the_instrument(
    attack: str, gateway: Any, pki: Any, raw_client: Any, simulator: Any
) -> None:
    client = raw_client(gateway, pki, "alice")
    assert client.line().startswith(b"READy")
    assert client.ask("0 ACC -stealth=false -exclusive=false Controller") == b"OK 0"
    assert client.ask("1 POW?").startswith(b"OK 1")  # the instrument is now at Controller
    mark = len(simulator.received())
    answer = client.ask(f"2 {attack}")
    assert answer.startswith(b"ERRor 2 "), answer
    # The session goes on, at the level it had, and so does the instrument.
    assert client.ask("3 ACC?").endswith(b" Controller")
    assert client.ask("4 POW?").startswith(b"OK 4")
    entries = _wait_for(simulator, mark, 1)
    assert [e["command"] for e in entries] == ["POW?"], [e.get("raw") for e in entries]
    assert entries[0]["level"] == "Controller"


def test_an_observer_cannot_use_the_gateway_as_a_password_oracle(
    gateway: Any, pki: Any, raw_client: Any, simulator: Any
) -> None:
    # The instrument's challenge and its verdict on an answer would let anyone with a session
    # try passwords online, through the gateway's own connection.
    client = raw_client(gateway, pki, "olive")
    assert client.line().startswith(b"READy")
    assert client.ask("0 ACC Observer") == b"OK 0"
    mark = len(simulator.received())
    assert client.ask("1 RET $(CHAL?)").startswith(b"ERRor 1 ")
    assert client.ask("2 RET $(AUTH 0123456789abcdef0123456789abcdef)").startswith(b"ERRor 2 ")
    assert client.ask("3 RET ${X:-$(CHAL?)}").startswith(b"ERRor 3 ")
    assert client.ask("4 POW?").startswith(b"OK 4")
    entries = _wait_for(simulator, mark, 1)
    # The gateway's own ACC that brings the instrument to Observer may go ahead of POW?.
    ours = [e for e in entries if e["command"] == "ACCESS"]
    assert all(e["raw"].endswith(" Observer") for e in ours), ours
    assert [e["command"] for e in entries if e not in ours] == ["POW?"]


def test_the_refusal_says_why(gateway: Any, pki: Any, raw_client: Any) -> None:
    client = raw_client(gateway, pki, "alice")
    assert client.line().startswith(b"READy")
    answer = client.ask("0 RET $(ACC Controller)")
    assert b"ACCESS" in answer and b"nested" in answer, answer


def test_what_qslib_nests_still_passes(
    gateway: Any, pki: Any, raw_client: Any, simulator: Any
) -> None:
    client = raw_client(gateway, pki, "olive")
    assert client.line().startswith(b"READy")
    assert client.ask("0 ACC Observer") == b"OK 0"
    status = (
        'RET $(DRAWER?) $[ "$(ENG?)" or "unknown" ] $(LST?) $(TBC:SampleTemperatures?) '
        "$(TBC:BlockTemperatures?) $(TBC:CoverTemperatures?) $(TBC:SETT?) $(TBC:CONT?) "
        "$(LED:LEDTemperature?)"
    )
    assert client.ask(f"1 {status}").startswith(b"OK 1")
    assert client.ask("2 RET ${RunTitle:--} $(ISTAT?)").startswith(b"OK 2")


def test_the_levels_the_instrument_ran_at_never_pass_the_grant(
    gateway: Any, pki: Any, raw_client: Any, simulator: Any
) -> None:
    # All of the attacks in one session of an Observer, then the instrument's own log is read:
    # no command ran on it above Observer.
    client = raw_client(gateway, pki, "olive")
    assert client.line().startswith(b"READy")
    assert client.ask("0 ACC Observer") == b"OK 0"
    mark = len(simulator.received())
    for ident, attack in enumerate(ATTACKS, start=1):
        client.ask(f"{ident} {attack.replace('Administrator', 'Controller')}")
    assert client.ask(f"{len(ATTACKS) + 1} POW?").startswith(b"OK")
    entries = _wait_for(simulator, mark, 1)
    assert entries and all(e["level"] in ("Guest", "Observer") for e in entries), entries
    assert AccessLevel.parse(entries[-1]["level"]) is AccessLevel.OBSERVER


@pytest.mark.parametrize(
    "line",
    [
        "RET $(ACC -exclusive=true Full)",
        "RET $(:ACC Full)",
        'RET $("ACC" Full)',
        "RET $(ACCE Full)",
        "RET $(${Name:-ACC} Full)",
        "RET $($(RUNTitle?) Full)",
        "RET ${$(ACC -exclusive=true Full)}",  # substitutions that do not parse
        'RET $[ "$(SUBS+ Temperature)" ]',
        "RET $(QUIT)",
        ":ACC -exclusive=true Full",
        "ACC\t-exclusive=true\tFull",
        "$(RUNTitle?) Full",
    ],
)
def test_even_at_full_the_gateway_forwards_no_session_state_command_it_does_not_track(
    line: str,
) -> None:
    # Full passes commands the gateway does not know; not these, whose effect on the connection
    # (exclusive access, a subscription, its end) the gateway would not know about.
    from labgate.gateway.filter import Decision, SessionFilter

    f = SessionFilter(
        grant=AccessLevel.FULL, level=AccessLevel.FULL, upstream_level=AccessLevel.FULL
    )
    verdict = f.from_client(f"3 {line}".encode(), now=0)
    assert verdict.decision is Decision.DENIED and verdict.to_upstream == b"", verdict
    assert verdict.to_client.startswith(b"ERRor 3 ")
