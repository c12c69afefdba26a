"""TLS 1.3 session resumption: a resumed session is served like a full one, a reload ends every
ticket issued before it, and removing the client CA ends resumed sessions too (their chain is
not verified again, so the gateway cannot tell which CA admitted them and assumes the worst)."""

from __future__ import annotations

import gc
import json
import socket
import ssl
import time
from typing import Any


def _ticket_of(raw_client: Any, gateway: Any, pki: Any, who: str) -> tuple[Any, Any]:
    """A full handshake that leaves a TLS 1.3 ticket behind: (client context, TLS session)."""
    first = raw_client(gateway, pki, who)
    assert first.line().startswith(b"READy")  # the ticket arrives after the handshake
    assert first.ask("0 ACC?").startswith(b"OK 0")
    assert not first.sock.session_reused
    session = first.sock.session
    assert session is not None and session.has_ticket
    assert first.ask("1 QUIT") == b"OK 1"
    first.close()
    return first.context, session


def test_a_resumed_session_is_served_and_checked(gateway: Any, pki: Any, raw_client: Any) -> None:
    context, session = _ticket_of(raw_client, gateway, pki, "olive")
    again = raw_client(gateway, pki, "olive", context=context, session=session)
    assert again.line().startswith(b"READy")
    assert again.sock.session_reused
    # The grant still holds: olive is an Observer, and no more, on a resumed session too.
    assert again.ask("0 ACC -stealth=false -exclusive=false Controller").startswith(
        b"ERRor 0 [AccessLevelExceeded]"
    )
    assert again.ask("1 ACC -stealth=false -exclusive=false Observer") == b"OK 1"
    assert again.ask("2 OPEN").startswith(b"ERRor 2 [InsufficientAccess]")


def test_a_reload_ends_the_tickets_issued_before_it(
    gateway: Any, pki: Any, raw_client: Any
) -> None:
    context, session = _ticket_of(raw_client, gateway, pki, "alice")
    gateway.call(gateway.gateway.reload())  # new contexts: a CRL or CA change is never skipped
    again = raw_client(gateway, pki, "alice", context=context, session=session)
    assert again.line().startswith(b"READy")
    assert not again.sock.session_reused  # a full handshake, verified against the new files


def test_removing_the_client_ca_ends_resumed_sessions(
    gateway: Any, pki: Any, raw_client: Any
) -> None:
    context, session = _ticket_of(raw_client, gateway, pki, "alice")
    resumed = raw_client(gateway, pki, "alice", context=context, session=session)
    assert resumed.line().startswith(b"READy")
    assert resumed.sock.session_reused
    gateway.trust_only(pki.other_root)
    start = time.monotonic()
    resumed.sock.settimeout(5)
    assert resumed.line() == b"", "the resumed session stayed open"
    assert time.monotonic() - start < 2.0


def test_the_session_cache_is_bounded_and_starts_afresh_when_full(
    gateway_factory: Any, pki: Any, raw_client: Any
) -> None:
    # Each cached session holds about 12 KiB (the client certificate decoded with it); OpenSSL
    # alone would keep 20,480 of them for two hours.
    gateway = gateway_factory(extra_gateway="tls_session_cache = 3")
    context, session = _ticket_of(raw_client, gateway, pki, "alice")
    for _ in range(3):
        _ticket_of(raw_client, gateway, pki, "olive")
    deadline = time.monotonic() + 10
    while not _reloads(gateway, "TLS session cache full"):
        assert time.monotonic() < deadline, "the full cache was never started afresh"
        time.sleep(0.05)
    assert gateway.run(lambda: gateway.gateway.tls_sessions_kept()) < 3
    # A session from before is not resumed (the new context never saw it), but served in full.
    again = raw_client(gateway, pki, "alice", context=context, session=session)
    assert again.line().startswith(b"READy")
    assert not again.sock.session_reused
    assert again.ask("0 ACC?").startswith(b"OK 0")


def _reloads(gateway: Any, reason: str) -> list[dict[str, Any]]:
    gateway.call(gateway.gateway.audit.flush())
    lines = gateway.gateway.audit.path.read_text().splitlines()
    return [
        e
        for e in map(json.loads, lines)
        if e.get("event") == "reload" and e.get("reason") == reason
    ]


