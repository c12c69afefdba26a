"""No password reaches a log: whatever spelling or nesting a secret-bearing command (`CONF`,
`AUTH`) comes in, neither the gateway's audit log nor the simulator's command log holds its
arguments. One list (`labgate.scpi.sensitive`) serves both.

From outside: a session at Full (the level that may send `CONF*`) through the real gateway, in
front of a simulator whose password reaches Full; then both logs are read whole."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from labgate.gateway.filter import SessionFilter
from labgate.scpi.access import AccessLevel

PASSWORD = "Hunter2-never-logged"
FULL_PASSWORD = "gateway-full-5d2a"

SECRET_LINES = [
    f"CONF* access secrets {PASSWORD} Full",
    f"conf* access secrets {PASSWORD} Full",
    f"CONFIG* access secrets {PASSWORD} Full",
    f"CONFig* access secrets {PASSWORD} Full",
    f"CONF= access secrets {PASSWORD} Full",
    f"CONF? access secrets {PASSWORD}",
    f'CONF* access secrets "{PASSWORD}" Full',
    f"CONF* -secret={PASSWORD} access",
    f"CONFI* access secrets {PASSWORD} Full",
    f":CONF* access secrets {PASSWORD} Full",
    f'"CONF*" access secrets {PASSWORD} Full',
    f"AUTH {PASSWORD}",
    f"auth {PASSWORD}",
    f"RET $(CONF* access secrets {PASSWORD} Full)",
    f"RET $(conf? access secrets {PASSWORD})",
    f"RET ${{X:-$(CONF* access secrets {PASSWORD} Full)}}",
    f'RET $[ "$(CONF* access secrets {PASSWORD} Full)" ]',
    f"RET $(RET $(RET $(CONF* access secrets {PASSWORD} Full)))",
    f'RET $("CONF*" access secrets {PASSWORD} Full)',
    f"RET $(${{X:-CONF*}} access secrets {PASSWORD} Full)",
    f"RET $(AUTH {PASSWORD})",
    f"RET ${{$(CONF* access secrets {PASSWORD} Full)}}",  # substitutions that do not parse
    f'CONF* access secrets "{PASSWORD} Full',  # a line that does not parse at all
    f"CONF* access secrets {PASSWORD};x Full",
    f"HELP? <quote>$(CONF* access secrets {PASSWORD} Full)</quote>",
]


@pytest.fixture(scope="module")
def full_simulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from labgate.instrument import SimulatorConfig, run_in_process

    config = SimulatorConfig(
        plain_port=0,
        tls_port=0,
        legacy_port=0,
        passwords={FULL_PASSWORD: AccessLevel.FULL},
        access_limit=AccessLevel.GUEST,
        state_dir=tmp_path_factory.mktemp("full-instrument"),
    )
    with run_in_process(config) as running:
        yield running


def _audit_text(gateway: Any) -> str:
    gateway.call(gateway.gateway.audit.flush())
    return Path(gateway.gateway.audit.path).read_text()


def test_no_spelling_or_nesting_of_a_secret_bearing_command_puts_it_in_a_log(
    full_simulator: Any, gateway_factory: Any, pki: Any, raw_client: Any
) -> None:
    gateway = gateway_factory(
        full_simulator,
        password=FULL_PASSWORD,
        grants={"adam": "Full", "olive": "Observer"},
        extra_gateway="unsafe_allow_full = true",
    )
    for who, level in (("adam", "Full"), ("olive", "Observer")):
        client = raw_client(gateway, pki, who)
        assert client.line().startswith(b"READy")
        assert client.ask(f"0 ACC {level}") == b"OK 0"
        for ident, line in enumerate(SECRET_LINES, start=1):
            client.send(f"{ident} {line}")
        # The session is still there and the instrument still answers: nothing broke it.
        client.send("99 POW?")
        client.sock.settimeout(20)
        for _ in range(1000):  # HELP? answers in many lines
            reply = client.line()
            assert reply, "the session ended"
            if reply.startswith(b"OK 99"):
                break
        client.close()
    # The sessions' own records are in the audit log; not one holds the password.
    text = _audit_text(gateway)
    assert "CONFIG*" in text and "withheld" in text
    assert PASSWORD not in text
    deadline = time.monotonic() + 5
    while not full_simulator.command_log.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    witness = full_simulator.command_log.read_text()
    assert "CONF" in witness.upper()  # what Full may send did reach the instrument
    assert PASSWORD not in witness


@pytest.mark.parametrize("line", SECRET_LINES)
@pytest.mark.parametrize("level", [AccessLevel.OBSERVER, AccessLevel.FULL])
def test_every_verdict_on_a_secret_bearing_command_keeps_it_out(
    line: str, level: AccessLevel
) -> None:
    f = SessionFilter(grant=level, level=level, upstream_level=level)
    verdict = f.from_client(f"5 {line}".encode(), now=0)
    logged = repr((verdict.command, verdict.args, verdict.reason, verdict.payload))
    assert PASSWORD not in logged, (verdict.decision, logged)
    with contextlib.suppress(AssertionError):  # the client may hear it back: it sent it
        assert PASSWORD not in verdict.to_client.decode()
