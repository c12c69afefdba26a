"""FastAPI dependencies as `Annotated` aliases: the runtime, the request's transaction, the
calling principal.

Every authenticated request verifies its access token (signature, issuer, audience, expiry,
certificate binding) and then asks `labgate.control.standing`, in one database round trip, whether
the token is on the deny list, its principal disabled or revoked, or the connection's client
certificate revoked; so a revocation made by any replica is seen by all of them at once.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Annotated

from fastapi import Depends, Path, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from labgate.auth.decisions import Denied
from labgate.auth.errors import TokenError
from labgate.auth.tokens import AccessClaims, verify_access_token
from labgate.control.errors import AuthenticationFailed, PasswordChangeRequired
from labgate.control.principals import RESTRICTED_ROLE, Principal
from labgate.control.runtime import Runtime
from labgate.control.standing import presented, standing
from labgate.control.transactions import unit_of_work

PEER_CERTIFICATE = "peer_certificate_der"

# A row id in a path: positive and within PostgreSQL's `integer` (SQLite's is wider, the
# bound is the same on both so that no id reaches either database that one cannot store).
MAX_ROW_ID = 2**31 - 1
RowId = Annotated[int, Path(ge=1, le=MAX_ROW_ID, description="A row id (1 to 2**31 - 1)")]


# Dependencies that do no I/O are `async def` so FastAPI runs them on the event loop instead of
# a thread-pool hop each; the one that reads the database (any_session) stays a plain def.


async def get_runtime(request: Request) -> Runtime:
    runtime = request.app.state.runtime
    assert isinstance(runtime, Runtime)
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


def transaction(runtime: RuntimeDep) -> Iterator[Session]:
    """The request's one transaction: committed when the route returns, before the response is
    sent (so a 2xx always means it holds), rolled back when the route raises."""
    with unit_of_work(runtime.sessions) as session:
        yield session


SessionDep = Annotated[Session, Depends(transaction, scope="function")]


async def peer_certificate(request: Request) -> bytes | None:
    """The DER client certificate of this TLS connection (verified against our CA), if any."""
    value = request.scope.get("state", {}).get(PEER_CERTIFICATE)
    return value if isinstance(value, bytes) and value else None


PeerCertificate = Annotated[bytes | None, Depends(peer_certificate)]

_bearer = HTTPBearer(auto_error=False, description="An access token from /api/v1/auth/login")


def any_session(
    runtime: RuntimeDep,
    certificate: PeerCertificate,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """The caller, including a session that may only change its password."""
    if credentials is None:
        raise AuthenticationFailed("this endpoint needs an access token (Authorization: Bearer)")
    now = runtime.clock()
    token = credentials.credentials
    try:
        claims = runtime.verified.recheck(token, now=now, certificate_der=certificate)
        if claims is None:
            claims = _verify(runtime, token, now=now, certificate=certificate)
            runtime.verified.remember(token, claims)
    except TokenError as error:
        runtime.metrics.denials.labels(type(error).__name__).inc()
        raise AuthenticationFailed(f"access token refused: {error}") from None
    if not claims.subject.startswith(f"labgate:{claims.typ}:"):
        raise AuthenticationFailed(f"access token subject does not match its type {claims.typ!r}")
    held = presented(certificate) if certificate is not None else None
    # One statement, so no transaction around it: autocommit spares a BEGIN and the pool's
    # ROLLBACK on return, two of the three round trips per request on PostgreSQL.
    with runtime.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        decision = standing(
            connection,
            identity=claims.subject,
            jti=claims.jti,
            certificate=held,
            inventory=runtime.ca.inventory if held is not None else None,
        )
    if isinstance(decision, Denied):
        runtime.metrics.denials.labels(decision.reason).inc()
        raise AuthenticationFailed(f"access token refused: {decision.detail}")
    return Principal(
        identity=claims.subject,
        role=claims.role,
        jti=claims.jti,
        restricted=claims.role == RESTRICTED_ROLE,
    )


def _verify(
    runtime: Runtime, token: str, *, now: datetime, certificate: bytes | None
) -> AccessClaims:
    settings = runtime.settings
    return verify_access_token(
        token,
        runtime.keys.ring(),
        issuer=settings.issuer,
        audience=settings.audience,
        now=now,
        expected_typ=("user", "device"),
        certificate_der=certificate,
    )


AnySession = Annotated[Principal, Depends(any_session)]


async def full_session(principal: AnySession) -> Principal:
    """The caller, refused if its session may only change its password."""
    if principal.restricted:
        raise PasswordChangeRequired(
            "this session may only change its password (POST /api/v1/auth/password)"
        )
    return principal


CurrentPrincipal = Annotated[Principal, Depends(full_session)]


async def admin(principal: CurrentPrincipal) -> Principal:
    principal.require_role("admin")
    return principal


AdminPrincipal = Annotated[Principal, Depends(admin)]
