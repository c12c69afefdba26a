"""Each finding comes from a real condition on a real simulator (or a real listener), and is
absent once the condition is fixed."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from labgate.scan.scpiprobe import WEAK_PASSWORDS
from labgate.scpi.access import AccessLevel

from .conftest import STRONG, ids, make_certificate, scan

# ------------------------------------------------------------------------------ SCPI


@pytest.mark.parametrize(
    ("limit", "severity"),
    [
        (AccessLevel.OBSERVER, "medium"),
        (AccessLevel.CONTROLLER, "critical"),
        (AccessLevel.FULL, "critical"),
    ],
)
def test_a_password_free_level_above_guest_is_found(
    simulator: Callable[..., Any], limit: AccessLevel, severity: str
) -> None:
    with simulator(access_limit=limit, tls_port=None, legacy_port=None) as sim:
        result = scan("127.0.0.1", sim.plain[1])
    (finding,) = [f for f in result.findings if f.id == "LG-SCPI-002"]
    assert finding.severity.label == severity
    assert limit.label in finding.evidence
    assert result.ports[0].scpi is not None
    assert result.ports[0].scpi.password_free_limit is limit


def test_no_password_free_level_finding_at_guest(simulator: Callable[..., Any]) -> None:
    with simulator(access_limit=AccessLevel.GUEST, tls_port=None, legacy_port=None) as sim:
        result = scan("127.0.0.1", sim.plain[1])
    assert "LG-SCPI-002" not in ids(result)
    assert result.ports[0].scpi is not None
    assert result.ports[0].scpi.password_free_limit is AccessLevel.GUEST


def test_the_probe_leaves_the_instrument_as_it_found_it(simulator: Callable[..., Any]) -> None:
    with simulator(access_limit=AccessLevel.FULL, tls_port=None, legacy_port=None) as sim:
        scan("127.0.0.1", sim.plain[1])
        sent = [entry["command"] for entry in sim.received()]
    # Only the session's own level, challenge-response and QUIT: nothing that changes anything.
    assert set(sent) <= {"ACCESS?", "ACCESS", "CHAL?", "AUTH", "QUIT"}


def test_a_weak_password_is_found_without_sending_any_password(
    simulator: Callable[..., Any], relay: Callable[..., Any]
) -> None:
    with simulator(
        passwords={"admin": AccessLevel.ADMINISTRATOR, STRONG: AccessLevel.FULL},
        tls_port=None,
        legacy_port=None,
    ) as sim:
        recorder = relay(sim.plain)
        result = scan("127.0.0.1", recorder.address[1])
    (finding,) = [f for f in result.findings if f.id == "LG-SCPI-003"]
    assert finding.severity.label == "critical"
    assert "Administrator" in finding.evidence
    assert "admin" not in finding.evidence  # masked: a***n
    # What went over the wire: challenge answers, never a password.
    wire = bytes(recorder.sent)
    assert b"AUTH" in wire
    for candidate in WEAK_PASSWORDS:
        if len(candidate) >= 4:
            assert candidate.encode() not in wire, candidate


def test_strong_passwords_give_no_weak_password_finding(simulator: Callable[..., Any]) -> None:
    with simulator(tls_port=None, legacy_port=None) as sim:
        result = scan("127.0.0.1", sim.plain[1])
    assert "LG-SCPI-003" not in ids(result)
    scpi = result.ports[0].scpi
    assert scpi is not None and scpi.passwords_tried == len(WEAK_PASSWORDS)


def test_plaintext_scpi_and_direct_reach_are_found(simulator: Callable[..., Any]) -> None:
    with simulator(tls_port=None, legacy_port=None) as sim:
        result = scan("127.0.0.1", sim.plain[1])
    assert {"LG-SCPI-001", "LG-NET-001", "LG-FW-001"} <= ids(result)
    banner = result.ports[0].scpi.banner  # type: ignore[union-attr]
    assert (banner.product, banner.version) == ("QuantStudio3_5", "1.3.0")
    assert banner.session is not None and banner.session.isdigit()


def test_no_plaintext_finding_on_a_tls_only_instrument(simulator: Callable[..., Any]) -> None:
    with simulator(plain_port=None, legacy_port=None) as sim:
        result = scan("127.0.0.1", sim.tls[1])
    assert "LG-SCPI-001" not in ids(result)
    assert result.ports[0].scpi_transport == "TLSv1.3"
    # SCPI over TLS without a client certificate still answers: the instrument is reachable.
    assert "LG-NET-001" in ids(result)


# ------------------------------------------------------------------------------ TLS


def test_the_legacy_listener_fails_both_profiles(simulator: Callable[..., Any]) -> None:
    with simulator(plain_port=None, tls_port=None) as sim:
        result = scan("127.0.0.1", sim.legacy[1])
    found = {f.id: f for f in result.findings if f.status.value == "fail"}
    assert found["LG-TLS-001"].severity.label == "high"
    assert "TLSv1.0" in found["LG-TLS-002"].evidence
    assert "3DES" in found["LG-TLS-004"].evidence  # below legacy-instrument
    assert "LG-TLS-005" in found  # no TLS 1.2 or 1.3
    assert 'upstream = "sslv3://' in found["LG-TLS-001"].fix
    assert "upstream_pin" in found["LG-TLS-001"].fix
    assert result.ports[0].scpi_transport == "TLSv1.0"


def test_the_modern_listener_has_no_protocol_findings(simulator: Callable[..., Any]) -> None:
    with simulator(plain_port=None, legacy_port=None) as sim:
        result = scan("127.0.0.1", sim.tls[1])
    found = ids(result)
    assert not found & {"LG-TLS-001", "LG-TLS-002", "LG-TLS-004", "LG-TLS-005"}
    # OpenSSL's default server suites include CBC ones: outside intermediate, named.
    (finding,) = [f for f in result.findings if f.id == "LG-TLS-003"]
    assert "CBC" in finding.evidence and "GCM" not in finding.evidence


# ------------------------------------------------------------------------------ certificates


def test_certificate_facts_and_expiry(simulator: Callable[..., Any], tmp_path: Path) -> None:
    soon = make_certificate(tmp_path / "soon", days=5)
    later = make_certificate(tmp_path / "later", days=365)
    gone = make_certificate(tmp_path / "gone", days=-1)
    with simulator(plain_port=None, legacy_port=None, cert=soon[0], key=soon[1]) as sim:
        expiring = scan("127.0.0.1", sim.tls[1])
    with simulator(plain_port=None, legacy_port=None, cert=later[0], key=later[1]) as sim:
        fine = scan("127.0.0.1", sim.tls[1])
    with simulator(plain_port=None, tls_port=None, cert=gone[0], key=gone[1]) as sim:
        expired = scan("127.0.0.1", sim.legacy[1])
    (soon_finding,) = [f for f in expiring.findings if f.id == "LG-CERT-002"]
    assert soon_finding.severity.label == "medium"
    assert "LG-CERT-002" not in ids(fine)
    (gone_finding,) = [f for f in expired.findings if f.id == "LG-CERT-002"]
    assert gone_finding.severity.label == "high"
    cert = fine.ports[0].certificate
    assert cert is not None and cert.self_signed and cert.key == "RSA 2048"
    assert 363 <= cert.days_left <= 365
    assert "LG-CERT-001" in ids(fine)


def test_a_weak_key_is_found(simulator: Callable[..., Any], tmp_path: Path) -> None:
    # OpenSSL 3 will not even load a 1024-bit key; tlslite (the SSLv3 firmware's kind) will.
    weak = make_certificate(tmp_path / "weak", days=365, bits=1024)
    with simulator(plain_port=None, tls_port=None, cert=weak[0], key=weak[1]) as sim:
        result = scan("127.0.0.1", sim.legacy[1])
    (finding,) = [f for f in result.findings if f.id == "LG-CERT-003"]
    assert "RSA 1024" in finding.evidence


# ------------------------------------------------------------------------------ other services


@pytest.fixture
def console() -> Iterator[int]:
    """A telnet-like console: it speaks first, and not SCPI."""
    server = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                client, _ = server.accept()
            except OSError:
                return
            client.sendall(b"\xff\xfd\x18\xff\xfd\x20login: ")
            client.close()

    threading.Thread(target=serve, daemon=True).start()
    yield server.getsockname()[1]
    stop.set()
    server.close()


def test_a_console_is_found(console: int) -> None:
    result = scan("127.0.0.1", console)
    (finding,) = [f for f in result.findings if f.id == "LG-PORT-001"]
    assert "login" in finding.evidence
    assert result.ports[0].service == "other"


def test_a_closed_port_gives_no_finding() -> None:
    spare = socket.create_server(("127.0.0.1", 0))
    port = spare.getsockname()[1]
    spare.close()
    result = scan("127.0.0.1", port)
    assert result.findings == []
    assert result.ports[0].state == "closed"
    assert result.usage.refused == 1


def test_an_instrument_that_hangs_up_on_quit_still_gives_its_facts(tmp_path: Path) -> None:
    from labgate.instrument import run_in_thread
    from labgate.instrument.commands import COMMANDS
    from labgate.instrument.dispatch import Entry

    from .conftest import sim_config

    async def hang_up(session: Any, command: Any) -> Any:
        session._writer.transport.abort()
        raise ConnectionError("hung up")

    handlers = {**COMMANDS, "QUIT": Entry(handler=hang_up, help="QUIT: hangs up")}
    config = sim_config(
        tmp_path / "sim", tls_port=None, legacy_port=None, access_limit=AccessLevel.CONTROLLER
    )
    with run_in_thread(config, handlers=handlers) as sim:  # type: ignore[arg-type]
        result = scan("127.0.0.1", sim.plain[1])
    facts = result.ports[0]
    assert facts.scpi is not None and facts.scpi_error is None
    assert facts.scpi.password_free_limit is AccessLevel.CONTROLLER
    assert "LG-SCPI-002" in ids(result)
