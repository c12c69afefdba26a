"""Signed grant bundles for gateways: the live grants for the gateway's instruments and the CRL,
as a compact JWS.

A gateway proves who it is with its client certificate (SAN `labgate:gateway:<name>`, issued by
our CA, not revoked); only then does it get a bundle addressed to it (`aud`). Each bundle has a
`version` greater than any issued before, from one atomic counter in the database, so a gateway can
refuse a replayed older bundle; and the `changes` number it was built at, which the gateway sends
back as `after` to wait for the next change (the long poll, `labgate.control.changefeed`).

A bundle carries the grants for the instruments that gateway serves and no others: those set for
it in `gateway_instruments`, or else those it names in its request (`instrument=`), intersected
with the configured ones when both are given. Grants on `*` go to every gateway.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from sqlalchemy.orm import Session

from labgate.auth.decisions import Denied
from labgate.auth.keyring import KeyRing
from labgate.auth.tokens import sign_claims
from labgate.control.certificates import crl_revocations
from labgate.control.errors import CertificateRequired, Forbidden, InvalidInput
from labgate.control.standing import (
    CHANGES_COUNTER,
    certificate_revoked,
    current_value,
    live_grants,
    next_value,
    presented,
)
from labgate.pki.authority import CertificateAuthority
from labgate.pki.errors import InvalidName, PkiError
from labgate.pki.identity import gateway_uri

BUNDLE_TYPE = "labgate-bundle+jwt"
BUNDLE_COUNTER = "bundle"
# The instrument names a gateway may give (the same alphabet as a grant's instrument).
INSTRUMENT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
MAX_INSTRUMENTS = 256


def authenticate_gateway(
    session: Session, ca: CertificateAuthority, name: str, certificate_der: bytes | None
) -> str:
    """The gateway's identity URI if the connection's certificate is that gateway's, issued by
    this CA and revoked neither in the database nor in the CA's inventory."""
    if certificate_der is None:
        raise CertificateRequired("a gateway must connect with its client certificate")
    try:
        expected = gateway_uri(name)
    except InvalidName as error:
        raise InvalidInput(str(error)) from None
    certificate = presented(certificate_der)
    if certificate.identity != expected:
        raise Forbidden(f"the client certificate names {certificate.identity}, not {expected}")
    der = x509.load_der_x509_certificate(certificate_der)
    try:
        ca.entry_of(der.public_bytes(Encoding.PEM))
    except PkiError as error:
        raise Forbidden(f"the client certificate is not one this CA issued: {error}") from None
    decision = certificate_revoked(session, certificate, ca.inventory)
    if isinstance(decision, Denied):
        raise Forbidden(f"the certificate of {expected} is revoked")
    return expected


def instruments_for(
    configured: Mapping[str, Sequence[str]], name: str, asked: Sequence[str]
) -> tuple[str, ...]:
    """The instruments whose grants gateway `name` gets."""
    if len(asked) > MAX_INSTRUMENTS:
        raise InvalidInput(f"a gateway may name at most {MAX_INSTRUMENTS} instruments")
    for instrument in asked:
        if not INSTRUMENT_NAME.match(instrument):
            raise InvalidInput(f"instrument name {instrument!r} is not a valid instrument name")
    fixed = configured.get(name)
    if fixed is not None:
        return tuple(i for i in fixed if i in asked) if asked else tuple(fixed)
    if not asked:
        raise InvalidInput(
            f"gateway {name!r} named no instruments (instrument=...) and the server has none "
            "set for it (gateway_instruments): its bundle would carry nothing"
        )
    return tuple(dict.fromkeys(asked))


def build_bundle(
    session: Session,
    *,
    ca: CertificateAuthority,
    ring: KeyRing,
    issuer: str,
    lifetime: timedelta,
    audience: str,
    instruments: Sequence[str],
    now: datetime,
) -> str:
    # The change number is read before the grants: a bundle never claims a state newer than the
    # one it carries (at worst the gateway asks again at once).
    changes = current_value(session, CHANGES_COUNTER)
    version = next_value(session, BUNDLE_COUNTER)
    issued = int(now.timestamp())
    expires = now + lifetime
    claims = {
        "iss": issuer,
        "aud": audience,
        "iat": issued,
        "exp": int(expires.timestamp()),
        # The same instants in words, for people reading a bundle (the JWT claims are the rule).
        "issued_at": now.isoformat(),
        "expires_at": expires.isoformat(),
        "version": version,
        "changes": changes,
        "instruments": list(instruments),
        "grants": [
            {"identity": g.principal, "instrument": g.instrument, "level": g.level}
            for g in live_grants(session, instruments=instruments)
        ],
        # One CRL per live issuing CA (after a rotation, the retired one's too).
        "crl_pem": ca.crl_pem_bundle(also=crl_revocations(session, now=now)).decode("ascii"),
    }
    return sign_claims(ring, claims, typ=BUNDLE_TYPE)
