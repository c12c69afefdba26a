"""`[secure]` in the gateway, tried from the attacker's side through a real gateway: with `full` on
a grant of Full or Administrator gets Controller at most, and `ACC` above it is refused naming the
mode; with `fw` on a client from outside `client_networks` is cut off before TLS, and a listener on
every address is refused at start."""

from __future__ import annotations

import json
import logging
import socket
import ssl
from pathlib import Path
from typing import Any

import pytest
from tests.gateway.conftest import write_config

from labgate.gateway.config import load_config
from labgate.gateway.errors import ConfigError
from labgate.posture.mode import LEGACY_NOTICE

FULL_ON = "[secure]\npwd = false\nfw = false\nfull = true\n"


def _audit(gateway: Any) -> list[dict[str, Any]]:
    gateway.call(gateway.gateway.audit.flush())
    return [json.loads(line) for line in gateway.gateway.audit.path.read_text().splitlines()]


def test_full_grant_is_capped_at_controller_when_full_is_on(
    gateway_factory: Any, pki: Any, raw_client: Any
) -> None:
    gw = gateway_factory(
        grants={"adam": "Full", "alice": "Administrator"},
        extra_gateway="unsafe_allow_full = true",
        extra_sections=FULL_ON,
    )
    for who in ("adam", "alice"):
        client = raw_client(gw, pki, who)
        assert client.line().startswith(b"READy")
        assert client.ask("1 ACC -exclusive=false Controller") == b"OK 1"
        for level in ("Full", "Administrator"):
            answer = client.ask(f"2 ACC -exclusive=false {level}")
            assert answer.startswith(b"ERRor 2 [AccessLevelExceeded]"), answer
            assert b"labgate secure full is on" in answer
        assert client.ask("3 ACC?").startswith(b"OK 3")  # still at Controller, session goes on
    connects = [e for e in _audit(gw) if e.get("event") == "connect"]
    assert {e["identity"] for e in connects} == {"labgate:user:adam", "labgate:user:alice"}
    assert all("labgate secure full" in e["limit_reason"] for e in connects)
    denied = [e for e in _audit(gw) if e.get("decision") == "denied"]
    assert len(denied) == 4  # Full and Administrator, for each of the two
    assert all("labgate secure full is on" in e["reason"] for e in denied)


def test_full_grant_reaches_full_when_full_is_off(
    gateway_factory: Any, pki: Any, raw_client: Any
) -> None:
    # The same grant without the switch: the cap above is the switch's doing, nothing else's.
    gw = gateway_factory(
        grants={"adam": "Full"},
        extra_gateway="unsafe_allow_full = true",
        extra_sections="[secure]\npwd = false\nfw = false\nfull = false\n",
    )
    client = raw_client(gw, pki, "adam")
    assert client.line().startswith(b"READy")
    assert client.ask("1 ACC -exclusive=false Administrator") == b"OK 1"


def test_labgate_secure_full_lowers_an_open_session(
    gateway_factory: Any, pki: Any, raw_client: Any
) -> None:
    import time

    gw = gateway_factory(grants={"adam": "Administrator"}, extra_sections="")
    client = raw_client(gw, pki, "adam")
    assert client.line().startswith(b"READy")
    assert client.ask("1 ACC -exclusive=false Controller") == b"OK 1"
    source = gw.gateway.state.config.source
    from typer.testing import CliRunner

    from labgate.cli.app import app

    # `labgate secure +full` on the running gateway's file: it reloads and lowers the session.
    result = CliRunner().invoke(app, ["secure", "--config", str(source), "+full"])
    assert result.exit_code == 0 and result.output == "full\n", result.output
    deadline = time.monotonic() + 20
    while not gw.gateway.state.config.secure.full and time.monotonic() < deadline:
        time.sleep(0.1)
    assert gw.gateway.state.config.secure.full
    answer = client.ask("2 ACC -exclusive=false Administrator")
    assert answer.startswith(b"ERRor 2 [AccessLevelExceeded]"), answer


