"""Who may do what now: an enabled principal, a live grant, an unrevoked certificate.

Every authenticated request, every token refresh, every certificate issued and every gateway
bundle asks here, so a disabled user or a revoked device or certificate is refused by all of them
from the same facts, read from the database (what every replica shares) at the moment of asking.

- A principal stands when its account exists and is enabled (a user) or not revoked (a device).
- A certificate stands when the database has not recorded its revocation, and (for certificates
  issued by this replica's CA on disk, such as a gateway's) the CA's inventory has not either.
- An ACME account stands when it is valid and its external account binding is not revoked.
- A grant is live when its principal is not a disabled user or a revoked device. A grant may name
  someone without an account (a person holding only a certificate from `labgate ca issue`): that
  grant stays live until it is deleted or the certificate is revoked.

Every change to these facts also steps the `changes` counter in the same transaction, which is
what a gateway's long poll waits on.
"""

from __future__ import annotations

import functools
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from sqlalchemy import Connection, Select, bindparam, exists, literal, not_, or_, select, update
from sqlalchemy.orm import Session

from labgate.auth.decisions import Allowed, Decision, Denied
from labgate.auth.tokens import certificate_thumbprint
from labgate.control.errors import NotFound
from labgate.control.principals import DEVICE_PREFIX, USER_PREFIX
from labgate.control.tables import (
    AcmeAccount,
    AcmeExternalKey,
    Counter,
    DeniedToken,
    Device,
    Grant,
    IssuedCertificate,
    User,
)
from labgate.pki.identity import identity_of
from labgate.pki.inventory import Inventory

CHANGES_COUNTER = "changes"


@dataclass(frozen=True, slots=True, kw_only=True)
class PresentedCertificate:
    """What the standing checks need of a TLS client certificate, read once per DER."""

    serial: int
    thumbprint: str
    identity: str | None

    @property
    def serial_key(self) -> str:
        """The serial as `issued_certificates` stores it (decimal)."""
        return str(self.serial)


@functools.lru_cache(maxsize=4096)
def presented(certificate_der: bytes) -> PresentedCertificate:
    certificate = x509.load_der_x509_certificate(certificate_der)
    try:
        identity = identity_of(certificate)
    except ValueError:
        identity = None
    return PresentedCertificate(
        serial=certificate.serial_number,
        thumbprint=certificate_thumbprint(certificate_der),
        identity=identity,
    )


def standing(
    connection: Connection | Session,
    *,
    identity: str,
    jti: str | None = None,
    certificate: PresentedCertificate | None = None,
    inventory: Inventory | None = None,
) -> Decision:
    """May `identity` (with access token `jti`, over a connection presenting `certificate`) act
    now? One round trip to the database: the deny list, the account, the certificate."""
    kind = _kind(identity)
    params: dict[str, object] = {"jti": jti or "", "name": identity.rsplit(":", 1)[1]}
    if certificate is not None:
        params["serial"] = certificate.serial_key
    statement = _standing_query(jti is not None, kind, certificate is not None)
    row = connection.execute(statement, params).one()._mapping if statement is not None else {}
    if row.get("denied"):
        return Denied(reason="token_revoked", detail="access token has been revoked")
    if kind is not None:
        off = row.get("off")
        if off is None:
            return Denied(reason="unknown_principal", detail=f"{identity} has no account here")
        if off:
            what = "disabled" if kind == "user" else "revoked"
            return Denied(reason=f"principal_{what}", detail=f"{identity} is {what}")
    if certificate is not None:
        return certificate_standing(
            certificate, revoked_in_database=bool(row.get("revoked")), inventory=inventory
        )
    return Allowed()


@functools.cache
def _standing_query(with_jti: bool, kind: str | None, with_certificate: bool) -> Select[Any] | None:
    """The one statement for this combination, built once: building a statement per request
    costs more than running it."""
    checks: list[Any] = []
    if with_jti:
        checks.append(exists().where(DeniedToken.jti == bindparam("jti")).label("denied"))
    if kind == "user":
        off = select(User.disabled).where(User.username == bindparam("name"))
        checks.append(off.scalar_subquery().label("off"))
    elif kind == "device":
        off = select(Device.revoked).where(Device.id == bindparam("name"))
        checks.append(off.scalar_subquery().label("off"))
    if with_certificate:
        revoked = exists().where(
            IssuedCertificate.serial == bindparam("serial"), IssuedCertificate.revoked.is_(True)
        )
        checks.append(revoked.label("revoked"))
    return select(*checks) if checks else None