def test_caches_held_by_long_sessions_are_bounded_by_turning_the_cache_off(
    gateway_factory: Any, pki: Any, raw_client: Any, monkeypatch: Any
) -> None:
    from labgate.gateway import server

    monkeypatch.setattr(server, "MAX_RETIRED_CACHES", 1)
    gateway = gateway_factory(extra_gateway="tls_session_cache = 2")

    def fill_and_wait(count: int) -> Any:
        long = raw_client(gateway, pki, "alice")  # stays open, holding its context's cache
        assert long.line().startswith(b"READy")
        for _ in range(2):
            _ticket_of(raw_client, gateway, pki, "olive")
        deadline = time.monotonic() + 10
        while len(_reloads(gateway, "TLS session cache full")) < count:
            assert time.monotonic() < deadline, "the full cache was never started afresh"
            time.sleep(0.05)
        return long

    first = fill_and_wait(1)
    assert gateway.run(lambda: gateway.gateway.tls_session_cache_on)  # one cache held: allowed
    second = fill_and_wait(2)
    # Two caches would now be held by open sessions: the contexts go stateless instead.
    assert not gateway.run(lambda: gateway.gateway.tls_session_cache_on)
    context, session = _ticket_of(raw_client, gateway, pki, "olive")
    resumed = raw_client(gateway, pki, "olive", context=context, session=session)
    assert resumed.line().startswith(b"READy")
    assert resumed.sock.session_reused  # stateless tickets still resume
    resumed.close()
    first.close()
    second.close()
    deadline = time.monotonic() + 10
    while not _reloads(gateway, "TLS session cache back on"):
        assert time.monotonic() < deadline, "the cache never came back"
        gateway.run(gc.collect)  # the closed connections' objects may sit in cycles
        time.sleep(0.1)
    assert gateway.run(lambda: gateway.gateway.tls_session_cache_on)


