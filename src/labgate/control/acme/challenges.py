"""Answering a challenge (RFC 8555 7.5.1): the client says "ready", the server validates.

Validation talks to the network, so it runs outside any database transaction: one transaction
checks the request and claims the challenge (`pending` -> `processing`, one conditional UPDATE,
so of two replicas asked at once only one validates), the check runs, and a second transaction
records the outcome on the challenge, its authorization and its order. A claim whose process
died is taken over once it is older than `STALE_AFTER` validation timeouts.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta

from sqlalchemy import or_, update
from sqlalchemy.orm import Session

from labgate.control.acme import messages, orders, validation
from labgate.control.acme.context import AcmeContext, Urls
from labgate.control.acme.errors import AcmeProblem, Malformed, NotFound
from labgate.control.acme.policy import Identifier
from labgate.control.acme.resources import Resource
from labgate.control.tables import AcmeAccount, AcmeAuthorization, AcmeChallenge, AcmeOrder
from labgate.control.transactions import unit_of_work

STALE_AFTER = 3


def respond(context: AcmeContext, urls: Urls, body: bytes, *, url: str, ident: str) -> Resource:
    now = context.clock()
    with unit_of_work(context.sessions) as session:
        signed = messages.verify(context, session, urls, body, url=url)
        account = signed.require_account()
        challenge, authz = _owned(session, account, ident)
        payload = signed.payload
        if payload is None:  # POST-as-GET: read it
            return _resource(urls, challenge, authz)
        if payload:
            raise Malformed("a challenge is answered with an empty JSON object {}")
        claimed = (
            challenge.status in ("pending", "processing")
            and authz.status == "pending"
            and _claim(session, challenge, context, now=now)
        )
        if not claimed:
            return _resource(urls, challenge, authz)
        identifier = Identifier(type=authz.identifier_type, value=authz.identifier_value)
        expected = validation.key_authorization(challenge.token, account.thumbprint)
        kind, challenge_id = challenge.type, challenge.id
    problem = _validate(context, kind, identifier, challenge_id, expected)
    with unit_of_work(context.sessions) as session:
        answered = session.get(AcmeChallenge, challenge_id)
        assert answered is not None
        authz_row = session.get(AcmeAuthorization, answered.authorization_id)
        assert authz_row is not None
        _record(session, answered, authz_row, problem, now=context.clock())
        return _resource(urls, answered, authz_row)


def _owned(
    session: Session, account: AcmeAccount, ident: str
) -> tuple[AcmeChallenge, AcmeAuthorization]:
    challenge = session.get(AcmeChallenge, ident)
    authz = session.get(AcmeAuthorization, challenge.authorization_id) if challenge else None
    if challenge is None or authz is None or authz.account_id != account.id:
        raise NotFound(f"no challenge {ident!r} for this account")
    return challenge, authz


def _claim(
    session: Session, challenge: AcmeChallenge, context: AcmeContext, *, now: datetime
) -> bool:
    stale = now - timedelta(seconds=STALE_AFTER * context.settings.acme_validation_timeout_seconds)
    result = session.execute(
        update(AcmeChallenge)
        .where(
            AcmeChallenge.id == challenge.id,
            or_(
                AcmeChallenge.status == "pending",
                (AcmeChallenge.status == "processing") & (AcmeChallenge.started_at < stale),
            ),
        )
        .values(status="processing", started_at=now)
        .execution_options(synchronize_session=False)
    )
    session.refresh(challenge)
    return int(getattr(result, "rowcount", 0) or 0) == 1


def _validate(
    context: AcmeContext, kind: str, identifier: Identifier, challenge_id: str, expected: str
) -> AcmeProblem | None:
    settings = context.settings
    reach = validation.Reach(
        http_port=settings.acme_http_port,
        tls_alpn_port=settings.acme_tls_alpn_port,
        timeout=settings.acme_validation_timeout_seconds,
        static_hosts=settings.acme_static_hosts,
    )
    try:
        if kind == "http-01":
            token = expected.split(".", 1)[0]
            validation.http_01(identifier, token, expected, reach)
        elif kind == "tls-alpn-01":
            validation.tls_alpn_01(identifier, expected, reach)
        else:
            return Malformed(f"challenge type {kind!r} is not offered here")
    except AcmeProblem as problem:
        return problem
    return None


def _record(
    session: Session,
    challenge: AcmeChallenge,
    authz: AcmeAuthorization,
    problem: AcmeProblem | None,
    *,
    now: datetime,
) -> None:
    if problem is None:
        challenge.status = "valid"
        challenge.validated_at = now
        if authz.status == "pending":
            authz.status = "valid"
    else:
        challenge.status = "invalid"
        challenge.error = json.dumps({"type": problem.type, "detail": problem.detail})
        if authz.status == "pending":
            authz.status = "invalid"
    session.flush()
    orders.settle_order(session, session.get(AcmeOrder, authz.order_id), now=now)


def _resource(urls: Urls, challenge: AcmeChallenge, authz: AcmeAuthorization) -> Resource:
    return Resource(
        body=orders.challenge_object(urls, challenge),
        location=urls.challenge(challenge.id),
        up=urls.authorization(authz.id),
    )
