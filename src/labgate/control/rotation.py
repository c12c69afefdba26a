"""Refresh-token rotation: consume once, replay the successor within the grace, catch reuse.

Follows `labgate.auth.refresh`: the presented token is looked up by its hash and judged by
`decide`; a Rotate consumes it with one conditional UPDATE that must touch exactly one row, in
the same transaction that stores the successor (sealed for grace replays). Losing that race
means another request, on any replica, won: the row is read again and judged again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography import x509
from prometheus_client import Counter
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from labgate.auth import refresh as rules
from labgate.auth.decisions import Denied
from labgate.auth.errors import MalformedRefreshToken, SealError
from labgate.auth.tokens import certificate_thumbprint
from labgate.control import audit
from labgate.control.errors import AuthenticationFailed, CertificateRequired, RefreshTokenReused
from labgate.control.minting import TokenMint, mint_pair
from labgate.control.principals import DEVICE_PREFIX
from labgate.control.revocation import deny, revoke_families
from labgate.control.schemas import TokenPair
from labgate.control.standing import certificate_revoked, presented
from labgate.control.tables import Device, RefreshToken, User
from labgate.control.transactions import keep_on_error
from labgate.pki.identity import identity_of
from labgate.pki.inventory import Inventory


@dataclass(frozen=True, slots=True, kw_only=True)
class Rotation:
    """What rotation needs: minting, the CA's inventory (revoked certificates), the grace window,
    and the counter of outcomes."""

    mint: TokenMint
    inventory: Inventory
    grace: timedelta
    outcomes: Counter


def refresh(
    session: Session,
    rotation: Rotation,
    *,
    token: str,
    certificate_der: bytes | None,
    now: datetime,
) -> TokenPair:
    """Rotate a refresh token, replay the successor within the grace, or catch a reuse."""
    try:
        token_hash = rules.hash_refresh_token(token)
    except MalformedRefreshToken:
        raise AuthenticationFailed("refresh token not accepted") from None
    grace = rotation.grace
    for _ in range(2):
        row = session.scalar(select(RefreshToken).where(RefreshToken.token_hash == token_hash))
        decision = rules.decide(_state(session, row), now=now, grace=grace)
        if isinstance(decision, rules.Rotate):
            assert row is not None
            pair = _rotate(session, rotation, row, token, certificate_der, now=now)
            if pair is not None:
                rotation.outcomes.labels("rotated").inc()
                return pair
            session.rollback()  # another request consumed it first: judge the row again
            continue
        return _not_rotated(session, rotation, decision, row, token, now=now)
    raise AuthenticationFailed("refresh token not accepted")


def _state(session: Session, row: RefreshToken | None) -> rules.RefreshTokenState | None:
    if row is None:
        return None
    successor_used = False
    if row.successor_id is not None:
        successor_used = bool(
            session.scalar(select(RefreshToken.used).where(RefreshToken.id == row.successor_id))
        )
    return rules.RefreshTokenState(
        family_id=row.family_id,
        expires_at=row.expires_at,
        rotated_at=row.used_at if row.used else None,
        successor_used=successor_used,
        family_revoked=row.revoked,
        family_expires_at=row.session_expires_at,
    )


def _rotate(
    session: Session,
    rotation: Rotation,
    row: RefreshToken,
    token: str,
    certificate_der: bytes | None,
    *,
    now: datetime,
) -> TokenPair | None:
    """Consume `row` in one UPDATE and mint its successor; None if another request won."""
    role, cnf = _holder(session, row, certificate_der, rotation.inventory)
    consumed = session.execute(
        update(RefreshToken)
        .where(
            RefreshToken.id == row.id,
            RefreshToken.used.is_(False),
            RefreshToken.revoked.is_(False),
            RefreshToken.expires_at > now,
        )
        .values(used=True, used_at=now)
        .execution_options(synchronize_session=False)
    )
    if getattr(consumed, "rowcount", 0) != 1:
        return None
    if cnf is not None and row.cnf_thumbprint != cnf:
        # The family is bound to this certificate from now on: no access token minted before,
        # without the binding (the one from the device's creation) or to another certificate,
        # keeps working.
        earlier = session.execute(
            select(RefreshToken.access_jti, RefreshToken.access_expires_at).where(
                RefreshToken.family_id == row.family_id, RefreshToken.access_expires_at > now
            )
        ).all()
        deny(session, [(jti, expires) for jti, expires in earlier])
    minted = mint_pair(
        session,
        rotation.mint,
        subject=row.subject,
        role=role,
        family_id=row.family_id,
        restricted=row.restricted,
        cnf_thumbprint=cnf,
        now=now,
        session_expires_at=row.session_expires_at,
    )
    sealed = rules.seal_successor(token, minted.pair.model_dump_json().encode("utf-8"))
    session.execute(
        update(RefreshToken)
        .where(RefreshToken.id == row.id)
        .values(successor_id=minted.row.id, successor_sealed=sealed)
        .execution_options(synchronize_session=False)
    )
    if row.subject.startswith(DEVICE_PREFIX):
        session.execute(
            update(Device)
            .where(Device.id == row.subject.removeprefix(DEVICE_PREFIX))
            .values(last_seen_at=now)
            .execution_options(synchronize_session=False)
        )
    return minted.pair


def _holder(
    session: Session, row: RefreshToken, certificate_der: bytes | None, inventory: Inventory
) -> tuple[str, str | None]:
    """The role for the successor, and the certificate it is bound to (devices, RFC 8705)."""
    if row.subject.startswith(DEVICE_PREFIX):
        device = session.get(Device, row.subject.removeprefix(DEVICE_PREFIX))
        if device is None or device.revoked:
            raise AuthenticationFailed("refresh token not accepted")
        if certificate_der is not None:
            decision = certificate_revoked(session, presented(certificate_der), inventory)
            if isinstance(decision, Denied):
                raise AuthenticationFailed(f"refresh token not accepted: {decision.detail}")
        return "device", _device_binding(row, certificate_der)
    user = session.scalar(select(User).where(User.username == row.subject.rsplit(":", 1)[1]))
    if user is None or user.disabled:
        raise AuthenticationFailed("refresh token not accepted")
    return user.role, None


def _device_binding(row: RefreshToken, certificate_der: bytes | None) -> str | None:
    """Bind to the device's certificate when it presents one naming it; once bound, always."""
    if certificate_der is None:
        if row.cnf_thumbprint is not None:
            raise CertificateRequired(
                f"tokens of {row.subject} are bound to its certificate; connect with it"
            )
        return None
    if identity_of(x509.load_der_x509_certificate(certificate_der)) != row.subject:
        raise CertificateRequired(f"the client certificate does not name {row.subject}")
    return certificate_thumbprint(certificate_der)


