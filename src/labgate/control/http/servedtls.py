"""The TLS context the control server serves, and its upkeep while the server runs: renewing the
server certificate when due (`labgate.control.servercertificate`) and serving the files on disk.

New connections get the context the protocol class holds at accept. When `server.crt` or
`server.key` change (this replica renewed them, another replica sharing the data directory did,
or an operator installed a customer's chain), a whole new context is built from the files and put
in the old one's place: a pair that does not load (a key written, its certificate not yet) changes
nothing and is tried again at the next look. A live context is never modified, so a handshake
never meets half of a change, and connections already open keep the context they were made with:
none is dropped, and keep-alive requests on them go on as before.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import ssl
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from prometheus_client import Counter

from labgate.control.errors import ControlError
from labgate.control.http.connections import GuardedProtocol
from labgate.control.layout import (
    ca_issuing_path,
    ca_root_path,
    server_certificate_path,
    server_key_path,
)
from labgate.control.servercertificate import Renewal, renew_server_certificate_if_due
from labgate.control.settings import ControlSettings
from labgate.pki.authority import CertificateAuthority
from labgate.pki.errors import PkiError
from labgate.pki.renewal import Backoff
from labgate.pki.tlsconfig import server_context

log = logging.getLogger("labgate.control")

# A renewal that failed (the CA expired, a full disk) is tried again after a wait that doubles
# from `certificate_check_seconds` up to this.
RETRY_CAP_SECONDS = 300.0
# A customer's certificate within 30 days of expiry is warned about this often (as a standalone
# gateway warns about its own).
WARN_EVERY_SECONDS = 6 * 3600

Signature = tuple[tuple[int, int, int] | None, ...]


def tls_context(settings: ControlSettings) -> ssl.SSLContext:
    """The server's TLS context, whatever serves it: labgate's one TLS profile (Mozilla's
    intermediate, from `labgate.pki.tlsconfig`) and the client certificate rules below."""
    data_dir = settings.data_dir
    context = server_context(
        chain=server_certificate_path(data_dir),
        key=server_key_path(data_dir),
        client_ca=ca_root_path(data_dir),
    )
    # Clients without a certificate may connect; one that presents a certificate must chain to
    # our CA (the issuing certificate is loaded too, for clients that send only their leaf).
    context.verify_mode = ssl.CERT_OPTIONAL
    context.load_verify_locations(cafile=ca_issuing_path(data_dir))
    # After `labgate ca rotate-issuing`, the retired issuing CAs too (issuing-SERIAL.crt).
    for retired in sorted(ca_issuing_path(data_dir).parent.glob("issuing-*.crt")):
        context.load_verify_locations(cafile=retired)
    return context


def _signature(paths: tuple[Path, ...]) -> Signature:
    signature: list[tuple[int, int, int] | None] = []
    for path in paths:
        try:
            st = os.stat(path)
        except OSError:
            signature.append(None)  # being replaced: its return is a change
            continue
        signature.append((st.st_ino, st.st_size, st.st_mtime_ns))
    return tuple(signature)


class ServedCertificate:
    """Puts a new context in `protocol.tls` when the certificate files change (see above)."""

    def __init__(self, settings: ControlSettings, protocol: type[GuardedProtocol]) -> None:
        self.settings = settings
        self.protocol = protocol
        data_dir = settings.data_dir
        self._paths = (server_certificate_path(data_dir), server_key_path(data_dir))
        self._seen = _signature(self._paths)

    def check(self) -> bool:
        """Serve the files if they changed since last served; True when a new context went in."""
        signature = _signature(self._paths)
        if signature == self._seen:
            return False
        try:
            context = tls_context(self.settings)
        except (OSError, ssl.SSLError, ValueError) as error:
            log.info("the server certificate files changed but do not load yet: %s", error)
            return False
        self.protocol.tls = context
        self._seen = signature
        log.info("serving the server certificate from %s anew", self._paths[0])
        return True


async def keep_certificate(
    served: ServedCertificate,
    ca: CertificateAuthority,
    clock: Callable[[], datetime],
    renewals: Counter | None = None,
) -> None:
    """Renew when due and serve what is on disk, every `certificate_check_seconds`; runs until
    cancelled. A failed renewal is logged (`server_certificate_renewal_failed`) and retried
    with backoff; the certificate in force keeps being served meanwhile. A customer's
    certificate near its expiry is warned about every `WARN_EVERY_SECONDS`."""
    settings = served.settings
    interval = settings.certificate_check_seconds
    backoff = Backoff(base=interval, cap=max(interval, RETRY_CAP_SECONDS))
    warned_at: float | None = None
    while True:
        wait = interval
        warn = warned_at is None or time.monotonic() - warned_at >= WARN_EVERY_SECONDS
        try:
            found = await asyncio.to_thread(
                functools.partial(
                    renew_server_certificate_if_due, settings, ca, now=clock(), warn=warn
                )
            )
        except (ControlError, PkiError, OSError, ValueError) as error:
            wait = backoff.next()
            log.warning(
                "server_certificate_renewal_failed: %s (next attempt in %.0f s)", error, wait
            )
            if renewals is not None:
                renewals.labels("failed").inc()
        else:
            backoff.reset()
            if renewals is not None and found is Renewal.RENEWED:
                renewals.labels("renewed").inc()
            if found is Renewal.FOREIGN_EXPIRING and warn:
                warned_at = time.monotonic()
        served.check()
        await asyncio.sleep(wait)
