"""ACME accounts: creation (with an external account binding unless that is made optional),
lookup by key, contact updates, deactivation and key rollover (RFC 8555 7.3).

An account is keyed by its key's RFC 7638 thumbprint, unique in the database: the same key
asking again gets its existing account, never a second one. An EAB credential binds one
account, ever: the conditional UPDATE that binds it succeeds for exactly one request.
"""

from __future__ import annotations

import json
import secrets
from typing import Any

from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from labgate.control import audit
from labgate.control.acme import jws
from labgate.control.acme.context import AcmeContext, Urls
from labgate.control.acme.errors import (
    AccountDoesNotExist,
    Conflict,
    ExternalAccountRequired,
    Malformed,
    Unauthorized,
)
from labgate.control.acme.messages import Signed, account_by_jwk
from labgate.control.acme.resources import Resource
from labgate.control.tables import AcmeAccount, AcmeExternalKey

ID_BYTES = 16
MAX_CONTACTS = 8
MAX_CONTACT = 256


def new_account(context: AcmeContext, session: Session, urls: Urls, signed: Signed) -> Resource:
    payload = signed.payload or {}
    jwk = signed.request.jwk
    assert jwk is not None  # new-account takes jwk only
    if signed.account is not None:
        # RFC 8555 7.3.1: the key has an account: return it (200), whatever else was asked.
        if signed.account.status != "valid":
            raise Unauthorized(f"account {signed.account.id} is {signed.account.status}")
        return account_resource(urls, signed.account)
    if payload.get("onlyReturnExisting") is True:
        raise AccountDoesNotExist("no account has this key")
    contact = _contacts(payload.get("contact", []))
    if payload.get("termsOfServiceAgreed") not in (None, True, False):
        raise Malformed("termsOfServiceAgreed is not a boolean")
    now = context.clock()
    ident = secrets.token_urlsafe(ID_BYTES)
    binding = payload.get("externalAccountBinding")
    kid: str | None = None
    if binding is not None:
        kid = _check_binding(context, session, urls, binding, jwk)
    elif context.eab_required:
        raise ExternalAccountRequired(
            "this server gives accounts only with an external account binding from its "
            "administrator (certbot: --eab-kid and --eab-hmac-key)"
        )
    account = AcmeAccount(
        id=ident,
        thumbprint=jws.thumbprint(jwk),
        jwk=json.dumps(jws.canonical_jwk(jwk)),
        status="valid",
        contact=json.dumps(contact),
        eab_kid=kid,
        created_at=now,
    )
    session.add(account)
    try:
        session.flush()
    except IntegrityError:
        # The same key registered in a parallel request (on any replica) first: its account.
        raise Conflict(
            "an account for this key was created at the same moment; ask again to get it"
        ) from None
    if kid is not None:
        bound = session.execute(
            update(AcmeExternalKey)
            .where(
                AcmeExternalKey.kid == kid,
                AcmeExternalKey.account_id.is_(None),
                AcmeExternalKey.revoked_at.is_(None),
            )
            .values(account_id=ident)
        )
        if int(getattr(bound, "rowcount", 0) or 0) != 1:
            raise Unauthorized(f"external account binding {kid!r} is already bound to an account")
    audit.record(
        session, at=now, kind="acme.account.created", subject=f"acme:account:{ident}", eab=kid
    )
    resource = account_resource(urls, account)
    return Resource(body=resource.body, location=resource.location, created=True)


def _check_binding(
    context: AcmeContext, session: Session, urls: Urls, binding: object, jwk: dict[str, Any]
) -> str:
    kid = jws.binding_kid(binding)
    if len(kid) > 64:
        raise Unauthorized("the external account binding names no key id of this server")
    row = session.get(AcmeExternalKey, kid)
    if row is None or row.revoked_at is not None:
        raise Unauthorized(f"external account binding {kid!r} is unknown or revoked")
    if row.account_id is not None:
        raise Unauthorized(f"external account binding {kid!r} is already bound to an account")
    jws.verify_external_binding(
        binding,
        kid=kid,
        hmac_key=context.sealer.open(kid, row.sealed_key),
        url=urls.resource("new-account"),
        account_jwk=jwk,
    )
    return kid


def update_account(
    context: AcmeContext, session: Session, urls: Urls, signed: Signed, ident: str
) -> Resource:
    """POST to the account URL: read it (POST-as-GET), change its contacts, or deactivate it."""
    account = signed.require_account()
    if account.id != ident:
        raise Unauthorized("an account may only read or change itself")
    payload = signed.payload
    if payload is None:
        return account_resource(urls, account)
    if "contact" in payload:
        account.contact = json.dumps(_contacts(payload["contact"]))
    status = payload.get("status")
    if status is not None:
        if status != "deactivated":
            raise Malformed(f"an account's status may only be set to 'deactivated', not {status!r}")
        account.status = "deactivated"
        audit.record(
            session,
            at=context.clock(),
            kind="acme.account.deactivated",
            subject=f"acme:account:{account.id}",
        )
    session.flush()
    return account_resource(urls, account)


def change_key(context: AcmeContext, session: Session, urls: Urls, signed: Signed) -> Resource:
    """RFC 8555 7.3.5: the inner JWS, signed by the new key, names the account and its old key."""
    account = signed.require_account()
    inner = jws.parse_object(signed.request.require_payload(), inner=True)
    if inner.url != signed.request.url:
        raise Malformed("the inner JWS of a key change names another URL than the outer one")
    if inner.jwk is None:
        raise Malformed("the inner JWS of a key change must carry the new key as jwk")
    new_key = jws.public_key(inner.jwk)
    jws.verify(inner, new_key)
    change = inner.require_payload()
    if change.get("account") != urls.account(account.id):
        raise Unauthorized("the key change names another account than the one signing it")
    old = change.get("oldKey")
    if not isinstance(old, dict) or jws.thumbprint(old) != account.thumbprint:
        raise Unauthorized("oldKey in the key change is not the account's current key")
    holder = account_by_jwk(session, inner.jwk)
    if holder is not None:
        raise Conflict(
            "the new key already belongs to an account", location=urls.account(holder.id)
        )
    account.thumbprint = jws.thumbprint(inner.jwk)
    account.jwk = json.dumps(jws.canonical_jwk(inner.jwk))
    try:
        session.flush()
    except IntegrityError:
        raise Conflict("the new key was given to another account at the same moment") from None
    audit.record(
        session,
        at=context.clock(),
        kind="acme.account.key_changed",
        subject=f"acme:account:{account.id}",
    )
    session.flush()
    return account_resource(urls, account)


def account_resource(urls: Urls, account: AcmeAccount) -> Resource:
    body: dict[str, Any] = {
        "status": account.status,
        "contact": json.loads(account.contact),
        "orders": urls.resource("account", account.id) + "/orders",
    }
    if account.eab_kid is not None:
        body["externalAccountBinding"] = {"kid": account.eab_kid}
    return Resource(body=body, location=urls.account(account.id))


def _contacts(value: object) -> list[str]:
    if not isinstance(value, list) or len(value) > MAX_CONTACTS:
        raise Malformed(f"contact is not a list of at most {MAX_CONTACTS} URLs")
    out = []
    for item in value:
        if not isinstance(item, str) or not item.startswith("mailto:") or len(item) > MAX_CONTACT:
            raise Malformed(f"contact {str(item)[:80]!r} is not a mailto: URL")
        if any(ord(c) < 0x21 or c in ",;" for c in item):
            raise Malformed(f"contact {item[:80]!r} holds a space, control character, , or ;")
        out.append(item)
    return out
