"""What the console's dashboard shows, computed at each request (no restart, no cache):
certificates that end within 7 and 30 days, stale devices, instruments no gateway serves, and
recent refusals.

Each part is read through the same rules as the API: an administrator sees the site, anyone else
their own certificates and devices (`certificates.certificate_page`, `devices.device_page`);
refusals (failed and locked logins, wrong device codes, refused links, reused refresh tokens)
are shown to administrators only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from labgate.control import certificates, devices, jobs
from labgate.control.certificates import CertificateRecord
from labgate.control.principals import Principal
from labgate.control.tables import AuditEvent, Grant, Job, User
from labgate.pki.inventory import Inventory

SOON = timedelta(days=7)
WITHIN_A_MONTH = timedelta(days=30)
REFUSALS = (
    "login.failed",
    "login.locked",
    "device_code.wrong_entry",
    "link.refused",
    "refresh.reuse",
)
SHOWN = 10


@dataclass(frozen=True, slots=True, kw_only=True)
class Overview:
    expiring_7: int
    expiring_30: int
    expiring: tuple[CertificateRecord, ...]  # within 30 days, soonest first
    stale_devices: int
    never_seen_devices: int
    stale: tuple[devices.DeviceRow, ...]  # least recently seen first
    instruments_without_gateway: tuple[str, ...] | None  # None: not the caller's to see
    refusals: tuple[AuditEvent, ...] | None


def overview(
    session: Session,
    inventory: Inventory,
    principal: Principal,
    owner: User | None,
    *,
    gateway_instruments: Mapping[str, tuple[str, ...]],
    now: datetime,
) -> Overview:
    month = certificates.certificate_page(
        session, inventory, principal, ending_within=WITHIN_A_MONTH, limit=SHOWN, now=now
    )
    week = certificates.certificate_page(
        session, inventory, principal, ending_within=SOON, limit=1, now=now
    )
    stale = devices.device_page(
        session, principal, owner, shown="stale", sort="last_seen", limit=SHOWN, now=now
    )
    never = devices.device_page(session, principal, owner, shown="never", limit=1, now=now)
    unserved = refusals = None
    if principal.is_admin:
        unserved = instruments_without_gateway(session, gateway_instruments)
        refusals = tuple(
            session.scalars(
                select(AuditEvent)
                .where(AuditEvent.kind.in_(REFUSALS))
                .order_by(AuditEvent.id.desc())
                .limit(SHOWN)
            )
        )
    return Overview(
        expiring_7=week.total,
        expiring_30=month.total,
        expiring=month.records,
        stale_devices=stale.total,
        never_seen_devices=never.total,
        stale=stale.rows,
        instruments_without_gateway=unserved,
        refusals=refusals,
    )


def instruments_without_gateway(
    session: Session, gateway_instruments: Mapping[str, tuple[str, ...]]
) -> tuple[str, ...]:
    """Instruments that grants name but no gateway in `gateway_instruments` serves. A gateway
    not listed there names its instruments itself when it asks, which the server does not keep;
    with no gateway listed at all, nothing can be said and nothing is returned."""
    if not gateway_instruments:
        return ()
    served = {name for names in gateway_instruments.values() for name in names}
    named = session.scalars(select(Grant.instrument).where(Grant.instrument != "*").distinct())
    return tuple(sorted(set(named) - served))


def open_jobs(session: Session, device_ids: list[str]) -> dict[str, int]:
    """How many jobs each of these devices has open (queued, in progress or being canceled)."""
    if not device_ids:
        return {}
    rows = session.execute(
        select(Job.device_id, func.count())
        .where(Job.device_id.in_(device_ids), Job.state.in_(jobs.ACTIVE))
        .group_by(Job.device_id)
    ).all()
    return {device_id: int(count) for device_id, count in rows}
