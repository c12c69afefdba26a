"""The running server renews its own certificate at 2/3 of its life and serves the new one from
the next handshake, without a restart and without dropping an open connection; replicas sharing
a data directory renew once between them and all serve the result."""

from __future__ import annotations

import fcntl
import http.client
import os
import socket
import ssl
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography import x509

from labgate.control.http.serving import run_in_thread
from labgate.control.keystore import load_passphrase
from labgate.control.layout import ca_dir, ca_root_path, server_certificate_path, server_key_path
from labgate.control.servercertificate import (
    LOCK_FILE,
    Renewal,
    renew_server_certificate_if_due,
    renewal_due_at,
)
from labgate.control.settings import ControlSettings
from labgate.pki.atomic import PRIVATE, write_atomic
from labgate.pki.authority import CertificateAuthority
from labgate.pki.profiles import Profile

SHORT = timedelta(seconds=10)


def _open_ca(settings: ControlSettings) -> CertificateAuthority:
    return CertificateAuthority.open(
        ca_dir(settings.data_dir), passphrase=load_passphrase(settings)
    )


def _install_short_lived(settings: ControlSettings) -> x509.Certificate:
    """A server certificate of a few seconds' life from the server's own CA, in server.crt."""
    with _open_ca(settings) as ca:
        issued = ca.issue(
            Profile.SERVER, "labgate-server", dns=["localhost"], ips=["127.0.0.1"], lifetime=SHORT
        )
        assert issued.key_pem is not None
        write_atomic(server_key_path(settings.data_dir), issued.key_pem, mode=PRIVATE)
        write_atomic(server_certificate_path(settings.data_dir), issued.chain_pem)
        ca.handed_out(issued)
    return issued.certificate


def _renewing_soon(settings: ControlSettings) -> tuple[ControlSettings, x509.Certificate, Path]:
    """Settings that look often and renew for an hour, with a short-lived certificate in place."""
    fast = settings.model_copy(
        update={"certificate_check_seconds": 0.1, "server_certificate_seconds": 3600}
    )
    return fast, _install_short_lived(fast), ca_root_path(fast.data_dir)


def _served_serial(port: int, root: Path) -> int:
    """The serial of the certificate a brand-new handshake is given."""
    context = ssl.create_default_context(cafile=root)
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


def _wait_for(condition: Callable[[], bool], seconds: float, every: Callable[[], None]) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "not within the deadline"
        every()
        time.sleep(0.3)


# Slow: it waits for a real certificate of ten seconds to reach 2/3 of its life.
@pytest.mark.slow
def test_the_running_server_renews_and_serves_the_new_certificate_keeping_open_connections(
    settings: ControlSettings,
) -> None:
    fast, old, root = _renewing_soon(settings)
    with run_in_thread(fast) as running:
        assert _served_serial(running.port, root) == old.serial_number
        kept = http.client.HTTPSConnection(
            "127.0.0.1", running.port, context=ssl.create_default_context(cafile=root)
        )
        kept.request("GET", "/healthz")
        assert kept.getresponse().read()
        sock = kept.sock
        assert sock is not None

        def ask_again() -> None:  # uvicorn closes a keep-alive connection idle for 5 s
            kept.request("GET", "/healthz")
            response = kept.getresponse()
            response.read()
            assert response.status == 200
            assert kept.sock is sock, "the open connection was dropped"

        _wait_for(lambda: _served_serial(running.port, root) != old.serial_number, 30, ask_again)
        ask_again()  # still the connection made before the renewal, on the old certificate
        assert isinstance(sock, ssl.SSLSocket)
        der = sock.getpeercert(binary_form=True)
        assert der is not None
        assert x509.load_der_x509_certificate(der).serial_number == old.serial_number
        kept.request("GET", "/metrics")
        metrics = kept.getresponse().read().decode()
        kept.close()
    assert 'labgate_server_certificate_renewals_total{result="renewed"} 1.0' in metrics
    new = x509.load_pem_x509_certificate(server_certificate_path(fast.data_dir).read_bytes())
    # /metrics reads the files at each scrape: the days left are the new certificate's.
    assert f'role="server",serial="{new.serial_number:x}"' in metrics
    # server_certificate_seconds, and the 5 minutes it is backdated by
    assert _lifetime(new) == pytest.approx(3600 + 300, abs=2)
    assert new.public_key() != old.public_key()  # a new key, not the old one re-signed


def _lifetime(certificate: x509.Certificate) -> float:
    return (certificate.not_valid_after_utc - certificate.not_valid_before_utc).total_seconds()


@pytest.mark.slow
def test_two_replicas_sharing_a_data_directory_renew_once_and_both_serve_the_new_certificate(
    settings: ControlSettings,
) -> None:
    fast, old, root = _renewing_soon(settings)
    before = _server_serials(fast)
    with run_in_thread(fast) as first, run_in_thread(fast) as second:
        ports = (first.port, second.port)
        _wait_for(
            lambda: all(_served_serial(p, root) != old.serial_number for p in ports),
            30,
            lambda: None,
        )
        serials = {_served_serial(p, root) for p in ports}
        time.sleep(1)  # room for a second renewal, were the lock not doing its work
    assert len(serials) == 1
    assert _server_serials(fast) - before == serials  # one renewal between the two


def _server_serials(settings: ControlSettings) -> set[int]:
    with _open_ca(settings) as ca:
        return {e.serial for e in ca.inventory.entries() if e.name == "labgate-server"}


def test_a_replica_finding_the_lock_taken_leaves_the_renewal_to_its_holder(
    settings: ControlSettings,
) -> None:
    before = server_certificate_path(settings.data_dir).read_bytes()
    due = renewal_due_at(x509.load_pem_x509_certificate(before)) + timedelta(seconds=1)
    fd = os.open(settings.data_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        with _open_ca(settings) as ca:
            assert renew_server_certificate_if_due(settings, ca, now=due) is Renewal.BUSY
    finally:
        os.close(fd)
    assert server_certificate_path(settings.data_dir).read_bytes() == before
    with _open_ca(settings) as ca:  # the lock given back: this replica renews
        assert renew_server_certificate_if_due(settings, ca, now=due) is Renewal.RENEWED
    assert server_certificate_path(settings.data_dir).read_bytes() != before


def test_a_pair_that_does_not_load_yet_is_not_served_and_the_old_one_stays(
    settings: ControlSettings, tmp_path: Path
) -> None:
    """A key written before its certificate (another replica mid-renewal): the context in force
    stays, and the pair is served once it matches."""
    from labgate.control.http.connections import ConnectionLimits, guarded_protocol
    from labgate.control.http.servedtls import ServedCertificate, tls_context
    from labgate.pki import keys

    protocol = guarded_protocol(tls_context(settings), ConnectionLimits())
    before = protocol.tls
    served = ServedCertificate(settings, protocol)
    stray = keys.private_pem(keys.generate(keys.KeyType.ECDSA_P256), None)
    key_path = server_key_path(settings.data_dir)
    good = key_path.read_bytes()
    write_atomic(key_path, stray, mode=PRIVATE)
    assert served.check() is False
    assert protocol.tls is before
    write_atomic(key_path, good, mode=PRIVATE)
    assert served.check() is True
    assert protocol.tls is not before