def _not_rotated(
    session: Session,
    rotation: Rotation,
    decision: rules.RefreshDecision,
    row: RefreshToken | None,
    token: str,
    *,
    now: datetime,
) -> TokenPair:
    if isinstance(decision, rules.GraceReplay) and row is not None and row.successor_sealed:
        try:
            replayed = TokenPair.model_validate_json(
                rules.open_successor(token, row.successor_sealed)
            )
        except SealError:
            raise AuthenticationFailed("refresh token not accepted") from None
        session.rollback()
        rotation.outcomes.labels("grace").inc()
        return replayed
    if isinstance(decision, rules.Reuse | rules.GraceReplay) and row is not None:
        revoke_families(session, [decision.family_id], now=now)
        audit.record(
            session,
            at=now,
            kind="refresh.reuse",
            subject=row.subject,
            family=decision.family_id,
            rotated_at=decision.rotated_at.isoformat(),
        )
        keep_on_error(session)
        rotation.outcomes.labels("reuse").inc()
        raise RefreshTokenReused(
            "refresh token was already used; every session of this login is now revoked"
        )
    session.rollback()
    reason = decision.reason if isinstance(decision, rules.Refused) else "refused"
    rotation.outcomes.labels(reason).inc()
    raise AuthenticationFailed(f"refresh token not accepted ({reason})")
