"""Orders, authorizations and finalization (RFC 8555 7.4, 7.5), and the certificate download.

An order names identifiers the account's policy covers; each gets one authorization with an
`http-01` and a `tls-alpn-01` challenge. The order is `ready` once every authorization is valid,
and finalizing it signs the CSR through the CA's server profile, in the request: the order goes
straight to `valid`. The certificate is recorded in `issued_certificates`, so revoking it
(through ACME or the API) reaches the CRL and the bundles like any other.

Every lookup is by the requesting account: another account's order, authorization, challenge
or certificate is answered as not found, so ids cannot be probed.
"""

from __future__ import annotations

import ipaddress
import json
import secrets
from datetime import datetime, timedelta
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from labgate.auth.keyring import b64url_decode
from labgate.auth.tokens import certificate_thumbprint
from labgate.control import audit
from labgate.control.acme import jws
from labgate.control.acme.context import AcmeContext, Urls
from labgate.control.acme.errors import (
    BadCsr,
    Malformed,
    NotFound,
    OrderNotReady,
    RateLimited,
    RejectedIdentifier,
    Subproblem,
    UnsupportedIdentifier,
)
from labgate.control.acme.external import external_key
from labgate.control.acme.messages import Signed
from labgate.control.acme.policy import Identifier, NamePolicy
from labgate.control.acme.resources import CertificateChain, Resource, timestamp
from labgate.control.tables import (
    AcmeAccount,
    AcmeAuthorization,
    AcmeChallenge,
    AcmeExternalKey,
    AcmeOrder,
    IssuedCertificate,
)
from labgate.control.transactions import after_commit
from labgate.pki import names
from labgate.pki.errors import InvalidName, PkiError
from labgate.pki.profiles import Profile

ID_BYTES = 16
TOKEN_BYTES = 32
CHALLENGE_TYPES = ("http-01", "tls-alpn-01")
# An order is one client run; a day is ample to answer its challenges and finalize.
ORDER_LIFETIME = timedelta(days=1)
RATE_WINDOW = timedelta(hours=1)
# A certificate for more names than this is a list, not a host; CAs commonly cap near 100.
MAX_IDENTIFIERS = 50


def new_order(context: AcmeContext, session: Session, urls: Urls, signed: Signed) -> Resource:
    account = signed.require_account()
    payload = signed.request.require_payload()
    if payload.get("notBefore") is not None or payload.get("notAfter") is not None:
        raise Malformed("notBefore and notAfter are not supported: certificates start now")
    identifiers = parse_identifiers(payload.get("identifiers"))
    _require_policy(session, account, identifiers, eab_required=context.eab_required)
    now = context.clock()
    _require_rate(session, account, limit=context.settings.acme_orders_per_hour, now=now)
    order = AcmeOrder(
        id=secrets.token_urlsafe(ID_BYTES),
        account_id=account.id,
        status="pending",
        identifiers=json.dumps([i.as_json() for i in identifiers]),
        created_at=now,
        expires_at=now + ORDER_LIFETIME,
    )
    session.add(order)
    # No relationships are mapped, so the unit of work does not order the inserts by their
    # foreign keys: each level is flushed before the next.
    session.flush()
    for identifier in identifiers:
        authz = AcmeAuthorization(
            id=secrets.token_urlsafe(ID_BYTES),
            order_id=order.id,
            account_id=account.id,
            identifier_type=identifier.type,
            identifier_value=identifier.value,
            status="pending",
            expires_at=order.expires_at,
        )
        session.add(authz)
        session.flush()
        for kind in CHALLENGE_TYPES:
            session.add(
                AcmeChallenge(
                    id=secrets.token_urlsafe(ID_BYTES),
                    authorization_id=authz.id,
                    type=kind,
                    token=secrets.token_urlsafe(TOKEN_BYTES),
                    status="pending",
                )
            )
    session.flush()
    resource = order_resource(session, urls, order, now=now)
    return Resource(body=resource.body, location=resource.location, created=True)


