"""Checking one signed ACME request: the JWS, its URL, its nonce and its signer.

Order of checks: the JWS parses; its `url` is the URL the request was sent to (a JWS made for one
resource cannot be replayed at another); the nonce is used up (before the signature check, so
a request with a bad signature still spends it); the signer is a known, valid account (`kid`)
or, where the resource allows it, a key given in full (`jwk`); the signature verifies.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from labgate.auth.decisions import Denied
from labgate.control.acme import jws, nonces
from labgate.control.acme.context import AcmeContext, Urls
from labgate.control.acme.errors import AccountDoesNotExist, Malformed, Unauthorized
from labgate.control.standing import acme_account_standing
from labgate.control.tables import AcmeAccount


@dataclass(frozen=True, slots=True, kw_only=True)
class Signed:
    """A verified request: by `account` (kid) or by the key `jwk` (no account, or a new one)."""

    request: jws.SignedRequest
    key: jws.AccountKey
    account: AcmeAccount | None

    @property
    def payload(self) -> dict[str, Any] | None:
        return self.request.payload

    def require_account(self) -> AcmeAccount:
        if self.account is None:
            raise Malformed("this resource needs a request signed by an account (kid)")
        return self.account


def verify(
    context: AcmeContext,
    session: Session,
    urls: Urls,
    body: bytes,
    *,
    url: str,
    jwk_allowed: bool = False,
    kid_allowed: bool = True,
) -> Signed:
    request = jws.parse(body)
    if request.url != url:
        raise Unauthorized(f"the JWS was signed for {request.url!r}, but was sent to {url!r}")
    nonces.consume(context.engine, request.nonce, now=context.clock())
    if request.jwk is not None:
        if not jwk_allowed:
            raise Malformed("this resource needs a request signed by an account (kid), not jwk")
        key = jws.public_key(request.jwk)
        jws.verify(request, key)
        return Signed(request=request, key=key, account=account_by_jwk(session, request.jwk))
    if not kid_allowed:
        raise Malformed("this resource needs the key itself in the header (jwk), not kid")
    account = account_by_url(session, urls, str(request.kid))
    key = jws.public_key(json.loads(account.jwk))
    jws.verify(request, key)
    require_standing(session, account)
    return Signed(request=request, key=key, account=account)


def account_by_url(session: Session, urls: Urls, kid: str) -> AcmeAccount:
    ident = urls.ident_of("account", kid)
    account = session.get(AcmeAccount, ident) if ident is not None else None
    if account is None:
        raise AccountDoesNotExist(f"no account at {kid!r}")
    return account


def account_by_jwk(session: Session, jwk: dict[str, Any]) -> AcmeAccount | None:
    return session.scalar(select(AcmeAccount).where(AcmeAccount.thumbprint == jws.thumbprint(jwk)))


def require_standing(session: Session, account: AcmeAccount) -> None:
    """The account may act now (`labgate.control.standing`), else Unauthorized saying why."""
    decision = acme_account_standing(session, account.id)
    if isinstance(decision, Denied):
        raise Unauthorized(decision.detail)
