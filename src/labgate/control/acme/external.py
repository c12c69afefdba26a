"""External account binding credentials (RFC 8555 7.3.4): made, listed and revoked by
administrators through the API; each binds one ACME account and carries its name policy.

The HMAC key is shown once, when made. Verifying a binding needs the key itself, so it is kept
sealed rather than hashed: AES-256-GCM under a key derived (HKDF) from the server's key
passphrase, with the key id as associated data so that a sealed key cannot be moved to another
id. A copy of the database alone yields no key.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import select
from sqlalchemy.orm import Session

from labgate.auth.keyring import b64url
from labgate.control import audit
from labgate.control.acme.policy import NamePolicy
from labgate.control.errors import ConfigurationError, Conflict, InvalidInput, NotFound
from labgate.control.tables import AcmeExternalKey

HMAC_KEY_BYTES = 32
KID_BYTES = 12
_SEAL_INFO = b"labgate acme external account binding"
_NONCE_BYTES = 12
MAX_POLICY_ENTRIES = 64


class Sealer:
    """Seals and opens EAB HMAC keys under the server's key passphrase."""

    def __init__(self, passphrase: bytes) -> None:
        key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_SEAL_INFO).derive(
            passphrase
        )
        self._aead = AESGCM(key)

    def seal(self, kid: str, hmac_key: bytes) -> bytes:
        nonce = os.urandom(_NONCE_BYTES)
        return nonce + self._aead.encrypt(nonce, hmac_key, kid.encode("ascii"))

    def open(self, kid: str, sealed: bytes) -> bytes:
        try:
            return self._aead.decrypt(
                sealed[:_NONCE_BYTES], sealed[_NONCE_BYTES:], kid.encode("ascii")
            )
        except InvalidTag:
            raise ConfigurationError(
                f"the HMAC key of EAB {kid} does not open with this server's key passphrase"
            ) from None


@dataclass(frozen=True, slots=True, kw_only=True)
class ExternalKey:
    """An EAB credential as the API shows it (never its HMAC key)."""

    kid: str
    label: str
    dns_suffixes: tuple[str, ...]
    ip_ranges: tuple[str, ...]
    created_at: datetime
    created_by: str
    revoked_at: datetime | None
    account_id: str | None

    @property
    def policy(self) -> NamePolicy:
        return NamePolicy.of(self.dns_suffixes, self.ip_ranges)


def create(
    session: Session,
    sealer: Sealer,
    *,
    label: str,
    dns_suffixes: Sequence[str],
    ip_ranges: Sequence[str],
    by: str,
    now: datetime,
) -> tuple[ExternalKey, str]:
    """A new credential; returns it and its HMAC key (base64url), which is never shown again."""
    if not dns_suffixes and not ip_ranges:
        raise InvalidInput(
            "an EAB credential needs at least one DNS suffix or IP range: it may order nothing else"
        )
    if len(dns_suffixes) + len(ip_ranges) > MAX_POLICY_ENTRIES:
        raise InvalidInput(f"at most {MAX_POLICY_ENTRIES} DNS suffixes and IP ranges in all")
    try:
        policy = NamePolicy.of(dns_suffixes, ip_ranges)
    except ValueError as error:
        raise InvalidInput(str(error)) from None
    kid = secrets.token_urlsafe(KID_BYTES)
    hmac_key = secrets.token_bytes(HMAC_KEY_BYTES)
    row = AcmeExternalKey(
        kid=kid,
        sealed_key=sealer.seal(kid, hmac_key),
        label=label,
        dns_suffixes=json.dumps(list(policy.dns_suffixes or ())),
        ip_ranges=json.dumps([str(n) for n in policy.ip_ranges or ()]),
        created_at=now,
        created_by=by,
        revoked_at=None,
        account_id=None,
    )
    session.add(row)
    audit.record(session, at=now, kind="acme.eab.created", subject=by, kid=kid, label=label)
    session.flush()
    return external_key(row), b64url(hmac_key)


def list_keys(session: Session) -> list[ExternalKey]:
    rows = session.scalars(select(AcmeExternalKey).order_by(AcmeExternalKey.created_at))
    return [external_key(row) for row in rows]


def revoke(session: Session, kid: str, *, by: str, now: datetime) -> ExternalKey:
    """Revoke a credential: unusable for a new account, and the account it bound may order
    nothing more (its certificates stay valid until revoked on their own)."""
    row = session.get(AcmeExternalKey, kid)
    if row is None:
        raise NotFound(f"no EAB credential with key id {kid!r}")
    if row.revoked_at is not None:
        raise Conflict(f"EAB credential {kid!r} is already revoked")
    row.revoked_at = now
    audit.record(session, at=now, kind="acme.eab.revoked", subject=by, kid=kid)
    session.flush()
    return external_key(row)


def external_key(row: AcmeExternalKey) -> ExternalKey:
    return ExternalKey(
        kid=row.kid,
        label=row.label,
        dns_suffixes=tuple(json.loads(row.dns_suffixes)),
        ip_ranges=tuple(json.loads(row.ip_ranges)),
        created_at=row.created_at,
        created_by=row.created_by,
        revoked_at=row.revoked_at,
        account_id=row.account_id,
    )