def parse_identifiers(value: object) -> list[Identifier]:
    if not isinstance(value, list) or not value:
        raise Malformed("identifiers is not a non-empty list")
    if len(value) > MAX_IDENTIFIERS:
        raise RejectedIdentifier(f"an order may name at most {MAX_IDENTIFIERS} identifiers")
    found: dict[Identifier, None] = {}
    for item in value:
        if not isinstance(item, dict) or not isinstance(item.get("value"), str):
            raise Malformed("each identifier is an object with a type and a value")
        found[identifier_of(str(item.get("type")), item["value"])] = None
    return list(found)


def identifier_of(kind: str, value: str) -> Identifier:
    if kind == "dns":
        if value.startswith("*."):
            raise RejectedIdentifier(
                f"{value[:80]!r}: wildcards need dns-01, which this server does not offer"
            )
        try:
            return Identifier(type="dns", value=names.dns_name(value))
        except InvalidName as error:
            raise RejectedIdentifier(str(error)) from None
    if kind == "ip":
        try:
            return Identifier(type="ip", value=str(names.ip_address(value)))
        except InvalidName as error:
            raise RejectedIdentifier(str(error)) from None
    raise UnsupportedIdentifier(f"identifier type {kind[:20]!r} is not dns or ip")


def policy_of(session: Session, account: AcmeAccount, *, eab_required: bool) -> NamePolicy:
    if account.eab_kid is None:
        # Only possible while acme_unsafe_eab_optional is set; once it is unset, such an
        # account may order nothing.
        return NamePolicy.of((), ()) if eab_required else NamePolicy.anything()
    row = session.get(AcmeExternalKey, account.eab_kid)
    return external_key(row).policy if row is not None else NamePolicy.of((), ())


def _require_policy(
    session: Session, account: AcmeAccount, identifiers: list[Identifier], *, eab_required: bool
) -> None:
    policy = policy_of(session, account, eab_required=eab_required)
    refused = []
    for identifier in identifiers:
        decision = policy.judge(identifier)
        detail = getattr(decision, "detail", None)
        if detail is not None:
            refused.append(
                Subproblem(
                    kind="rejectedIdentifier", detail=str(detail), identifier=identifier.as_json()
                )
            )
    if refused:
        raise RejectedIdentifier("; ".join(s.detail for s in refused), subproblems=tuple(refused))


def _require_rate(session: Session, account: AcmeAccount, *, limit: int, now: datetime) -> None:
    since = now - RATE_WINDOW
    count, oldest = session.execute(
        select(func.count(), func.min(AcmeOrder.created_at)).where(
            AcmeOrder.account_id == account.id, AcmeOrder.created_at > since
        )
    ).one()
    if int(count) >= limit:
        wait = ((oldest or now) + RATE_WINDOW - now).total_seconds()
        raise RateLimited(
            f"account {account.id} made {count} orders in the last hour (at most {limit}); "
            f"retry in {max(1, round(wait))} s",
            retry_after=max(1.0, wait),
        )


# -- reading ----------------------------------------------------------------------------------


def owned_order(session: Session, account: AcmeAccount, ident: str) -> AcmeOrder:
    order = session.get(AcmeOrder, ident)
    if order is None or order.account_id != account.id:
        raise NotFound(f"no order {ident!r} for this account")
    return order


def owned_authorization(session: Session, account: AcmeAccount, ident: str) -> AcmeAuthorization:
    authz = session.get(AcmeAuthorization, ident)
    if authz is None or authz.account_id != account.id:
        raise NotFound(f"no authorization {ident!r} for this account")
    return authz


def get_order(
    session: Session, urls: Urls, signed: Signed, ident: str, *, now: datetime
) -> Resource:
    return order_resource(
        session, urls, owned_order(session, signed.require_account(), ident), now=now
    )


