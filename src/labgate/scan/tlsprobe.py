"""What one port offers: first contact (a banner, or silence and TLS), the protocol matrix from
SSLv3 to TLS 1.3, the accepted suites, the certificate, and SCPI over TLS.

Every connection comes from the scan's `Budget`. A probe that times out is `Inconclusive` and
tells the budget the endpoint stopped answering; nothing is inferred from it.
"""

from __future__ import annotations

import datetime
import socket
import ssl
from collections.abc import Sequence
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa

from labgate.gateway.pins import spki_pin
from labgate.scan import hello, scpiprobe
from labgate.scan.budget import Budget
from labgate.scan.errors import BudgetSpent, EndpointSilent
from labgate.scan.hello import Accepted, Refused, Version
from labgate.scan.scpiprobe import Channel, ScpiFacts, ScpiProbeError

# An instrument speaks first (`READy ...`) at once; a TLS server waits for the ClientHello.
BANNER_SECONDS = 1.5
READ_SECONDS = 5.0
READ_CHUNK = 16 * 1024


@dataclass(frozen=True, slots=True, kw_only=True)
class Inconclusive:
    reason: str


Answer = Accepted | Refused | Inconclusive


@dataclass(frozen=True, slots=True, kw_only=True)
class Certificate:
    """Facts about the leaf certificate a port showed."""

    subject: str
    issuer: str
    self_signed: bool
    not_after: datetime.datetime
    days_left: int
    key: str  # "RSA 2048", "EC secp256r1", ...
    key_bits: int | None
    key_type: str
    pin: str


@dataclass(slots=True, kw_only=True)
class PortFacts:
    """Everything learnt about one port; filled in phase by phase."""

    port: int
    state: str = "unknown"  # open, closed, silent, inconclusive
    service: str = "unknown"  # scpi, tls, other, none
    banner_bytes: str | None = None  # first bytes of a service that is not SCPI
    scpi: ScpiFacts | None = None
    scpi_error: str | None = None  # why SCPI could not be spoken (client certificate needed...)
    scpi_transport: str | None = None  # "plain" or the TLS version SCPI was spoken over
    versions: dict[Version, Answer] = field(default_factory=dict)
    suites: dict[Version, list[int]] = field(default_factory=dict)
    suites_complete: dict[Version, bool] = field(default_factory=dict)
    certificate: Certificate | None = None
    certificate_der: bytes | None = None

    @property
    def wants_client_certificate(self) -> bool:
        return any(
            isinstance(answer, Accepted) and answer.wants_client_certificate
            for answer in self.versions.values()
        )

    @property
    def accepted(self) -> list[Version]:
        return [v for v, a in self.versions.items() if isinstance(a, Accepted)]


def first_contact(
    budget: Budget, host: str, port: int, *, passwords: Sequence[str] | None
) -> PortFacts:
    """Connect once: an instrument's banner (and then its SCPI probe on the same connection),
    another service's bytes, or silence, which is then asked for TLS 1.3."""
    facts = PortFacts(port=port)
    try:
        with budget.connect(host, port) as sock:
            facts.state = "open"
            sock.settimeout(BANNER_SECONDS)
            try:
                first = sock.recv(READ_CHUNK)
            except TimeoutError:
                first = None
            sock.settimeout(READ_SECONDS)
            if first is None:
                facts.service = "tls"
                facts.versions[Version.TLS13] = _ask(budget, sock, Version.TLS13, host)
                _note_certificate(facts, facts.versions[Version.TLS13])
                return facts
            if not first:
                facts.service = "none"
                return facts
            if not first.startswith(b"READy"):
                facts.service = "other"
                facts.banner_bytes = first[:64].decode("ascii", "backslashreplace")
                return facts
            facts.service = "scpi"
            facts.scpi_transport = "plain"
            channel, line = _plain_channel(sock, first)
            try:
                facts.scpi = scpiprobe.probe(channel, line, passwords=passwords)
            except ScpiProbeError as exc:
                facts.scpi_error = str(exc)
            except TimeoutError:
                facts.scpi_error = "the instrument stopped answering mid-session"
                budget.stop(f"port {port} stopped answering SCPI")
    except ConnectionRefusedError:
        facts.state = "closed"
        facts.service = "none"
    except (EndpointSilent, BudgetSpent) as exc:
        facts.state = "inconclusive"
        facts.scpi_error = str(exc)
    except OSError as exc:
        facts.state = "inconclusive"
        facts.scpi_error = f"{type(exc).__name__}: {exc}"
    return facts


