"""Learn an instrument's pin: connect as the gateway will, and report the public key it shows.

An instrument's certificate is self-signed, so the gateway recognises it by its public key
(`upstream_pin`). OpenSSL 3 cannot reach the SSLv3 firmware to read it, so this speaks each
upstream scheme the way the gateway does: Python `ssl` for tls://, tlslite-ng for sslv3://.
Whoever runs it should do so on a network path they trust (the instrument's own segment), since
it believes whatever answers: that is the one moment of trust-on-first-use.
"""

from __future__ import annotations

import socket
import ssl
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509

from labgate.gateway.config import Upstream, UpstreamScheme
from labgate.gateway.errors import UpstreamError
from labgate.gateway.pins import spki_pin
from labgate.gateway.upstream import legacy_client_handshake, pin_only_context


@dataclass(frozen=True, slots=True, kw_only=True)
class Probe:
    """What an instrument showed: its pin and, for a person to check, where and what."""

    upstream: Upstream
    pin: str
    protocol: str
    subject: str
    not_after: datetime


def probe(upstream: Upstream, *, timeout: float = 10.0) -> Probe:
    """Handshake with the instrument at `upstream` and read its certificate; UpstreamError names
    the address and what went wrong."""
    if upstream.scheme is UpstreamScheme.PLAIN:
        raise UpstreamError(f"{upstream} is plain TCP: it has no certificate to pin")
    address = (upstream.endpoint.host, upstream.endpoint.port)
    try:
        if upstream.scheme is UpstreamScheme.TLS:
            der, protocol = _modern(address, timeout)
        else:
            der, protocol = _legacy(address, timeout)
    except (OSError, ssl.SSLError) as exc:
        raise UpstreamError(f"{upstream}: {exc}") from None
    if der is None:
        raise UpstreamError(f"{upstream} sent no certificate")
    certificate = x509.load_der_x509_certificate(der)
    return Probe(
        upstream=upstream,
        pin=spki_pin(der),
        protocol=protocol,
        subject=certificate.subject.rfc4514_string(),
        not_after=certificate.not_valid_after_utc,
    )


def _modern(address: tuple[str, int], timeout: float) -> tuple[bytes | None, str]:
    with (
        socket.create_connection(address, timeout) as raw,
        pin_only_context().wrap_socket(raw) as tls,
    ):
        return tls.getpeercert(binary_form=True), str(tls.version())


# tlslite reports (major, minor) record versions.
_LEGACY_NAMES = {(3, 0): "SSLv3", (3, 1): "TLSv1.0", (3, 2): "TLSv1.1", (3, 3): "TLSv1.2"}


def _legacy(address: tuple[str, int], timeout: float) -> tuple[bytes | None, str]:
    from tlslite.errors import TLSError

    with socket.create_connection(address, timeout) as raw:
        try:
            connection, der = legacy_client_handshake(raw)
        except TLSError as exc:
            raise OSError(f"SSLv3/TLS handshake failed: {exc}") from None
        version = tuple(connection.version)
        return der, _LEGACY_NAMES.get(version, ".".join(map(str, version)))