def _shared_gateway(gateway_factory: Any) -> Any:
    """qs5-plain and qs5-tls on one address, told apart by the server name; alice may be a
    Controller on qs5-tls but only an Observer on qs5-plain."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    grants = "".join(
        f'[[grant]]\nidentity = "labgate:user:alice"\ninstrument = "{instrument}"\n'
        f'level = "{level}"\n\n'
        for instrument, level in (("qs5-tls", "Controller"), ("qs5-plain", "Observer"))
    )
    return gateway_factory(
        shared_listen=f'listen = "127.0.0.1:{port}"', grants={}, extra_sections=grants
    )


def _session_for(
    raw_client: Any, gateway: Any, pki: Any, instrument: str, version: ssl.TLSVersion
) -> tuple[ssl.SSLContext, ssl.SSLSession]:
    context = ssl.create_default_context(cafile=str(pki.root))
    context.load_cert_chain(str(pki.clients["alice"].pem))
    context.maximum_version = version
    first = raw_client(gateway, pki, "alice", instrument, context=context)
    assert first.line().startswith(b"READy")
    assert first.ask("0 ACC?").startswith(b"OK 0")
    assert first.ask("1 QUIT") == b"OK 1"
    session = first.sock.session
    assert session is not None
    first.close()
    return context, session


def _connects(gateway: Any, instrument: str) -> list[str]:
    gateway.call(gateway.gateway.audit.flush())
    lines = gateway.gateway.audit.path.read_text().splitlines()
    return [e["instrument"] for e in map(json.loads, lines) if e.get("event") == "connect"]


def test_a_tls12_session_made_for_one_instrument_is_refused_under_anothers_name(
    gateway_factory: Any, pki: Any, raw_client: Any
) -> None:
    gateway = _shared_gateway(gateway_factory)
    context, session = _session_for(raw_client, gateway, pki, "qs5-tls", ssl.TLSVersion.TLSv1_2)
    before = _connects(gateway, "qs5-tls")
    # The attacker asks for qs5-plain (Observer) with the session made on qs5-tls (Controller).
    again = raw_client(gateway, pki, "alice", "qs5-plain", context=context, session=session)
    line = again.refused()
    assert line.startswith(b"ERRor 0 [AccessDenied]"), line
    assert b"made for instrument 'qs5-tls'" in line
    assert b"'qs5-plain'" in line
    assert _connects(gateway, "qs5-tls") == before  # no session started on either instrument
    # Without the old session, the same client gets qs5-plain, at its own level there.
    fresh = raw_client(gateway, pki, "alice", "qs5-plain", context=context)
    assert fresh.line().startswith(b"READy")
    assert fresh.ask("0 ACC -stealth=false -exclusive=false Controller").startswith(
        b"ERRor 0 [AccessLevelExceeded]"
    )


def test_a_tls12_session_resumed_under_its_own_name_is_served(
    gateway_factory: Any, pki: Any, raw_client: Any
) -> None:
    gateway = _shared_gateway(gateway_factory)
    context, session = _session_for(raw_client, gateway, pki, "qs5-tls", ssl.TLSVersion.TLSv1_2)
    again = raw_client(gateway, pki, "alice", "qs5-tls", context=context, session=session)
    assert again.line().startswith(b"READy")
    assert again.sock.session_reused
    assert again.ask("0 ACC -stealth=false -exclusive=false Controller") == b"OK 0"
    assert _connects(gateway, "qs5-tls")[-1] == "qs5-tls"


def test_a_tls13_session_resumed_under_another_name_lands_on_that_instrument(
    gateway_factory: Any, pki: Any, raw_client: Any
) -> None:
    gateway = _shared_gateway(gateway_factory)
    context, session = _session_for(raw_client, gateway, pki, "qs5-tls", ssl.TLSVersion.TLSv1_3)
    again = raw_client(gateway, pki, "alice", "qs5-plain", context=context, session=session)
    assert again.line().startswith(b"READy")
    assert again.ask("0 ACC -stealth=false -exclusive=false Controller").startswith(
        b"ERRor 0 [AccessLevelExceeded]"
    )  # an Observer here, whatever the session was made for
    assert _connects(gateway, "qs5-plain")[-1] == "qs5-plain"


def test_a_tls12_session_resumed_without_a_server_name_is_refused(
    gateway_factory: Any, pki: Any, raw_client: Any
) -> None:
    gateway = _shared_gateway(gateway_factory)
    context, session = _session_for(raw_client, gateway, pki, "qs5-tls", ssl.TLSVersion.TLSv1_2)
    context.check_hostname = False  # so that the client may send no server name at all
    with (
        socket.create_connection(gateway.address("qs5-tls"), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname=None, session=session) as tls,
    ):
        greeting = tls.recv(4096)
        assert b"-refused=AccessDenied" in greeting
        tls.sendall(b"0 ACC?\n")
        answer = tls.recv(4096)
    assert answer.startswith(b"ERRor 0 [AccessDenied]"), answer
    assert b"made for instrument 'qs5-tls'" in answer and b"asks for None" in answer


def test_a_tls12_session_resumed_under_its_own_name_in_other_letters_is_served(
    gateway_factory: Any, pki: Any, raw_client: Any
) -> None:
    gateway = _shared_gateway(gateway_factory)
    context, session = _session_for(raw_client, gateway, pki, "qs5-tls", ssl.TLSVersion.TLSv1_2)
    host, port = gateway.address("qs5-tls")
    with (
        socket.create_connection((host, port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="QS5-TLS", session=session) as tls,
    ):
        assert tls.session_reused
        assert tls.recv(4096).startswith(b"READy")


def test_a_tls12_session_is_not_resumed_on_another_listener(
    gateway: Any, pki: Any, raw_client: Any
) -> None:
    # Each listener has its own context and cache: a session from one is a full handshake on
    # the other, verified and admitted afresh.
    context, session = _session_for(raw_client, gateway, pki, "qs5-tls", ssl.TLSVersion.TLSv1_2)
    again = raw_client(gateway, pki, "alice", "qs5-plain", context=context, session=session)
    assert again.line().startswith(b"READy")
    assert not again.sock.session_reused
