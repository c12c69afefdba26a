"""Reaching a client to validate a challenge: `http-01` (RFC 8555 8.3) and `tls-alpn-01`
(RFC 8737), for DNS names and IP addresses (RFC 8738).

Where: only the addresses the name resolves to (or those `acme_static_hosts` lists for it,
in which case DNS is never asked), on the configured port. How long: the timeout bounds the
connect and each read, and a deadline of twice it bounds the whole exchange, so a client that
drips its answer cannot hold a worker. How much: the answer is read up to a small cap.
Redirects: followed (at most a few) only to the same host and port over plain HTTP; one to any
other host is refused without connecting there.

Each check raises the problem a failed validation records (`connection`, `incorrectResponse`,
`tls`, `unauthorized`), naming what was seen.
"""

from __future__ import annotations

import hashlib
import http.client
import ipaddress
import socket
import ssl
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.x509.oid import ObjectIdentifier

from labgate.control.acme.errors import Connection, IncorrectResponse, Tls, Unauthorized
from labgate.control.acme.policy import Identifier

# The key authorization is 43 + 1 + 43 characters; anything much longer is not one.
MAX_HTTP_BODY = 1024
MAX_REDIRECTS = 3
ACME_TLS_ALPN = "acme-tls/1"
# RFC 8737 section 6.1: id-pe-acmeIdentifier.
ACME_IDENTIFIER_OID = ObjectIdentifier("1.3.6.1.5.5.7.1.31")
_REDIRECTS = frozenset({301, 302, 303, 307, 308})


@dataclass(frozen=True, slots=True, kw_only=True)
class Reach:
    """How validation reaches clients (from the settings)."""

    http_port: int
    tls_alpn_port: int
    timeout: float
    static_hosts: Mapping[str, Sequence[str]]


def addresses_of(identifier: Identifier, reach: Reach, port: int) -> list[str]:
    """Where to connect for `identifier`: the address itself, the static entry, or DNS."""
    if identifier.type == "ip":
        return [identifier.value]
    listed = reach.static_hosts.get(identifier.value)
    if listed is not None:
        return list(listed)
    try:
        found = socket.getaddrinfo(identifier.value, port, type=socket.SOCK_STREAM)
    except OSError as error:
        raise Connection(
            f"{identifier.value} does not resolve: {error.strerror or error}"
        ) from None
    return list(dict.fromkeys(str(info[4][0]) for info in found))


def key_authorization(token: str, thumbprint: str) -> str:
    return f"{token}.{thumbprint}"


def http_01(identifier: Identifier, token: str, expected: str, reach: Reach) -> None:
    """GET /.well-known/acme-challenge/TOKEN from the identifier's own addresses."""
    deadline = time.monotonic() + 2 * reach.timeout
    path = f"/.well-known/acme-challenge/{token}"
    host = identifier.value
    for _ in range(MAX_REDIRECTS + 1):
        status, location, body = _get(identifier, path, reach, deadline)
        if status in _REDIRECTS:
            path = _same_host_redirect(identifier, location, reach.http_port)
            continue
        if status != 200:
            raise Unauthorized(
                f"http-01: http://{_netloc(host, reach.http_port)}{path} answered {status}"
            )
        if body.strip(b" \t\r\n") != expected.encode("ascii"):
            raise IncorrectResponse(
                f"http-01: the answer at {path} is not the key authorization for this token"
            )
        return
    raise Connection(f"http-01: more than {MAX_REDIRECTS} redirects")


def _get(
    identifier: Identifier, path: str, reach: Reach, deadline: float
) -> tuple[int, str, bytes]:
    errors = []
    for address in addresses_of(identifier, reach, reach.http_port):
        connection = http.client.HTTPConnection(address, reach.http_port, timeout=reach.timeout)
        try:
            connection.request(
                "GET",
                path,
                headers={
                    "Host": _netloc(identifier.value, reach.http_port),
                    "User-Agent": "labgate-acme",
                    "Accept": "*/*",
                    "Connection": "close",
                },
            )
            response = connection.getresponse()
            body = _read_capped(response, deadline)
            return response.status, response.getheader("Location") or "", body
        except (OSError, http.client.HTTPException) as error:
            errors.append(f"{address}: {type(error).__name__}: {error}")
        finally:
            connection.close()
    raise Connection(f"http-01: could not fetch from {identifier.value}: {'; '.join(errors)[:400]}")


