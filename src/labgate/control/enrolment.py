"""What both linking flows end with: a device owned by the person who linked it, a device
certificate issued from the device's own CSR, and a token pair bound to that certificate.

And the question both flows ask of that person, at approval and again at enrolment: do they
still stand (`labgate.control.standing`: an enabled account), are they not locked by failed
logins, and may they add devices (admin or operator)? A person disabled or locked between
approving and the device's poll gets no device (Keycloak's CVE-2026-88770 path).
"""

from __future__ import annotations

from datetime import datetime

from cryptography.hazmat.primitives.serialization import Encoding
from sqlalchemy.orm import Session

from labgate.auth.decisions import Allowed, Decision, Denied
from labgate.auth.tokens import certificate_thumbprint
from labgate.control import audit, certificates, throttling
from labgate.control.minting import mint_pair, new_family
from labgate.control.principals import DEVICE_ROLE, Principal, device_identity, user_identity
from labgate.control.runtime import Runtime
from labgate.control.schemas import Enrolment
from labgate.control.standing import standing
from labgate.control.tables import Device, User

LINKING_ROLES = ("admin", "operator")


def may_link(session: Session, runtime: Runtime, user: User | None, *, now: datetime) -> Decision:
    """May this person link a device now?"""
    if user is None:
        return Denied(reason="unknown_principal", detail="no such account")
    decision = standing(session, identity=user_identity(user.username))
    if isinstance(decision, Denied):
        return decision
    rule = throttling.account_rule_for(runtime.settings)
    counter = throttling.counter(session, f"account:{user.username}")
    if rule.is_locked(rule.current(counter, now=now)):
        return Denied(reason="account_locked", detail=f"account {user.username!r} is locked")
    if user.role not in LINKING_ROLES:
        return Denied(reason="forbidden", detail=f"role {user.role!r} may not link devices")
    return Allowed()


def enrol(
    session: Session,
    runtime: Runtime,
    *,
    owner: User,
    device_id: str,
    name: str,
    csr_pem: str,
    via: str,
    now: datetime,
) -> Enrolment:
    """Create the device, sign its CSR (common name exactly `device_id`), mint the bound pair."""
    device = Device(
        id=device_id, name=name, owner_id=owner.id, revoked=False, created_at=now, last_seen_at=now
    )
    session.add(device)
    session.flush()
    identity = device_identity(device_id)
    principal = Principal(identity=identity, role=DEVICE_ROLE, jti="")
    issued = certificates.issue_for(
        session,
        runtime.ca,
        principal,
        csr_pem.encode("utf-8"),
        days=runtime.settings.client_certificate_days,
        now=now,
    )
    thumbprint = certificate_thumbprint(issued.certificate.public_bytes(Encoding.DER))
    minted = mint_pair(
        session,
        runtime.mint,
        subject=identity,
        role=DEVICE_ROLE,
        family_id=new_family(),
        restricted=False,
        cnf_thumbprint=thumbprint,
        now=now,
    )
    audit.record(
        session,
        at=now,
        kind="device.linked",
        subject=identity,
        by=user_identity(owner.username),
        via=via,
        serial=format(issued.serial, "x"),
    )
    return Enrolment(
        device_id=device_id,
        identity=identity,
        serial=format(issued.serial, "x"),
        not_after=issued.certificate.not_valid_after_utc,
        certificate_pem=issued.certificate_pem.decode("ascii"),
        chain_pem=issued.chain_pem.decode("ascii"),
        access_token=minted.pair.access_token,
        refresh_token=minted.pair.refresh_token,
        expires_in=minted.pair.expires_in,
    )