def certificate_standing(
    certificate: PresentedCertificate, *, revoked_in_database: bool, inventory: Inventory | None
) -> Decision:
    if revoked_in_database:
        return _revoked(certificate)
    if inventory is not None:
        entry = inventory.get(certificate.serial)
        if entry is not None and entry.revoked_at is not None:
            return _revoked(certificate)
    return Allowed()


def certificate_revoked(
    connection: Connection | Session, certificate: PresentedCertificate, inventory: Inventory | None
) -> Decision:
    """The certificate's own standing, whoever it names."""
    revoked = bool(
        connection.scalar(
            select(
                exists().where(
                    IssuedCertificate.serial == certificate.serial_key,
                    IssuedCertificate.revoked.is_(True),
                )
            )
        )
    )
    return certificate_standing(certificate, revoked_in_database=revoked, inventory=inventory)


def _revoked(certificate: PresentedCertificate) -> Denied:
    return Denied(
        reason="certificate_revoked",
        detail=f"the client certificate (serial {certificate.serial:x}) is revoked",
    )


def _kind(identity: str) -> str | None:
    if identity.startswith(USER_PREFIX):
        return "user"
    if identity.startswith(DEVICE_PREFIX):
        return "device"
    return None


def live_grants(session: Session, *, instruments: Collection[str] | None) -> list[Grant]:
    """The grants in force now, for `instruments` (and `*`), or all when None."""
    disabled_user = exists().where(
        User.disabled.is_(True), literal(USER_PREFIX).concat(User.username) == Grant.principal
    )
    revoked_device = exists().where(
        Device.revoked.is_(True), literal(DEVICE_PREFIX).concat(Device.id) == Grant.principal
    )
    query = select(Grant).where(not_(or_(disabled_user, revoked_device)))
    if instruments is not None:
        query = query.where(or_(Grant.instrument == "*", Grant.instrument.in_(list(instruments))))
    return list(session.scalars(query.order_by(Grant.id)))


def record_change(session: Session) -> int:
    """Step the `changes` counter in the caller's transaction; waiting gateways then ask again."""
    return next_value(session, CHANGES_COUNTER)


def next_value(session: Session, name: str) -> int:
    """Bump counter `name` in one UPDATE ... RETURNING: two replicas never get the same value."""
    value = session.execute(
        update(Counter)
        .where(Counter.name == name)
        .values(value=Counter.value + 1)
        .returning(Counter.value)
    ).scalar_one_or_none()
    if value is None:
        raise NotFound(f"counter {name!r} is missing; run `labgate server migrate`")
    return int(value)


def current_value(connection: Connection | Session, name: str = CHANGES_COUNTER) -> int:
    value = connection.scalar(select(Counter.value).where(Counter.name == name))
    return int(value or 0)


def acme_account_standing(connection: Connection | Session, account_id: str) -> Decision:
    """May this ACME account act now: it exists, is valid (not deactivated), and the external
    account binding it registered with (if any) has not been revoked. One round trip."""
    row = connection.execute(
        select(AcmeAccount.status, AcmeAccount.eab_kid, AcmeExternalKey.revoked_at)
        .outerjoin(AcmeExternalKey, AcmeExternalKey.kid == AcmeAccount.eab_kid)
        .where(AcmeAccount.id == account_id)
    ).one_or_none()
    if row is None:
        return Denied(reason="unknown_account", detail=f"no ACME account {account_id}")
    status, eab_kid, eab_revoked_at = row
    if status != "valid":
        return Denied(reason=f"account_{status}", detail=f"ACME account {account_id} is {status}")
    if eab_kid is not None and eab_revoked_at is not None:
        return Denied(
            reason="eab_revoked",
            detail=f"the external account binding of ACME account {account_id} has been revoked",
        )
    return Allowed()