def _read_capped(response: http.client.HTTPResponse, deadline: float) -> bytes:
    body = b""
    while len(body) <= MAX_HTTP_BODY:
        if time.monotonic() > deadline:
            raise TimeoutError("the answer took longer than the validation deadline")
        chunk = response.read1(MAX_HTTP_BODY + 1 - len(body))
        if not chunk:
            return body
        body += chunk
    raise IncorrectResponse(f"http-01: the answer is longer than {MAX_HTTP_BODY} bytes")


def _same_host_redirect(identifier: Identifier, location: str, port: int) -> str:
    parts = urlsplit(location)
    if not parts.scheme and not parts.netloc:
        if not parts.path.startswith("/"):
            raise Connection(f"http-01: redirect to a relative path {location[:100]!r}")
        return parts.path + (f"?{parts.query}" if parts.query else "")
    target_host = (parts.hostname or "").lower().rstrip(".")
    same = parts.scheme == "http" and target_host == identifier.value.lower()
    try:
        target_port = parts.port or 80
    except ValueError:
        same = False
        target_port = 0
    if not same or target_port != port:
        raise Connection(
            f"http-01: redirect to another host or port refused ({location[:100]!r}); "
            f"validation stays at http://{_netloc(identifier.value, port)}"
        )
    return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")


def _netloc(host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return shown if port == 80 else f"{shown}:{port}"


def tls_alpn_01(identifier: Identifier, expected: str, reach: Reach) -> None:
    """A TLS handshake offering only `acme-tls/1`; the certificate must name the identifier
    alone and carry the SHA-256 of the key authorization in a critical acmeIdentifier."""
    certificate = _handshake(identifier, reach)
    try:
        san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (x509.ExtensionNotFound, ValueError, x509.DuplicateExtension):
        raise Tls("tls-alpn-01: the certificate has no readable subjectAltName") from None
    names = [str(n.value).lower() for n in san if isinstance(n, x509.DNSName | x509.IPAddress)]
    if len(list(san)) != 1 or names != [identifier.value]:
        raise Unauthorized(
            f"tls-alpn-01: the certificate names {names}, not {identifier.value} alone"
        )
    try:
        extension = certificate.extensions.get_extension_for_oid(ACME_IDENTIFIER_OID)
    except x509.ExtensionNotFound:
        raise Unauthorized("tls-alpn-01: the certificate has no acmeIdentifier extension") from None
    if not extension.critical:
        raise Unauthorized("tls-alpn-01: the acmeIdentifier extension is not marked critical")
    value = extension.value
    raw = value.value if isinstance(value, x509.UnrecognizedExtension) else b""
    digest = hashlib.sha256(expected.encode("ascii")).digest()
    # DER OCTET STRING of the 32-byte digest.
    if raw != b"\x04\x20" + digest:
        raise IncorrectResponse(
            "tls-alpn-01: acmeIdentifier is not the SHA-256 of the key authorization"
        )


def _handshake(identifier: Identifier, reach: Reach) -> x509.Certificate:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    # The certificate is self-signed by design (RFC 8737 3): it is judged below, not chained.
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_alpn_protocols([ACME_TLS_ALPN])
    server_name = (
        ipaddress.ip_address(identifier.value).reverse_pointer
        if identifier.type == "ip"
        else identifier.value
    )
    errors = []
    for address in addresses_of(identifier, reach, reach.tls_alpn_port):
        try:
            with (
                socket.create_connection(
                    (address, reach.tls_alpn_port), timeout=reach.timeout
                ) as raw,
                context.wrap_socket(raw, server_hostname=server_name) as tls,
            ):
                if tls.selected_alpn_protocol() != ACME_TLS_ALPN:
                    raise Tls(
                        f"tls-alpn-01: {address} did not select {ACME_TLS_ALPN} "
                        f"(chose {tls.selected_alpn_protocol()!r})"
                    )
                der = tls.getpeercert(binary_form=True)
                if not der:
                    raise Tls(f"tls-alpn-01: {address} presented no certificate")
                return x509.load_der_x509_certificate(der)
        except (OSError, ValueError) as error:
            errors.append(f"{address}: {type(error).__name__}: {error}")
    raise Connection(
        f"tls-alpn-01: no handshake with {identifier.value}: {'; '.join(errors)[:400]}"
    )
