"""Signed grant bundles for gateways: grants and the CRL, as a compact JWS.

A gateway proves who it is with its client certificate (SAN `labgate:gateway:<name>`, issued by
our CA, not revoked); only then does it get a bundle addressed to it (`aud`). Each bundle has a
version greater than any issued before, from one atomic counter in the database, so a gateway can
refuse a replayed older bundle.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from sqlalchemy import update
from sqlalchemy.orm import Session

from labgate.auth.tokens import sign_claims
from labgate.control import grants
from labgate.control.errors import CertificateRequired, Forbidden, InvalidInput, NotFound
from labgate.control.runtime import Runtime
from labgate.control.tables import Counter
from labgate.pki.errors import InvalidName, PkiError
from labgate.pki.identity import gateway_uri, identity_of

BUNDLE_TYPE = "labgate-bundle+jwt"
BUNDLE_COUNTER = "bundle"


def authenticate_gateway(runtime: Runtime, name: str, certificate_der: bytes | None) -> str:
    """The gateway's identity URI if the connection's certificate is that gateway's."""
    if certificate_der is None:
        raise CertificateRequired("a gateway must connect with its client certificate")
    try:
        expected = gateway_uri(name)
    except InvalidName as error:
        raise InvalidInput(str(error)) from None
    certificate = x509.load_der_x509_certificate(certificate_der)
    presented = identity_of(certificate)
    if presented != expected:
        raise Forbidden(f"the client certificate names {presented}, not {expected}")
    try:
        entry = runtime.ca.entry_of(certificate.public_bytes(Encoding.PEM))
    except PkiError as error:
        raise Forbidden(f"the client certificate is not one this CA issued: {error}") from None
    if entry.revoked_at is not None:
        raise Forbidden(f"the certificate of {expected} is revoked")
    return expected


def build_bundle(session: Session, runtime: Runtime, *, audience: str, now: datetime) -> str:
    version = next_version(session, BUNDLE_COUNTER)
    issued = int(now.timestamp())
    expires = now + timedelta(seconds=runtime.settings.bundle_seconds)
    claims = {
        "iss": runtime.settings.issuer,
        "aud": audience,
        "iat": issued,
        "exp": int(expires.timestamp()),
        # The same instants in words, for people reading a bundle (the JWT claims are the rule).
        "issued_at": now.isoformat(),
        "expires_at": expires.isoformat(),
        "version": version,
        "grants": [
            {"identity": g.principal, "instrument": g.instrument, "level": g.level}
            for g in grants.all_grants(session)
        ],
        "crl_pem": runtime.ca.crl().decode("ascii"),
    }
    return sign_claims(runtime.keys.ring(), claims, typ=BUNDLE_TYPE)


def next_version(session: Session, name: str) -> int:
    """Bump counter `name` in one UPDATE ... RETURNING: two replicas never get the same value."""
    value = session.execute(
        update(Counter)
        .where(Counter.name == name)
        .values(value=Counter.value + 1)
        .returning(Counter.value)
    ).scalar_one_or_none()
    if value is None:
        raise NotFound(f"counter {name!r} is missing; run `labgate server migrate`")
    return int(value)