def get_authorization(
    session: Session, urls: Urls, signed: Signed, ident: str, *, now: datetime
) -> Resource:
    account = signed.require_account()
    authz = owned_authorization(session, account, ident)
    payload = signed.payload
    if payload is not None and payload.get("status") == "deactivated":
        if authz.status in ("pending", "valid"):
            authz.status = "deactivated"
            settle_order(session, session.get(AcmeOrder, authz.order_id), now=now)
    elif payload:
        raise Malformed("an authorization takes POST-as-GET or {'status': 'deactivated'}")
    return authorization_resource(session, urls, authz, now=now)


def list_orders(session: Session, urls: Urls, signed: Signed, ident: str) -> Resource:
    account = signed.require_account()
    if account.id != ident:
        raise NotFound("an account may list only its own orders")
    rows = session.scalars(
        select(AcmeOrder.id)
        .where(AcmeOrder.account_id == account.id, AcmeOrder.status.in_(("pending", "ready")))
        .order_by(AcmeOrder.created_at)
    )
    return Resource(body={"orders": [urls.order(i) for i in rows]})


def settle_order(session: Session, order: AcmeOrder | None, *, now: datetime) -> None:
    """Move a pending or ready order along from its authorizations (and its expiry)."""
    if order is None or order.status not in ("pending", "ready"):
        return
    if now >= order.expires_at:
        order.status = "invalid"
        order.error = json.dumps(
            {"type": "urn:ietf:params:acme:error:malformed", "detail": "the order expired"}
        )
        return
    statuses = set(
        session.scalars(
            select(AcmeAuthorization.status).where(AcmeAuthorization.order_id == order.id)
        )
    )
    if statuses - {"pending", "valid"}:
        order.status = "invalid"
    elif statuses == {"valid"}:
        order.status = "ready"


def order_resource(session: Session, urls: Urls, order: AcmeOrder, *, now: datetime) -> Resource:
    settle_order(session, order, now=now)
    authz_ids = session.scalars(
        select(AcmeAuthorization.id).where(AcmeAuthorization.order_id == order.id)
    )
    body: dict[str, Any] = {
        "status": order.status,
        "expires": timestamp(order.expires_at),
        "identifiers": json.loads(order.identifiers),
        "authorizations": [urls.authorization(i) for i in authz_ids],
        "finalize": urls.finalize(order.id),
    }
    if order.certificate_pem is not None:
        body["certificate"] = urls.certificate(order.id)
    if order.error is not None:
        body["error"] = json.loads(order.error)
    return Resource(body=body, location=urls.order(order.id))


def authorization_resource(
    session: Session, urls: Urls, authz: AcmeAuthorization, *, now: datetime
) -> Resource:
    if authz.status == "pending" and now >= authz.expires_at:
        authz.status = "expired"
    challenges = session.scalars(
        select(AcmeChallenge)
        .where(AcmeChallenge.authorization_id == authz.id)
        .order_by(AcmeChallenge.type)
    )
    body = {
        "identifier": {"type": authz.identifier_type, "value": authz.identifier_value},
        "status": authz.status,
        "expires": timestamp(authz.expires_at),
        "challenges": [challenge_object(urls, c) for c in challenges],
    }
    return Resource(body=body, location=urls.authorization(authz.id))


def challenge_object(urls: Urls, challenge: AcmeChallenge) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": challenge.type,
        "url": urls.challenge(challenge.id),
        "token": challenge.token,
        "status": challenge.status,
    }
    if challenge.validated_at is not None:
        body["validated"] = timestamp(challenge.validated_at)
    if challenge.error is not None:
        body["error"] = json.loads(challenge.error)
    return body


# -- finalize and download ----------------------------------------------------------------------


