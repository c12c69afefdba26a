"""Minting a token pair (access + refresh) and storing the refresh half, hashed, in its family."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from labgate.auth import refresh as refresh_rules
from labgate.auth.keyring import KeyRing
from labgate.auth.tokens import mint_access_token
from labgate.control.principals import DEVICE_PREFIX, RESTRICTED_ROLE
from labgate.control.schemas import TokenPair
from labgate.control.settings import ControlSettings
from labgate.control.tables import RefreshToken


@dataclass(frozen=True, slots=True, kw_only=True)
class TokenMint:
    """What minting needs and nothing more: the signing key ring and the token lifetimes."""

    ring: Callable[[], KeyRing]  # the current ring (re-read when `rotate-keys` changes it)
    issuer: str
    audience: str
    user_access: timedelta
    device_access: timedelta
    user_refresh: timedelta
    device_refresh: timedelta
    user_session_max: timedelta

    @classmethod
    def of(cls, settings: ControlSettings, ring: Callable[[], KeyRing]) -> TokenMint:
        return cls(
            ring=ring,
            issuer=settings.issuer,
            audience=settings.audience,
            user_access=timedelta(seconds=settings.user_access_in_force),
            device_access=timedelta(seconds=settings.device_access_seconds),
            user_refresh=timedelta(seconds=settings.user_refresh_in_force),  # [secure] pwd
            device_refresh=timedelta(seconds=settings.device_refresh_seconds),
            user_session_max=timedelta(seconds=settings.user_session_max_seconds),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Minted:
    pair: TokenPair
    row: RefreshToken


def new_family() -> str:
    return secrets.token_urlsafe(16)


def mint_pair(
    session: Session,
    mint: TokenMint,
    *,
    subject: str,
    role: str,
    family_id: str,
    restricted: bool,
    cnf_thumbprint: str | None,
    now: datetime,
    session_expires_at: datetime | None = None,
) -> Minted:
    """A fresh access token and refresh token; the refresh token is stored only as its hash.

    A user's new login (`session_expires_at` None) ends `user_session_max_seconds` from now; a
    rotation passes the end it inherited. Neither token outlives that end.
    """
    device = subject.startswith(DEVICE_PREFIX)
    access_ttl = int((mint.device_access if device else mint.user_access).total_seconds())
    refresh_ttl = mint.device_refresh if device else mint.user_refresh
    if not device and session_expires_at is None:
        session_expires_at = now + mint.user_session_max
    refresh_expires_at = now + refresh_ttl
    if session_expires_at is not None:
        left = max(int((session_expires_at - now).total_seconds()), 1)
        access_ttl = min(access_ttl, left)
        refresh_expires_at = min(refresh_expires_at, session_expires_at)
    access_token, claims = mint_access_token(
        mint.ring(),
        issuer=mint.issuer,
        audience=mint.audience,
        subject=subject,
        role=RESTRICTED_ROLE if restricted else role,
        typ="device" if device else "user",
        ttl=timedelta(seconds=access_ttl),
        now=now,
        cnf_x5t_s256=cnf_thumbprint,
    )
    refresh = refresh_rules.new_refresh_token()
    row = RefreshToken(
        token_hash=refresh.token_hash,
        family_id=family_id,
        subject=subject,
        used=False,
        revoked=False,
        created_at=now,
        expires_at=refresh_expires_at,
        session_expires_at=session_expires_at,
        access_jti=claims.jti,
        access_expires_at=claims.expires_at,
        restricted=restricted,
        cnf_thumbprint=cnf_thumbprint,
    )
    session.add(row)
    session.flush()
    pair = TokenPair(
        access_token=access_token,
        refresh_token=refresh.token,
        expires_in=access_ttl,
        password_change_required=restricted,
        refresh_expires_in=_seconds(refresh_expires_at - now),
        session_expires_in=_seconds(session_expires_at - now) if session_expires_at else None,
    )
    return Minted(pair=pair, row=row)


def _seconds(span: timedelta) -> int:
    return max(int(span.total_seconds()), 0)
