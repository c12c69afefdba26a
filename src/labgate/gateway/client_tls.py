"""The TLS context that faces clients, and what the gateway reads from a client certificate.

Policy: Mozilla's "intermediate" profile (`labgate.pki.tlsconfig.intermediate_profile`), a client
certificate required and verified by OpenSSL against `client_ca` and, when configured, the CRL of
the issuing CA (leaf only: the CA's own revocation would be a new CA).
A context is built once per (re)load and never changed afterwards: a reload builds a new one, so
handshakes already under way finish with the files they started with.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import ssl
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from labgate.gateway.errors import ConfigError
from labgate.pki.identity import labgate_uris
from labgate.pki.tlsconfig import intermediate_profile


@dataclass(frozen=True, slots=True, kw_only=True)
class TlsFiles:
    cert: Path
    key: Path
    client_ca: Path
    crls: tuple[Path, ...] = ()  # the configured CRL and the control server's, when present


@dataclass(frozen=True, slots=True, kw_only=True)
class PeerCertificate:
    """The verified client certificate, as the session and the audit log need it."""

    identity: str | None  # the labgate: SAN URI, if there is exactly one
    identities: tuple[str, ...]  # every labgate: SAN URI (more than one names nobody)
    fingerprint: str  # sha256 hex of the DER, for the audit log
    serial: int
    issuer: x509.Name
    not_after: datetime
    anchor: bytes | None = None  # DER of the trust anchor the chain was verified to, if known


def build_client_context(files: TlsFiles, *, session_cache: bool = True) -> ssl.SSLContext:
    """A fresh server-side context for client connections; ConfigError names a bad file.

    `session_cache`: TLS 1.3 tickets name a session kept in this context's memory (cheap to
    make and to resume; see below); without it they carry the session, encrypted."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    intermediate_profile(context)  # the profile every labgate server offers
    context.verify_mode = ssl.CERT_REQUIRED
    # One TLS 1.3 ticket per connection, not OpenSSL's two: a client resumes with one ticket
    # per connection, and each ticket costs the server a copy of the session, client
    # certificate decoded again included (measured: a twelfth of a full handshake's CPU).
    context.num_tickets = 1
    # Stateful TLS 1.3 tickets (session_cache): the session stays in this context's cache and
    # the ticket only names it. A stateless ticket carries the session encrypted, and OpenSSL
    # 3.0 makes one by encoding the session, client certificate included, and decoding it again:
    # measured, a twentieth of a full handshake's CPU, and resuming from one costs as much again.
    # The cache is per context, as tickets were: a reload still ends every session before it.
    if session_cache:
        context.options |= ssl.OP_NO_TICKET
    _load(context.load_cert_chain, files.cert, files.key, what="gateway.cert / gateway.key")
    _load(context.load_verify_locations, files.client_ca, what="gateway.client_ca")
    for crl in files.crls:
        _load(context.load_verify_locations, crl, what="gateway.crl")
    if files.crls:
        context.verify_flags |= ssl.VERIFY_CRL_CHECK_LEAF
    return context


def _load(load: object, *paths: Path, what: str) -> None:
    try:
        load(*(str(p) for p in paths))  # type: ignore[operator]
    except (ssl.SSLError, OSError, ValueError) as exc:
        names = ", ".join(str(p) for p in paths)
        raise ConfigError(f"{what}: cannot load {names}: {exc}") from exc


def peer_certificate(
    ssl_object: ssl.SSLObject | ssl.SSLSocket, *, anchors: frozenset[bytes]
) -> PeerCertificate | None:
    """The verified client certificate; `anchors` are the client CA file's certificates the
    handshake was verified against. With only one, the chain's anchor is that one and is not
    read (`anchor` None: `still_trusted` then judges by the whole set, which is the same)."""
    der = ssl_object.getpeercert(binary_form=True)
    if not der:
        return None
    certificate = _read_certificate(der)
    if len(anchors) == 1:
        return certificate
    return dataclasses.replace(certificate, anchor=_anchor(ssl_object))


@functools.lru_cache(maxsize=1024)
def _read_certificate(der: bytes) -> PeerCertificate:
    # What a certificate says depends on its bytes alone; a client that connects for every
    # command (as qslib does) presents the same bytes each time. OpenSSL verified it already.
    certificate = x509.load_der_x509_certificate(der)
    identities = labgate_uris(certificate)
    return PeerCertificate(
        identity=identities[0] if len(identities) == 1 else None,
        identities=identities,
        fingerprint=hashlib.sha256(der).hexdigest(),
        serial=certificate.serial_number,
        issuer=certificate.issuer,
        not_after=certificate.not_valid_after_utc,
    )


def _anchor(ssl_object: ssl.SSLObject | ssl.SSLSocket) -> bytes | None:
    # The verified chain is public API only from Python 3.13; 3.11 has it on the private object.
    # Without it a reload cannot tell which sessions a removed CA had admitted (see trust_anchors).
    # A resumed TLS session has no verified chain (None): nothing was verified this time, and
    # the caller falls back on the set of anchors in force when the ticket's context was built.
    try:
        chain = ssl_object._sslobj.get_verified_chain()  # type: ignore[union-attr]
        if not chain:
            return None
        return bytes(chain[-1].public_bytes(ssl._ssl.ENCODING_DER))  # type: ignore[attr-defined]
    except (AttributeError, IndexError, ValueError):
        return None


def still_trusted(
    certificate: PeerCertificate, admitted_under: frozenset[bytes], anchors: frozenset[bytes]
) -> bool:
    """Whether a session admitted under `admitted_under` (the client CA file's certificates when
    its TLS context was built) is still trusted by a client CA file holding `anchors`.

    With a known anchor: that anchor is still there. Without one (a resumed TLS session, whose
    chain is not verified again): every anchor that could have admitted it is still there. A TLS
    ticket resumes only on the context that issued it, and every reload builds new contexts, so
    `admitted_under` is the set the original full handshake was verified against.
    """
    if certificate.anchor is not None:
        return certificate.anchor in anchors
    return admitted_under <= anchors


def trust_anchors(client_ca: Path) -> frozenset[bytes]:
    """DER of every certificate in the client CA file, to find sessions a new file no longer
    trusts."""
    try:
        certificates = x509.load_pem_x509_certificates(client_ca.read_bytes())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"gateway.client_ca: cannot read {client_ca}: {exc}") from exc
    return frozenset(c.public_bytes(Encoding.DER) for c in certificates)