def version_matrix(budget: Budget, host: str, facts: PortFacts) -> None:
    """Ask for each protocol not yet asked, newest first, one connection each."""
    for version in (Version.TLS13, Version.TLS12, Version.TLS11, Version.TLS10, Version.SSL3):
        if version in facts.versions:
            continue
        facts.versions[version] = _connect_and_ask(budget, host, facts.port, version, None)
        _note_certificate(facts, facts.versions[version])


def enumerate_suites(budget: Budget, host: str, facts: PortFacts, version: Version) -> None:
    """Which suites `version` accepts: offer all, note the server's choice, offer the rest, until
    it refuses. One connection per accepted suite, plus one. TLS 1.3 is not enumerated: every
    TLS 1.3 suite is an AEAD with ephemeral key exchange, and the one chosen is recorded."""
    first = facts.versions.get(version)
    if not isinstance(first, Accepted):
        return
    found = facts.suites.setdefault(version, [first.suite])
    if version is Version.TLS13:
        facts.suites_complete[version] = False
        return
    facts.suites_complete[version] = False
    while True:
        remaining = [suite for suite in hello.LEGACY_SUITES if suite not in found]
        if not remaining:
            facts.suites_complete[version] = True
            return
        answer = _connect_and_ask(budget, host, facts.port, version, remaining)
        if isinstance(answer, Inconclusive):
            return
        if isinstance(answer, Refused):
            facts.suites_complete[version] = True
            return
        if answer.suite in found:  # a server that ignores the offer: stop, honestly incomplete
            return
        found.append(answer.suite)


def tls_session(budget: Budget, host: str, facts: PortFacts) -> None:
    """A full handshake on the best accepted protocol, then the SCPI probe over it (the
    certificate too, for a TLS 1.3-only server, whose certificate is never sent in the clear)."""
    accepted = facts.accepted
    if not accepted:
        return
    try:
        with budget.connect(host, facts.port) as sock:
            sock.settimeout(READ_SECONDS)
            if Version.TLS13 in accepted or Version.TLS12 in accepted:
                channel, transport, der = _modern_channel(sock, host)
            else:
                channel, transport, der = _legacy_channel(sock, max(accepted, key=_order))
            facts.scpi_transport = transport
            if facts.certificate is None and der:
                facts.certificate_der = der
                facts.certificate = describe_certificate(der)
            first = channel.message()
            facts.scpi = scpiprobe.probe(channel, first + b"\n", passwords=None)
            facts.service = "scpi+tls"
    except ssl.SSLError as exc:
        facts.scpi_error = _tls_refusal(exc, asked=facts.wants_client_certificate)
    except ScpiProbeError as exc:
        facts.scpi_error = str(exc)
        if facts.wants_client_certificate:
            facts.scpi_error = CLIENT_CERTIFICATE_NEEDED
    except TimeoutError:
        facts.scpi_error = "no SCPI banner after the handshake (timed out)"
    except (EndpointSilent, BudgetSpent) as exc:
        facts.scpi_error = f"not probed: {exc}"
    except OSError as exc:
        facts.scpi_error = f"{type(exc).__name__}: {exc}"
    except Exception as exc:  # tlslite raises its own tree; a failed handshake is a fact here
        facts.scpi_error = f"TLS handshake failed: {type(exc).__name__}: {exc}"


def describe_certificate(der: bytes) -> Certificate:
    certificate = x509.load_der_x509_certificate(der)
    key = certificate.public_key()
    bits: int | None = None
    if isinstance(key, rsa.RSAPublicKey):
        kind, bits, shown = "RSA", key.key_size, f"RSA {key.key_size}"
    elif isinstance(key, ec.EllipticCurvePublicKey):
        kind, bits, shown = "EC", key.curve.key_size, f"EC {key.curve.name}"
    elif isinstance(key, dsa.DSAPublicKey):
        kind, bits, shown = "DSA", key.key_size, f"DSA {key.key_size}"
    elif isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
        kind = shown = "Ed25519" if isinstance(key, ed25519.Ed25519PublicKey) else "Ed448"
    else:
        kind = shown = type(key).__name__
    now = datetime.datetime.now(datetime.UTC)
    not_after = certificate.not_valid_after_utc
    return Certificate(
        subject=certificate.subject.rfc4514_string(),
        issuer=certificate.issuer.rfc4514_string(),
        self_signed=certificate.subject == certificate.issuer,
        not_after=not_after,
        days_left=(not_after - now).days,
        key=shown,
        key_bits=bits,
        key_type=kind,
        pin=spki_pin(der),
    )


