"""`RAND?`: a Controller mints a 6-digit key that logs in as Administrator (the hole, simulated)."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from typing import Any

import pytest
from qslib import AccessLevel, Machine

from labgate.instrument import randomkey
from labgate.instrument.process import SimulatorProcess
from labgate.instrument.randomkey import RandomKeys
from labgate.instrument.simulator import RunningSimulator
from labgate.scpi.messages import Error, Ok

Raw = Callable[[tuple[str, int] | None], Any]


def _login(client: Any, password: str, level: str) -> Ok | Error:
    challenge = client.ask("0 CHAL?")
    answer = hmac.new(password.encode(), challenge.text.encode(), hashlib.md5).hexdigest()
    authenticated = client.ask(f"1 AUTH {answer}")
    if isinstance(authenticated, Error):
        return authenticated
    reply: Ok | Error = client.ask(f"2 ACC {level}")
    return reply


def _mint(raw: Raw, sim: RunningSimulator, password: str) -> str:
    client = raw(sim.plain)
    assert _login(client, password, "Controller") == Ok(ident=2)
    reply = client.ask("3 RAND?")
    assert isinstance(reply, Ok)
    return str(reply.text)


def test_keys_are_six_digits_and_the_same_until_they_expire() -> None:
    now = [1000.0]
    keys = RandomKeys(clock=lambda: now[0])
    first = keys.current()
    assert len(first) == 6 and first.isdigit()
    now[0] += randomkey.VALID_SECONDS - 1
    assert keys.current() == first
    assert keys.active() == first
    now[0] += 1
    assert keys.active() is None  # expired: AUTH no longer takes it
    assert len(keys.current()) == 6  # and RAND? mints another


def test_controller_mints_a_key_that_logs_in_as_administrator(
    threaded: RunningSimulator, raw: Raw, controller_password: str
) -> None:
    key = _mint(raw, threaded, controller_password)
    assert len(key) == 6 and key.isdigit()
    assert _mint(raw, threaded, controller_password) == key  # one active key at a time
    attacker = raw(threaded.plain)
    assert _login(attacker, key, "Administrator") == Ok(ident=2)
    acc = attacker.ask("3 ACC?")
    assert acc == Ok(ident=3, text="-stealth=False -exclusive=False Administrator")
    # Administrator, not more.
    reply = attacker.ask("4 ACC Full")
    assert isinstance(reply, Error) and reply.error_class == "AccessLevelExceeded"


@pytest.mark.parametrize("level", ["Guest", "Observer"])
def test_below_controller_no_key_is_minted(
    threaded: RunningSimulator, raw: Raw, observer_password: str, level: str
) -> None:
    client = raw(threaded.plain)
    assert _login(client, observer_password, level) == Ok(ident=2)
    reply = client.ask("3 RAND?")
    assert isinstance(reply, Error) and reply.error_class == "InsufficientAccess"
    assert dict(reply.fields)["requiredAccess"] == '"Controller"'


def test_no_key_logs_in_before_one_is_minted(threaded: RunningSimulator, raw: Raw) -> None:
    for guess in ("000000", "123456"):
        reply = _login(raw(threaded.plain), guess, "Administrator")
        assert isinstance(reply, Error) and reply.error_class == "AuthError"


def test_an_expired_key_no_longer_logs_in(
    threaded: RunningSimulator,
    raw: Raw,
    controller_password: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(randomkey, "VALID_SECONDS", 0.0)  # expires as soon as it is minted
    key = _mint(raw, threaded, controller_password)
    reply = _login(raw(threaded.plain), key, "Administrator")
    assert isinstance(reply, Error) and reply.error_class == "AuthError"


def test_the_key_never_reaches_the_command_log(
    threaded: RunningSimulator, raw: Raw, controller_password: str
) -> None:
    key = _mint(raw, threaded, controller_password)
    assert _login(raw(threaded.plain), key, "Administrator") == Ok(ident=2)
    assert "RAND?" in [entry["command"] for entry in threaded.received()]
    assert key not in threaded.command_log.read_text()


def test_qslib_mints_a_key_and_logs_in_with_it_as_administrator(
    simulator: SimulatorProcess, controller_password: str, raw: Raw
) -> None:
    assert simulator.plain is not None
    host, port = simulator.plain
    machine = Machine(host, port=port, ssl=False, password=controller_password)
    with machine, machine.at_access(AccessLevel.Controller):
        minted = machine.generate_random_key()
    # qslib's core re-types a reply that looks like a number: a key with a leading zero
    # ("042371") comes back as "42371". The active key, read raw, is the one to log in with.
    client = raw(simulator.plain)
    assert _login(client, controller_password, "Controller") == Ok(ident=2)
    key = client.ask("3 RAND?").text
    assert int(minted) == int(key)
    admin = Machine(host, port=port, ssl=False, password=key, max_access_level="Administrator")
    with admin:
        admin.set_access_level(AccessLevel.Administrator)
        assert admin.get_access_level()[0] == AccessLevel.Administrator
