"""Revoking a certificate through ACME (RFC 8555 7.6): signed by the account that ordered it
(`kid`), or by the certificate's own key (`jwk`). Any other signer is refused, and so is a
certificate this server did not issue through ACME.

The revocation itself is the control server's one path (`labgate.control.certificates.
mark_revoked`): recorded in the database in this transaction, listed in the next CRL and bundle,
copied to the CA's inventory after the commit.
"""

from __future__ import annotations

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from sqlalchemy import select
from sqlalchemy.orm import Session

from labgate.auth.keyring import b64url_decode
from labgate.control.acme import jws
from labgate.control.acme.context import AcmeContext
from labgate.control.acme.errors import AlreadyRevoked, BadRevocationReason, Malformed, Unauthorized
from labgate.control.acme.messages import Signed
from labgate.control.certificates import mark_revoked
from labgate.control.tables import AcmeOrder, IssuedCertificate

# RFC 5280 CRLReason codes ACME clients send, by the name labgate's CA uses for each.
# certificateHold (6) and removeFromCRL (8) are left out: labgate cannot un-revoke.
REASON_CODES = {
    0: "unspecified",
    1: "keyCompromise",
    2: "cACompromise",
    3: "affiliationChanged",
    4: "superseded",
    5: "cessationOfOperation",
    9: "privilegeWithdrawn",
    10: "aACompromise",
}


def revoke(context: AcmeContext, session: Session, signed: Signed) -> None:
    payload = signed.request.require_payload()
    text = payload.get("certificate")
    if not isinstance(text, str):
        raise Malformed("revoke-cert needs certificate, the base64url DER of the certificate")
    try:
        certificate = x509.load_der_x509_certificate(b64url_decode(text))
    except ValueError:
        raise Malformed("certificate is not the base64url DER of an X.509 certificate") from None
    code = payload.get("reason", 0)
    if not isinstance(code, int) or isinstance(code, bool) or code not in REASON_CODES:
        raise BadRevocationReason(
            f"reason {code!r} is not one of {sorted(REASON_CODES)} (RFC 5280 CRLReason)"
        )
    serial = str(certificate.serial_number)
    order = session.scalar(select(AcmeOrder).where(AcmeOrder.certificate_serial == serial))
    row = session.get(IssuedCertificate, serial)
    if (
        order is None
        or row is None
        or order.certificate_pem is None
        or not _same(certificate, order.certificate_pem)
    ):
        raise Unauthorized("this server issued no such certificate through ACME")
    by = _authorise(signed, certificate, order)
    if row.revoked:
        raise AlreadyRevoked(f"certificate {certificate.serial_number:x} is already revoked")
    mark_revoked(
        session,
        context.ca.inventory,
        row,
        reason=REASON_CODES[code],
        now=context.clock(),
        by=by,
    )
    session.flush()


def _authorise(signed: Signed, certificate: x509.Certificate, order: AcmeOrder) -> str:
    if signed.request.kid is not None:
        account = signed.require_account()
        if account.id != order.account_id:
            raise Unauthorized("this account did not order this certificate")
        return f"acme:account:{account.id}"
    if jws.spki(signed.key) != jws.spki(certificate.public_key()):
        raise Unauthorized(
            "the request is signed neither by the ordering account nor by the certificate's key"
        )
    return f"acme:certificate-key:{certificate.serial_number:x}"


def _same(certificate: x509.Certificate, chain_pem: str) -> bool:
    leaf = x509.load_pem_x509_certificates(chain_pem.encode("ascii"))[0]
    return leaf.public_bytes(Encoding.DER) == certificate.public_bytes(Encoding.DER)
