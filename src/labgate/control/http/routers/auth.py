"""`/api/v1/auth`: login, refresh, logout, password change."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, Request

from labgate.control import rotation, sessions
from labgate.control.http.dependencies import (
    AnySession,
    PeerCertificate,
    RuntimeDep,
    SessionDep,
)
from labgate.control.schemas import (
    Done,
    LoginRequest,
    PasswordChangeRequest,
    RefreshRequest,
    TokenPair,
)

router = APIRouter(prefix="/api/v1/auth", tags=["auth"])


def peer_address(request: Request) -> str:
    """The socket peer's address: X-Forwarded-For and friends are never read."""
    return request.client.host if request.client else "unknown"


@router.post("/login", response_model=TokenPair)
def login(
    body: LoginRequest, request: Request, runtime: RuntimeDep, session: SessionDep
) -> TokenPair:
    return sessions.login(
        session,
        runtime,
        username=body.username,
        password=body.password,
        address=peer_address(request),
    )


@router.post("/refresh", response_model=TokenPair)
def refresh(
    body: RefreshRequest, runtime: RuntimeDep, session: SessionDep, certificate: PeerCertificate
) -> TokenPair:
    return rotation.refresh(
        session,
        runtime.rotation,
        token=body.refresh_token,
        certificate_der=certificate,
        now=runtime.clock(),
    )


@router.post("/logout", response_model=Done)
def logout(runtime: RuntimeDep, session: SessionDep, principal: AnySession) -> Done:
    """End this login: the refresh-token family and its access tokens, on every replica."""
    # Deny-list entries only need to outlive the token; the longest access token lives 24 h.
    expires = datetime.fromtimestamp(runtime.clock().timestamp() + 24 * 3600, tz=UTC)
    sessions.logout(session, runtime, principal, expires=expires)
    return Done()


@router.post("/password", response_model=TokenPair)
def change_password(
    body: PasswordChangeRequest, runtime: RuntimeDep, session: SessionDep, principal: AnySession
) -> TokenPair:
    """Change the caller's password (also allowed to a password-change-only session)."""
    return sessions.change_password(
        session,
        runtime,
        principal,
        old_password=body.old_password,
        new_password=body.new_password,
    )