def _tls_from(gw: Any, pki: Any, source: str) -> bytes:
    host, port = gw.address("qs5-plain")
    context = ssl.create_default_context(cafile=str(pki.root))
    context.load_cert_chain(str(pki.clients["alice"].pem))
    raw = socket.create_connection((host, port), timeout=10, source_address=(source, 0))
    try:
        with context.wrap_socket(raw, server_hostname="qs5-plain") as tls:
            return tls.recv(4096)
    except (ssl.SSLError, ConnectionResetError, BrokenPipeError) as exc:
        return repr(exc).encode()
    finally:
        raw.close()


def test_client_outside_client_networks_is_cut_off_before_tls(
    gateway_factory: Any, pki: Any
) -> None:
    gw = gateway_factory(extra_sections='[secure]\nfw = true\nclient_networks = ["127.0.0.1/32"]\n')
    assert _tls_from(gw, pki, "127.0.0.1").startswith(b"READy")  # a listed source gets in
    answer = _tls_from(gw, pki, "127.0.0.2")  # a valid certificate does not help from elsewhere
    assert not answer.startswith(b"READy")
    failures = [e for e in _audit(gw) if e.get("event") == "handshake_failure"]
    assert failures[-1]["kind"] == "source_network"
    assert "127.0.0.2 is outside [secure] client_networks" in failures[-1]["reason"]
    # Refused at accept: no TLS byte was read from it, so no handshake was counted.
    assert "handshake" not in failures[-1]["reason"]


def test_listener_on_every_address_is_refused_when_fw_is_on(
    tmp_path: Path, pki: Any, simulator: Any
) -> None:
    path = write_config(
        tmp_path,
        pki,
        simulator,
        extra_gateway="unsafe_listen = true",
        shared_listen='listen = "0.0.0.0:0"',
        extra_sections="[secure]\nfw = true\n",
    )
    with pytest.raises(ConfigError, match=r"instrument\[0\]\.listen: 0\.0\.0\.0:0 listens on"):
        load_config(path)


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ('fw = "yes"', r"secure\.fw: expected true or false"),
        ('client_networks = "10.0.0.0/8"', r"secure\.client_networks: expected a list"),
        ('client_networks = ["10.0.0.1/8"]', r"secure\.client_networks: '10\.0\.0\.1/8' is not"),
        ("firewall = true", r"secure\.firewall: Extra inputs"),
        ("present = false", r"\[secure\]\.present: unknown option"),
    ],
)
def test_bad_secure_table_is_refused_by_name(
    tmp_path: Path, pki: Any, simulator: Any, table: str, message: str
) -> None:
    path = write_config(tmp_path, pki, simulator, extra_sections=f"[secure]\n{table}\n")
    with pytest.raises(ConfigError, match=message):
        load_config(path)


def test_config_without_secure_keeps_it_off_and_says_so_once(
    gateway_factory: Any, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="labgate.gateway"):
        gw = gateway_factory()
    assert gw.gateway.state.config.secure.describe() == "none"
    assert [r.getMessage() for r in caplog.records].count(LEGACY_NOTICE) == 1


def test_narrowing_client_networks_closes_a_session_from_outside(
    gateway_factory: Any, pki: Any
) -> None:
    import time

    gw = gateway_factory(extra_sections='[secure]\nfw = true\nclient_networks = ["127.0.0.0/8"]\n')
    host, port = gw.address("qs5-plain")
    context = ssl.create_default_context(cafile=str(pki.root))
    context.load_cert_chain(str(pki.clients["alice"].pem))
    raw = socket.create_connection((host, port), timeout=10, source_address=("127.0.0.2", 0))
    with context.wrap_socket(raw, server_hostname="qs5-plain") as tls:
        assert tls.recv(4096).startswith(b"READy")
        source = gw.gateway.state.config.source
        source.write_text(source.read_text().replace('"127.0.0.0/8"', '"127.0.0.1/32"'))
        deadline = time.monotonic() + 20
        while gw.gateway.sessions and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not gw.gateway.sessions  # closed by the reload, not left open on the old answer
    closed = [e for e in _audit(gw) if e.get("event") == "disconnect" or "outside" in str(e)]
    assert any("127.0.0.2 is outside [secure] client_networks" in str(e) for e in closed)
