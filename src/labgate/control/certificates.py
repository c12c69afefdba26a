"""Client certificates for logged-in users and devices, from their own CSRs.

The certificate names the caller and no one else: its only SAN is the caller's identity URI.
A CSR that asks for any other name (another common name, DNS names, other URIs) is refused
rather than quietly trimmed, and the issued certificate is checked once more before it leaves.
"""

from __future__ import annotations

from datetime import datetime

from cryptography import x509
from cryptography.x509.oid import NameOID
from sqlalchemy.orm import Session

from labgate.control import audit
from labgate.control.errors import InvalidInput
from labgate.control.principals import Principal
from labgate.control.tables import IssuedCertificate
from labgate.pki.authority import CertificateAuthority
from labgate.pki.errors import PkiError
from labgate.pki.issued import Issued
from labgate.pki.profiles import Profile


def issue_for(
    session: Session,
    ca: CertificateAuthority,
    principal: Principal,
    csr_pem: bytes,
    *,
    days: int,
    now: datetime,
) -> Issued:
    _require_only_own_names(principal, csr_pem)
    profile = Profile.DEVICE if principal.kind == "device" else Profile.CLIENT
    try:
        issued = ca.sign_csr(csr_pem, profile, days=days)
    except PkiError as error:
        raise InvalidInput(f"certificate request refused: {error}") from None
    if _san_values(issued.certificate) != [principal.identity]:
        # Belt and braces: the CA's profile and our check above should make this impossible.
        ca.revoke(issued.serial, reason="unspecified")
        raise InvalidInput(f"the issued certificate would name more than {principal.identity}")
    session.add(
        IssuedCertificate(
            serial=str(issued.serial),
            subject=principal.identity,
            expires_at=issued.certificate.not_valid_after_utc,
            revoked=False,
        )
    )
    audit.record(
        session,
        at=now,
        kind="certificate.issued",
        subject=principal.identity,
        serial=format(issued.serial, "x"),
    )
    # The CA's second phase: from here the certificate is in the caller's hands.
    ca.handed_out(issued)
    return issued


def _require_only_own_names(principal: Principal, csr_pem: bytes) -> None:
    try:
        csr = x509.load_pem_x509_csr(csr_pem)
    except ValueError:
        raise InvalidInput("csr_pem is not a PEM certificate signing request") from None
    if not csr.is_signature_valid:
        raise InvalidInput("the CSR's signature does not verify with its own public key")
    names = [a.value for a in csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    if names != [principal.name]:
        raise InvalidInput(
            f"the CSR's common name must be exactly {principal.name!r} (the caller), got {names}"
        )
    try:
        san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return
    except (ValueError, x509.DuplicateExtension) as error:
        raise InvalidInput(f"the CSR's extensions do not parse: {error}") from None
    asked = [str(getattr(name, "value", name)) for name in san]
    if any(value != principal.identity for value in asked):
        raise InvalidInput(
            f"the CSR asks for names {asked}; a certificate from here names only "
            f"{principal.identity}"
        )


def _san_values(certificate: x509.Certificate) -> list[str]:
    try:
        san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [str(getattr(name, "value", name)) for name in san]
