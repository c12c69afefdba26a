"""The simulator's own access settings (`CONF?`/`CONF=`): below Administrator they are refused, a
secret is never read back, and a change applies to the sessions that start after it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from labgate.instrument import run_in_thread
from labgate.instrument.connection_commands import answer_to
from labgate.scpi.access import AccessLevel
from labgate.scpi.messages import Error, Ok

from .conftest import CONTROLLER_PASSWORD

ADMIN = "administrator-secret-for-tests"


def _login(client: Any, password: str) -> None:
    challenge = client.ask("0 CHAL?")
    assert isinstance(challenge, Ok)
    assert client.ask(f"1 AUTH {answer_to(password, challenge.text.strip())}") == Ok(ident=1)


def test_a_controller_can_neither_read_nor_change_access(
    tmp_path: Path, make_config: Callable[..., Any], raw: Callable[..., Any]
) -> None:
    with run_in_thread(make_config(tmp_path, legacy_port=None, tls_port=None)) as sim:
        client = raw(sim.plain)
        _login(client, CONTROLLER_PASSWORD)
        assert client.ask("2 ACC Controller") == Ok(ident=2)
        for line in (
            "3 CONF? access",
            "4 CONF= access.secrets new-secret-xxxxxx Full",
            "5 CONF= access.accessLimits.default Full",
        ):
            reply = client.ask(line)
            assert isinstance(reply, Error) and reply.error_class == "InsufficientAccess", line
        client.close()
        # Still as it was: the Controller password works, no password-free level raised.
        other = raw(sim.plain)
        _login(other, CONTROLLER_PASSWORD)
        assert isinstance(other.ask("2 ACC Administrator"), Error)


def test_an_administrator_replaces_every_secret_at_once(
    tmp_path: Path, make_config: Callable[..., Any], raw: Callable[..., Any]
) -> None:
    passwords = {ADMIN: AccessLevel.ADMINISTRATOR, CONTROLLER_PASSWORD: AccessLevel.CONTROLLER}
    config = make_config(
        tmp_path,
        legacy_port=None,
        tls_port=None,
        passwords=passwords,
        access_limit=AccessLevel.OBSERVER,
    )
    with run_in_thread(config) as sim:
        client = raw(sim.plain)
        _login(client, ADMIN)
        assert client.ask("2 ACC Administrator") == Ok(ident=2)
        state = client.ask("3 CONF? access")
        assert isinstance(state, Ok)
        assert "-accessLimits.default=Observer" in state.text
        assert "-secrets.Administrator=1" in state.text and "-secrets.Controller=1" in state.text
        assert ADMIN not in state.text and CONTROLLER_PASSWORD not in state.text
        short = client.ask("4 CONF= access.secrets short Full")
        assert isinstance(short, Error)
        assert client.ask("5 CONF= access.secrets only-this-one-now Controller") == Ok(ident=5)
        assert client.ask("6 CONF= access.accessLimits.default Guest") == Ok(ident=6)
        client.close()
        late = raw(sim.plain)
        assert isinstance(late.ask("0 ACC Observer"), Error)  # no password: Guest only now
        challenge = late.ask("1 CHAL?")
        assert isinstance(challenge, Ok)
        old = late.ask(f"2 AUTH {answer_to(ADMIN, challenge.text.strip())}")
        assert isinstance(old, Error) and old.error_class == "AuthError"
        # The command log never holds the secrets sent.
        log = sim.command_log.read_text()
        assert "only-this-one-now" not in log and ADMIN not in log
