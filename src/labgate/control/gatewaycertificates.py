"""Certificates a gateway renews for itself: its server certificate and its control client
certificate, each signed from a CSR whose key the gateway made, with its current certificate as
the proof of who asks.

Who: the connection's client certificate must be the gateway's own (`bundles.authenticate_gateway`:
issued by this CA, naming `labgate:gateway:<name>` for the `<name>` in the path, revoked neither in
the database nor in the CA's inventory). There is no gateway account: revoking a gateway's
certificates is what disables it, and then it can neither fetch bundles nor renew.

What: the CSR's common name is the gateway's name; its SANs may carry the gateway's identity URI and
the DNS names and IP addresses the gateway already holds in a live certificate of this CA (issued
to it by an operator with `labgate ca issue`, or renewed from one). A renewal keeps names and never
gains one, so a stolen gateway key cannot be turned into a certificate for another host. The key
must be one the CA certifies (`labgate.pki.keys.judge_public_key`), and not the key of the
certificate presented: each renewal takes a new one. Anything else is refused
whole, naming what was wrong, never quietly trimmed.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID
from sqlalchemy import select
from sqlalchemy.orm import Session

from labgate.auth.tokens import certificate_thumbprint
from labgate.control import audit
from labgate.control.bundles import authenticate_gateway
from labgate.control.errors import InvalidInput
from labgate.control.tables import IssuedCertificate
from labgate.control.transactions import after_commit
from labgate.pki import profiles
from labgate.pki.authority import CertificateAuthority
from labgate.pki.decisions import Denied
from labgate.pki.errors import PkiError
from labgate.pki.identity import identity_of
from labgate.pki.inventory import ISSUED
from labgate.pki.issued import Issued
from labgate.pki.keys import PublicKey, judge_public_key, public_der
from labgate.pki.profiles import LeafRequest, Profile

Purpose = Literal["server", "client"]


def issue_for_gateway(
    session: Session,
    ca: CertificateAuthority,
    name: str,
    certificate_der: bytes | None,
    csr_pem: bytes,
    *,
    purpose: Purpose,
    lifetime: timedelta,
    now: datetime,
) -> Issued:
    """Sign the gateway's CSR for `purpose`, after the checks in the module doc."""
    identity = authenticate_gateway(session, ca, name, certificate_der)
    assert certificate_der is not None  # authenticate_gateway refuses a connection without one
    presented = x509.load_der_x509_certificate(certificate_der)
    request = _read(csr_pem)
    _require_own_names(request, name, identity, owned_names(session, ca, identity, now=now))
    if _public_der(x509.load_pem_x509_csr(csr_pem).public_key()) == _public_der(
        presented.public_key()
    ):
        raise InvalidInput(
            "the CSR's key is the one of the certificate presented; a renewal takes a new key",
            code="key_reused",
        )
    try:
        issued = ca.sign_csr(csr_pem, Profile.GATEWAY, lifetime=lifetime)
    except PkiError as error:
        raise InvalidInput(f"certificate request refused: {error}") from None
    if issued.identity != identity:
        # Belt and braces: the profile and the checks above make this impossible.
        ca.revoke(issued.serial, reason="unspecified")
        raise InvalidInput(f"the issued certificate would not name {identity}")
    session.add(
        IssuedCertificate(
            serial=str(issued.serial),
            subject=identity,
            expires_at=issued.certificate.not_valid_after_utc,
            revoked=False,
            thumbprint=certificate_thumbprint(issued.certificate.public_bytes(Encoding.DER)),
            issued_at=now,
            profile=Profile.GATEWAY.value,
        )
    )
    audit.record(
        session,
        at=now,
        kind="certificate.renewed",
        subject=identity,
        serial=format(issued.serial, "x"),
        purpose=purpose,
        presented=format(presented.serial_number, "x"),
    )
    after_commit(session, lambda: ca.handed_out(issued))
    return issued


def owned_names(
    session: Session, ca: CertificateAuthority, identity: str, *, now: datetime
) -> frozenset[str]:
    """The DNS names and IP addresses in the live certificates this CA issued to `identity`,
    spelt as a validated request spells them (lower-case names, canonical addresses)."""
    revoked = set(
        session.scalars(
            select(IssuedCertificate.serial).where(
                IssuedCertificate.subject == identity, IssuedCertificate.revoked.is_(True)
            )
        )
    )
    names: set[str] = set()
    for entry in ca.inventory.entries(unexpired_at=now):
        if entry.identity != identity or entry.state != ISSUED or entry.revoked_at is not None:
            continue
        if str(entry.serial) in revoked:
            continue
        certificate = x509.load_pem_x509_certificate(entry.certificate_pem)
        if identity_of(certificate) != identity:
            continue
        held = profiles.request_of(certificate, Profile.GATEWAY, entry.name)
        names.update(held.dns)
        names.update(str(ip) for ip in held.ips)
    return frozenset(names)


def _read(csr_pem: bytes) -> LeafRequest:
    """The names the CSR asks for, validated, and its key judged; the CA's own CSR reader then
    judges everything else (extensions, usages) when it signs."""
    try:
        request = x509.load_pem_x509_csr(csr_pem)
    except ValueError:
        raise InvalidInput("csr_pem is not a PEM certificate signing request") from None
    if not request.is_signature_valid:
        raise InvalidInput("the CSR's signature does not verify with its own public key")
    decision = judge_public_key(request.public_key())
    if isinstance(decision, Denied):
        raise InvalidInput(f"CSR refused: {decision.reason}", code="weak_key")
    common = [str(a.value) for a in request.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    if len(common) != 1:
        raise InvalidInput(f"the CSR must have one subject common name (CN), it has {common}")
    try:
        san = request.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        san = x509.SubjectAlternativeName([])
    except (ValueError, x509.DuplicateExtension) as error:
        raise InvalidInput(f"the CSR's extensions do not parse: {error}") from None
    try:
        return profiles.build_request(
            Profile.GATEWAY,
            common[0],
            dns=san.get_values_for_type(x509.DNSName),
            ips=[str(ip) for ip in san.get_values_for_type(x509.IPAddress)],
            uris=san.get_values_for_type(x509.UniformResourceIdentifier),
        )
    except PkiError as error:
        raise InvalidInput(f"certificate request refused: {error}") from None


def _require_own_names(
    request: LeafRequest, name: str, identity: str, owned: frozenset[str]
) -> None:
    if request.name != name:
        raise InvalidInput(
            f"the CSR's common name must be {name!r} (the gateway), got {request.name!r}",
            code="name_not_owned",
        )
    others = [u for u in request.uris if u != identity]
    if others:
        raise InvalidInput(
            f"the CSR asks for URIs {others}; a gateway's certificate names only {identity}",
            code="name_not_owned",
        )
    asked = [*request.dns, *(str(ip) for ip in request.ips)]
    foreign = [n for n in asked if n not in owned]
    if foreign:
        held = ", ".join(sorted(owned)) or "none"
        raise InvalidInput(
            f"the CSR asks for {', '.join(foreign)}, which {identity} holds in no live "
            f"certificate of this CA (it holds: {held}); a renewal keeps names, it adds none",
            code="name_not_owned",
        )


def _public_der(key: object) -> bytes:
    assert isinstance(key, PublicKey)
    return public_der(key)