def finalize(
    context: AcmeContext, session: Session, urls: Urls, signed: Signed, ident: str
) -> Resource:
    account = signed.require_account()
    order = owned_order(session, account, ident)
    now = context.clock()
    settle_order(session, order, now=now)
    if order.status != "ready":
        raise OrderNotReady(f"order {order.id} is {order.status}, not ready to be finalized")
    csr_text = signed.request.require_payload().get("csr")
    if not isinstance(csr_text, str):
        raise Malformed("finalize needs csr, the base64url DER of a PKCS#10 request")
    try:
        csr_der = b64url_decode(csr_text)
        csr = x509.load_der_x509_csr(csr_der)
    except ValueError:
        raise BadCsr("csr is not the base64url DER of a PKCS#10 request") from None
    wanted = {Identifier(**i) for i in json.loads(order.identifiers)}
    _require_csr_names(csr, wanted)
    if jws.spki(csr.public_key()) == jws.spki(signed.key):
        raise BadCsr("the CSR's key is the account key; a certificate needs a key of its own")
    pem = csr.public_bytes(Encoding.PEM)
    try:
        issued = context.ca.sign_csr(
            pem, Profile.SERVER, days=context.settings.acme_certificate_days
        )
    except PkiError as error:
        raise BadCsr(f"the CA refused the CSR: {error}") from None
    certificate = issued.certificate
    subject = sorted(wanted, key=lambda i: (i.type, i.value))[0].value
    session.add(
        IssuedCertificate(
            serial=str(issued.serial),
            subject=subject,
            expires_at=certificate.not_valid_after_utc,
            revoked=False,
            thumbprint=certificate_thumbprint(certificate.public_bytes(Encoding.DER)),
            issued_at=now,
            profile=Profile.SERVER.value,
        )
    )
    order.status = "valid"
    order.certificate_serial = str(issued.serial)
    order.certificate_pem = issued.chain_pem.decode("ascii")
    audit.record(
        session,
        at=now,
        kind="acme.certificate.issued",
        subject=f"acme:account:{account.id}",
        serial=format(issued.serial, "x"),
        names=sorted(i.value for i in wanted),
    )
    # As for every certificate: pending in the CA until the database holds it too.
    after_commit(session, lambda: context.ca.handed_out(issued))
    session.flush()
    return order_resource(session, urls, order, now=now)


def _require_csr_names(csr: x509.CertificateSigningRequest, wanted: set[Identifier]) -> None:
    if not csr.is_signature_valid:
        raise BadCsr("the CSR's signature does not verify with its own key")
    asked: set[Identifier] = set()
    try:
        san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        for name in san:
            if isinstance(name, x509.DNSName):
                asked.add(identifier_of("dns", name.value))
            elif isinstance(name, x509.IPAddress) and not isinstance(
                name.value, ipaddress.IPv4Network | ipaddress.IPv6Network
            ):
                asked.add(Identifier(type="ip", value=str(name.value)))
            else:
                raise BadCsr(f"the CSR asks for a {type(name).__name__}; only DNS and IP names")
    except x509.ExtensionNotFound:
        pass
    except (ValueError, x509.DuplicateExtension) as error:
        raise BadCsr(f"the CSR's extensions do not parse: {error}") from None
    except RejectedIdentifier as error:
        raise BadCsr(f"the CSR asks for a name that is not one: {error.detail}") from None
    for attribute in csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME):
        value = attribute.value if isinstance(attribute.value, str) else ""
        if not any(value.lower() == i.value for i in wanted):
            raise BadCsr(f"the CSR's common name {value[:80]!r} is none of the order's names")
    if asked != wanted:
        extra = sorted(i.value for i in asked - wanted)
        missing = sorted(i.value for i in wanted - asked)
        raise BadCsr(
            f"the CSR's names differ from the order's: asks also for {extra or 'nothing'}, "
            f"lacks {missing or 'nothing'}"
        )


def certificate_chain(session: Session, urls: Urls, signed: Signed, ident: str) -> CertificateChain:
    order = owned_order(session, signed.require_account(), ident)
    if order.certificate_pem is None:
        raise NotFound(f"order {ident!r} has no certificate")
    return CertificateChain(pem=order.certificate_pem.encode("ascii"), up=urls.order(order.id))
