"""The control server's own TLS certificate: issued by its CA at init, renewed by the running
server at 2/3 of its lifetime (the jitter drawn from its serial, `labgate.pki.renewal`), never
when it is a customer's.

Replicas share a data directory, hence the certificate. Each looks at the file every
`certificate_check_seconds`; one that finds it due takes `DIR/server-renewal.lock` (an advisory
`flock`, never waited for), reads the file again (another replica may have renewed it meanwhile),
and only then issues a new key and certificate and writes them, the key first, each atomically.
The others find the lock taken, or the new certificate not yet due. Every replica, the renewing one
too, then serves the new pair from its next handshake on (`labgate.control.http.servedtls`).

A certificate this CA did not issue (a customer's own, installed as `server.crt`) is left alone:
replacing it would cut off every client that trusts only the customer's CA. Its expiry shows in
`/metrics` (`labgate_certificate_days_left`) and, from 30 days before, in a warning.
"""

from __future__ import annotations

import contextlib
import enum
import fcntl
import ipaddress
import logging
import os
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

from cryptography import x509

from labgate.control.layout import server_certificate_path, server_key_path
from labgate.control.settings import ControlSettings
from labgate.pki.atomic import PRIVATE
from labgate.pki.authority import CertificateAuthority
from labgate.pki.errors import UnknownCertificate
from labgate.pki.expiry import WARN_BEFORE
from labgate.pki.issued import Issued
from labgate.pki.profiles import Profile
from labgate.pki.renewal import certificate_due

log = logging.getLogger("labgate.control")

SERVER_NAME = "labgate-server"
LOCK_FILE = "server-renewal.lock"


class Renewal(enum.Enum):
    """What one look at the server certificate found; the value is the reason logged."""

    RENEWED = "renewed"
    NOT_DUE = "not_due"
    BUSY = "renewing_elsewhere"  # another replica holds the lock
    FOREIGN = "customer_certificate"  # not this CA's: never replaced
    FOREIGN_EXPIRING = "customer_certificate_expiring"


def issue_server_certificate(settings: ControlSettings, ca: CertificateAuthority) -> Issued:
    """A new key and server certificate for `server_names`, written key first."""
    dns = [n for n in settings.server_names if not _is_ip(n)]
    ips = [n for n in settings.server_names if _is_ip(n)]
    issued = ca.issue(
        Profile.SERVER,
        SERVER_NAME,
        dns=dns,
        ips=ips,
        lifetime=timedelta(seconds=settings.server_certificate_seconds),
    )
    # issue() makes the key pair, so the key is always there; never write an empty key file.
    assert issued.key_pem is not None, "CertificateAuthority.issue returned no key"
    # The key first, so the certificate on disk never lacks its key; pending until both are.
    with ca.handing_out(issued):
        issued.write_file(server_key_path(settings.data_dir), issued.key_pem, mode=PRIVATE)
        issued.write_file(server_certificate_path(settings.data_dir), issued.chain_pem)
    return issued


def renewal_due_at(certificate: x509.Certificate) -> datetime:
    return certificate_due(
        certificate.not_valid_before_utc, certificate.not_valid_after_utc, certificate.serial_number
    )


def renew_server_certificate_if_due(
    settings: ControlSettings, ca: CertificateAuthority, *, now: datetime, warn: bool = True
) -> Renewal:
    """Renew the server certificate when it is due (see the module doc); what was found.
    `warn`: say so in the log when it is a customer's certificate within 30 days of expiry."""
    path = server_certificate_path(settings.data_dir)
    current = _read(path)
    if now < renewal_due_at(current):
        return Renewal.NOT_DUE
    if not _ours(ca, path):
        if current.not_valid_after_utc - now > WARN_BEFORE:
            return Renewal.FOREIGN
        if not warn:
            return Renewal.FOREIGN_EXPIRING
        log.warning(
            "the server certificate in %s was not issued by this CA and expires %s; "
            "it is not renewed automatically: install a new one",
            path,
            current.not_valid_after_utc.strftime("%Y-%m-%dT%H:%MZ"),
        )
        return Renewal.FOREIGN_EXPIRING
    with _exclusive(settings.data_dir / LOCK_FILE) as held:
        if not held:
            return Renewal.BUSY
        # Looked at again under the lock: the replica that held it before may have renewed.
        current = _read(path)
        if now < renewal_due_at(current):
            return Renewal.NOT_DUE
        issued = issue_server_certificate(settings, ca)
    log.info(
        "server_certificate_renewed: serial %x, valid until %s (was %x)",
        issued.serial,
        issued.certificate.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ"),
        current.serial_number,
    )
    return Renewal.RENEWED


def serving_serial(data_dir: Path) -> int | None:
    """The serial of the certificate the server presents now (None: no readable one)."""
    try:
        return _read(server_certificate_path(data_dir)).serial_number
    except (OSError, ValueError):
        return None


def _read(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def _ours(ca: CertificateAuthority, path: Path) -> bool:
    try:
        ca.entry_of(path.read_bytes())
    except UnknownCertificate:
        return False
    return True


@contextlib.contextmanager
def _exclusive(path: Path) -> Iterator[bool]:
    """An advisory lock on `path`, taken at once or not at all (True: held)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, PRIVATE)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True