# -------------------------------------------------------------------------- the plumbing


def _order(version: Version) -> int:
    return hello.ALL_VERSIONS.index(version)


def _suites_for(version: Version) -> Sequence[int]:
    return hello.TLS13_SUITES if version is Version.TLS13 else hello.LEGACY_SUITES


def _server_name(host: str) -> str | None:
    try:
        socket.inet_pton(socket.AF_INET6 if ":" in host else socket.AF_INET, host)
    except OSError:
        return host
    return None  # SNI carries names only


def _ask(budget: Budget, sock: socket.socket, version: Version, host: str) -> Answer:
    try:
        return hello.ask(sock, version, _suites_for(version), _server_name(host))
    except TimeoutError:
        budget.stop(f"no answer to a {version} ClientHello within {READ_SECONDS:g} s")
        return Inconclusive(reason=f"no answer within {READ_SECONDS:g} s")
    except OSError as exc:
        return Refused(reason=f"{type(exc).__name__}")


def _connect_and_ask(
    budget: Budget, host: str, port: int, version: Version, suites: Sequence[int] | None
) -> Answer:
    try:
        with budget.connect(host, port) as sock:
            sock.settimeout(READ_SECONDS)
            try:
                return hello.ask(sock, version, suites or _suites_for(version), _server_name(host))
            except TimeoutError:
                budget.stop(f"no answer to a {version} ClientHello within {READ_SECONDS:g} s")
                return Inconclusive(reason=f"no answer within {READ_SECONDS:g} s")
    except (EndpointSilent, BudgetSpent) as exc:
        return Inconclusive(reason=str(exc))
    except ConnectionRefusedError:
        return Inconclusive(reason="the port refused the connection")
    except OSError as exc:
        if isinstance(exc, ConnectionResetError | BrokenPipeError):
            return Refused(reason="the server reset the connection")
        return Inconclusive(reason=f"{type(exc).__name__}: {exc}")


def _note_certificate(facts: PortFacts, answer: Answer) -> None:
    if facts.certificate is None and isinstance(answer, Accepted) and answer.certificates:
        facts.certificate_der = answer.certificates[0]
        facts.certificate = describe_certificate(answer.certificates[0])


def _plain_channel(sock: socket.socket, first: bytes) -> tuple[Channel, bytes]:
    pending = [first]

    def recv() -> bytes:
        if pending:
            return pending.pop()
        return sock.recv(READ_CHUNK)

    channel = Channel(sock.sendall, recv)
    return channel, channel.message() + b"\n"


def _modern_channel(sock: socket.socket, host: str) -> tuple[Channel, str, bytes | None]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    # A scanner reads what is there; the pin comparison is what identifies the instrument.
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    tls = context.wrap_socket(sock, server_hostname=_server_name(host))
    return (
        Channel(tls.sendall, lambda: tls.recv(READ_CHUNK)),
        str(tls.version()),
        (tls.getpeercert(binary_form=True)),
    )


def _legacy_channel(sock: socket.socket, version: Version) -> tuple[Channel, str, bytes | None]:
    from tlslite import HandshakeSettings, TLSConnection

    connection = TLSConnection(sock)
    settings = HandshakeSettings()
    settings.minVersion = version.wire
    settings.maxVersion = version.wire
    connection.handshakeClientCert(settings=settings)
    chain = connection.session.serverCertChain
    der = bytes(chain.x509List[0].bytes) if chain and chain.x509List else None

    def recv() -> bytes:
        return bytes(connection.read(max=READ_CHUNK))

    return Channel(connection.write, recv), version.value, der


CLIENT_CERTIFICATE_NEEDED = (
    "the server requires a client certificate; SCPI is not reachable without one"
)


def _tls_refusal(exc: ssl.SSLError, *, asked: bool) -> str:
    text = str(exc)
    if "CERTIFICATE_REQUIRED" in text.upper() or (asked and "HANDSHAKE_FAILURE" in text.upper()):
        return CLIENT_CERTIFICATE_NEEDED
    return f"TLS handshake failed: {exc.reason or text}"
