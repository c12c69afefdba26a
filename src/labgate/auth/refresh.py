"""Refresh tokens: minting, hashing, and the rules for presenting one (RFC 9700 section 4.14).

Tokens are 256 bits from `secrets`, base64url (43 characters). The server stores only their
SHA-256. A fast unsalted hash is right here, unlike for passwords: the input is uniformly random
with 256 bits of entropy, so there is no dictionary to try and no salt or stretching would slow
a search of 2^256 candidates any further; a database thief learns nothing usable. SHA-256 also
gives a stable value to index and look up by.

The rules (`decide`), given the stored state of the presented token and the time:
- unknown token -> Refused("unknown_token");
- its family revoked (logout, reuse, account disabled) -> Refused("family_revoked");
- the whole session past its optional absolute end -> Refused("session_expired");
- already rotated less than `grace` (30 s) ago and its successor not yet used -> GraceReplay:
  answer with the same successor pair again, so a client whose response was lost (or twenty
  concurrent requests with one token) is not locked out;
- already rotated otherwise (successor used, or grace over) -> Reuse: someone holds a copy.
  Revoke the whole family, deny its unexpired access tokens by jti, and write an audit event;
- expired -> Refused("expired");
- otherwise -> Rotate: consume it and mint the successor in the same family.

Making consumption atomic is the server's job, and the rules above are only sound if it does:
1. Look the row up by hash and call `decide`. On Rotate, consume it with ONE statement,
       UPDATE refresh_tokens SET used = true, used_at = :now
        WHERE token_hash = :hash AND used = false AND revoked = false AND expires_at > :now
   and go on only if it touched exactly one row. Zero rows means another request (on this or
   another replica) won: read the row again and call `decide` again (it now says GraceReplay,
   Reuse or Refused). A read-check-then-delete in two statements lets two requests both win.
2. In the same transaction as that UPDATE, store the successor (its hash, and the successor
   pair sealed with `seal_successor`), then commit. On PostgreSQL a concurrent UPDATE of the
   same row waits for this commit and then matches no row; SQLite serialises writers. So a
   request that loses the race always finds the successor already recorded.
3. GraceReplay: open the sealed pair with `open_successor` and the presented token, and return
   it unchanged. Reuse: revoke the family in one UPDATE of every row with its family id.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import NamedTuple

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from labgate.auth.clock import require_aware
from labgate.auth.errors import MalformedRefreshToken, SealError
from labgate.auth.lifetimes import REFRESH_GRACE

TOKEN_BYTES = 32  # 256 bits
# Longer input is not a token we issued; it is refused before hashing.
MAX_TOKEN_CHARS = 256
_SEAL_INFO = b"labgate refresh-token successor seal v1"
_NONCE_BYTES = 12


class NewRefreshToken(NamedTuple):
    """A fresh refresh token for the client and the hash the server stores."""

    token: str
    token_hash: str


def new_refresh_token() -> NewRefreshToken:
    """256 random bits, base64url, with their SHA-256 (hex)."""
    token = secrets.token_urlsafe(TOKEN_BYTES)
    return NewRefreshToken(token=token, token_hash=hash_refresh_token(token))


def hash_refresh_token(token: str) -> str:
    """Hex SHA-256 of the token, the value stored and looked up (64 characters)."""
    if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_CHARS:
        raise MalformedRefreshToken(
            f"a refresh token is a non-empty string of at most {MAX_TOKEN_CHARS} characters"
        )
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True, kw_only=True)
class RefreshTokenState:
    """What the server has stored about a presented refresh token."""

    family_id: str
    expires_at: datetime
    rotated_at: datetime | None = None  # None: never used (active)
    successor_used: bool = False
    family_revoked: bool = False
    # Optional end of the whole session, however often it refreshes (None: rotation alone
    # decides). NIST SP 800-63B asks for re-authentication at fixed intervals; the server
    # sets this from the family's first login when it wants that.
    family_expires_at: datetime | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Rotate:
    """Consume the token atomically and mint its successor in the same family."""

    family_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class GraceReplay:
    """Return the successor pair minted at the rotation, unchanged."""

    family_id: str
    rotated_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class Reuse:
    """A rotated token came back: revoke the family, deny its access tokens, audit it."""

    family_id: str
    rotated_at: datetime
    reason: str = "refresh_token_reused"


@dataclass(frozen=True, slots=True, kw_only=True)
class Refused:
    """Refuse without any other effect."""

    reason: str  # "unknown_token", "family_revoked", "session_expired" or "expired"


RefreshDecision = Rotate | GraceReplay | Reuse | Refused


def decide(
    state: RefreshTokenState | None, *, now: datetime, grace: timedelta = REFRESH_GRACE
) -> RefreshDecision:
    """Apply the rules in the module docstring to one presented token."""
    require_aware(now)
    if state is None:
        return Refused(reason="unknown_token")
    if state.family_revoked:
        return Refused(reason="family_revoked")
    if state.family_expires_at is not None and now >= state.family_expires_at:
        return Refused(reason="session_expired")
    if state.rotated_at is not None:
        # A replica whose clock is behind may see a rotation "in the future": age 0.
        age = max(now - state.rotated_at, timedelta(0))
        if age < grace and not state.successor_used:
            return GraceReplay(family_id=state.family_id, rotated_at=state.rotated_at)
        return Reuse(family_id=state.family_id, rotated_at=state.rotated_at)
    if now >= state.expires_at:
        return Refused(reason="expired")
    return Rotate(family_id=state.family_id)


def seal_successor(presented_token: str, successor: bytes) -> bytes:
    """Encrypt the successor pair under a key only the presented token's holder can derive.

    The key comes from HKDF over the token itself, not from its stored SHA-256, so the database
    (hash plus sealed box) never holds a usable token in clear. AES-256-GCM, random nonce,
    the token's hash as associated data so a box cannot be moved to another row.
    """
    nonce = os.urandom(_NONCE_BYTES)
    sealed = AESGCM(_seal_key(presented_token)).encrypt(
        nonce, successor, hash_refresh_token(presented_token).encode("ascii")
    )
    return nonce + sealed


def open_successor(presented_token: str, sealed: bytes) -> bytes:
    """Inverse of `seal_successor`; SealError when the token or the box is not the right one."""
    if len(sealed) <= _NONCE_BYTES:
        raise SealError(f"sealed successor is {len(sealed)} bytes, too short to be one")
    nonce, box = sealed[:_NONCE_BYTES], sealed[_NONCE_BYTES:]
    try:
        return AESGCM(_seal_key(presented_token)).decrypt(
            nonce, box, hash_refresh_token(presented_token).encode("ascii")
        )
    except InvalidTag:
        raise SealError("sealed successor does not open with the presented token") from None


def _seal_key(token: str) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_SEAL_INFO).derive(
        token.encode("utf-8")
    )


def tokens_equal(a: str, b: str) -> bool:
    """Constant-time comparison of two token strings."""
    return hmac.compare_digest(a.encode("utf-8"), b.encode("utf-8"))
