"""Live changes: a new CRL ends the sessions of the identities it revokes, grants follow the
configuration file, a new certificate serves new handshakes, and nobody else is dropped."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

from labgate.pki.profiles import Profile


def _closed_within(client: Any, seconds: float) -> float:
    """Seconds until the gateway closed the client's connection (fails after `seconds`)."""
    start = time.monotonic()
    client.sock.settimeout(seconds)
    assert client.line() == b"", "the session stayed open"
    return time.monotonic() - start


def _rewrite_grants(path: Path, grants: dict[str, str]) -> None:
    text = path.read_text()
    head = text[: text.index("[[grant]]")]
    body = "".join(
        f'[[grant]]\nidentity = "labgate:user:{who}"\ninstrument = "*"\nlevel = "{level}"\n\n'
        for who, level in grants.items()
    )
    path.write_text(head + body)


def _session_at(raw_client: Any, gateway: Any, pki: Any, who: str, level: str) -> Any:
    client = raw_client(gateway, pki, who)
    assert client.line().startswith(b"READy")
    assert client.ask(f"0 ACC -stealth=false -exclusive=false {level}") == b"OK 0"
    return client


def test_revoking_a_connected_identity_ends_its_session_within_2_s(
    gateway: Any, pki: Any, raw_client: Any
) -> None:
    victim = _session_at(raw_client, gateway, pki, "later", "Controller")
    bystander = _session_at(raw_client, gateway, pki, "alice", "Observer")
    pki.ca.revoke(pki.clients["later"].serial, "keyCompromise")
    pki.write_crl()
    assert _closed_within(victim, 5) < 2.0
    assert bystander.ask("1 ACC?").endswith(b"Observer")  # nobody else was dropped
    gateway.call(gateway.gateway.audit.flush())
    events = [json.loads(x) for x in gateway.gateway.audit.path.read_text().splitlines()]
    assert any(
        e["event"] == "disconnect" and e["reason"] == "client certificate revoked" for e in events
    )


def test_withdrawn_grant_ends_the_session(gateway: Any, pki: Any, raw_client: Any) -> None:
    client = _session_at(raw_client, gateway, pki, "alice", "Controller")
    config = gateway.gateway.state.config.source
    grants = {"olive": "Observer"}
    _rewrite_grants(config, grants)
    assert _closed_within(client, 5) < 2.0


def test_lowered_grant_lowers_the_session_level_at_once(
    gateway: Any, pki: Any, raw_client: Any, simulator: Any
) -> None:
    client = _session_at(raw_client, gateway, pki, "alice", "Controller")
    _rewrite_grants(gateway.gateway.state.config.source, {"alice": "Observer"})
    deadline = time.monotonic() + 5
    while not client.ask("1 ACC?").endswith(b"Observer"):
        assert time.monotonic() < deadline, "the level was never lowered"
        time.sleep(0.05)
    mark = len(simulator.received())
    refused = client.ask("2 OPEN")
    assert refused.startswith(b"ERRor 2 [InsufficientAccess]")
    assert b'-currentAccess="Observer"' in refused
    assert client.ask("3 ACC -stealth=false -exclusive=false Controller").startswith(
        b"ERRor 3 [AccessLevelExceeded]"
    )
    assert all(e.get("command") != "OPEN" for e in simulator.received()[mark:])


def test_new_certificate_serves_new_handshakes_without_dropping_sessions(
    gateway: Any, pki: Any, raw_client: Any, tmp_path: Path
) -> None:
    import ssl

    old = _session_at(raw_client, gateway, pki, "alice", "Observer")
    issued = pki.ca.issue(Profile.GATEWAY, "gw2", dns=["qs5-plain"], ips=["127.0.0.1"])
    prefix = tmp_path / "renewed"
    issued.write(prefix)
    config = gateway.gateway.state.config.source
    text = config.read_text()
    text = re.sub(r'cert = ".*?"', f'cert = "{prefix}.crt"', text, count=1)
    text = re.sub(r'key = ".*?"', f'key = "{prefix}.key"', text, count=1)
    config.write_text(text)
    deadline = time.monotonic() + 5
    while True:
        fresh = raw_client(gateway, pki, "olive")
        der = fresh.sock.getpeercert(binary_form=True)
        from cryptography import x509

        if x509.load_der_x509_certificate(der).serial_number == issued.serial:
            break
        assert time.monotonic() < deadline, "the new certificate was never served"
        fresh.close()
        time.sleep(0.1)
    assert fresh.line().startswith(b"READy")
    assert old.ask("1 ACC?").endswith(b"Observer")
    assert isinstance(fresh.sock, ssl.SSLSocket)


def test_a_broken_configuration_is_refused_and_the_running_one_kept(
    gateway: Any, pki: Any, raw_client: Any
) -> None:
    config = gateway.gateway.state.config.source
    good = config.read_text()
    config.write_text(
        good + '\n[[grant]]\nidentity = "labgate:user:x"\ninstrument = "*"\nlevel = "God"\n'
    )
    deadline = time.monotonic() + 5
    while gateway.gateway.metrics.reloads.labels("failed")._value.get() < 1:
        assert time.monotonic() < deadline, "the bad reload was never attempted"
        time.sleep(0.05)
    client = _session_at(raw_client, gateway, pki, "alice", "Controller")
    assert client.ask("1 ACC?").endswith(b"Controller")


def test_reload_on_request(gateway: Any, pki: Any, raw_client: Any) -> None:
    client = _session_at(raw_client, gateway, pki, "alice", "Controller")
    config = gateway.gateway.state.config.source
    _rewrite_grants(config, {"alice": "Observer"})
    gateway.call(gateway.gateway.reload())  # what SIGHUP does
    assert client.ask("1 ACC?").endswith(b"Observer")


def test_grant_withdrawn_while_waiting_for_a_slot_is_refused_when_the_slot_comes(
    gateway_factory: Any, pki: Any, raw_client: Any
) -> None:
    from labgate.gateway.grants import NotGranted

    gateway = gateway_factory(extra_instrument="max_upstream = 1\nupstream_wait = 10")
    holder = _session_at(raw_client, gateway, pki, "alice", "Observer")
    waiter = raw_client(gateway, pki, "olive")  # verified, now waiting for the one slot
    _rewrite_grants(gateway.gateway.state.config.source, {"alice": "Controller"})
    deadline = time.monotonic() + 5
    while not isinstance(
        gateway.gateway.state.grants.decide("labgate:user:olive", "qs5-plain"), NotGranted
    ):
        assert time.monotonic() < deadline, "the new grants were never loaded"
        time.sleep(0.05)
    assert holder.ask("1 QUIT") == b"OK 1"  # frees the slot
    waiter.sock.settimeout(10)
    assert waiter.refused().startswith(b"ERRor 0 [AccessDenied]")


def test_removing_the_client_ca_ends_the_sessions_it_admitted(
    gateway: Any, pki: Any, raw_client: Any
) -> None:
    client = _session_at(raw_client, gateway, pki, "alice", "Observer")
    gateway.trust_only(pki.other_root)
    assert _closed_within(client, 5) < 2.0
