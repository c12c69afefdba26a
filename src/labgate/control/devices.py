"""Devices: created by a user who then owns them; read and changed only by owner, admin or itself.

Ownership is checked here, once, for every route: a device's own token reaches only its own
record, a user reaches the devices they own, an administrator reaches all.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal, TypeVar

from sqlalchemy import Select, and_, func, literal, or_, select
from sqlalchemy.orm import Session

from labgate.control import audit, certificates
from labgate.control.errors import Forbidden, NotFound
from labgate.control.principals import Principal, device_identity
from labgate.control.revocation import revoke_subject
from labgate.control.standing import record_change
from labgate.control.tables import Device, IssuedCertificate, User
from labgate.pki.inventory import Inventory

_Query = TypeVar("_Query", bound=Select[*tuple[Any, ...]])

# A device counts as online when it was seen (token refresh, location update) this recently.
ONLINE_WINDOW = timedelta(minutes=10)


def new_device_id() -> str:
    return "d-" + secrets.token_hex(8)


def create_device(
    session: Session,
    owner: User,
    *,
    name: str,
    location: tuple[float, float] | None,
    now: datetime,
) -> Device:
    device = Device(
        id=new_device_id(),
        name=name,
        owner_id=owner.id,
        latitude=location[0] if location else None,
        longitude=location[1] if location else None,
        revoked=False,
        created_at=now,
    )
    session.add(device)
    session.flush()
    audit.record(session, at=now, kind="device.created", subject=device_identity(device.id))
    return device


def visible_devices(session: Session, principal: Principal, owner: User | None) -> list[Device]:
    """The devices `principal` may see: all (admin), its own (user), or itself (device)."""
    query = _visible(select(Device), principal, owner).order_by(Device.created_at, Device.id)
    return list(session.scalars(query))


def _visible(query: _Query, principal: Principal, owner: User | None) -> _Query:
    if principal.kind == "device":
        return query.where(Device.id == principal.name)
    if not principal.is_admin:
        return query.where(Device.owner_id == (owner.id if owner else -1))
    return query


def device_for(
    session: Session, principal: Principal, owner: User | None, device_id: str, *, change: bool
) -> Device:
    """The device if `principal` may read (or, with `change`, modify) it.

    Another principal's device is reported as not found, so ids cannot be probed.
    """
    device = session.get(Device, device_id)
    if device is None or not may_reach(principal, owner, device):
        raise NotFound(f"no device {device_id!r}")
    if change and device.revoked:
        raise Forbidden(f"device {device_id!r} is revoked")
    return device


def may_reach(principal: Principal, owner: User | None, device: Device) -> bool:
    if principal.kind == "device":
        return principal.name == device.id
    if principal.is_admin:
        return True
    return owner is not None and device.owner_id == owner.id


def update_location(device: Device, *, latitude: float, longitude: float, now: datetime) -> None:
    device.latitude = latitude
    device.longitude = longitude
    device.last_seen_at = now


def revoke_device(
    session: Session, inventory: Inventory, principal: Principal, device: Device, *, now: datetime
) -> list[int]:
    """Revoke the device and all it holds (tokens, certificates, grants), in the caller's
    transaction; returns the serials of the certificates revoked."""
    if principal.kind == "device":
        raise Forbidden("a device cannot revoke itself; its owner or an administrator can")
    identity = device_identity(device.id)
    if device.revoked:
        return []
    device.revoked = True
    revoke_subject(session, identity, now=now)
    serials = certificates.revoke_held(
        session, inventory, identity, reason="cessationOfOperation", now=now, by=principal.identity
    )
    record_change(session)
    audit.record(session, at=now, kind="device.revoked", subject=identity, by=principal.identity)
    return serials


def is_online(device: Device, *, now: datetime) -> bool:
    return device.last_seen_at is not None and now - device.last_seen_at < ONLINE_WINDOW


def public_locations(session: Session) -> list[tuple[float, float]]:
    """Every unrevoked device's position rounded to two decimals (about 1 km), nothing else."""
    rows = session.execute(
        select(Device.latitude, Device.longitude).where(
            Device.revoked.is_(False), Device.latitude.is_not(None), Device.longitude.is_not(None)
        )
    ).all()
    return [
        (round(lat, 2), round(lon, 2)) for lat, lon in rows if lat is not None and lon is not None
    ]


# -- the console's device list: one page at a time, filtered and sorted in the database ---------

Shown = Literal["all", "online", "offline", "stale", "never"]
SortKey = Literal["name", "id", "owner", "last_seen", "certificate", "created"]


@dataclass(frozen=True, slots=True, kw_only=True)
class DeviceRow:
    device: Device
    owner: str | None
    certificate_expires: datetime | None  # the latest unrevoked certificate's end


@dataclass(frozen=True, slots=True, kw_only=True)
class DevicePage:
    rows: tuple[DeviceRow, ...]
    total: int
    offset: int
    limit: int


def device_page(
    session: Session,
    principal: Principal,
    owner: User | None,
    *,
    shown: Shown = "all",
    sort: SortKey = "name",
    descending: bool = False,
    offset: int = 0,
    limit: int = 50,
    now: datetime,
) -> DevicePage:
    """The devices `principal` may see (the same rule as `visible_devices`), one page of them.

    `online`: seen within ONLINE_WINDOW; `stale`: seen before but not since; `never`: never
    seen; `offline`: stale or never. Revoked devices are listed under `all` only.
    """
    recent = now - ONLINE_WINDOW
    certificate = (
        select(func.max(IssuedCertificate.expires_at))
        .where(
            IssuedCertificate.subject == literal("labgate:device:").concat(Device.id),
            IssuedCertificate.revoked.is_(False),
        )
        .correlate(Device)
        .scalar_subquery()
        .label("certificate_expires")
    )
    live = Device.revoked.is_(False)
    conditions = {
        "all": None,
        "online": and_(live, Device.last_seen_at >= recent),
        "stale": and_(live, Device.last_seen_at < recent),
        "never": and_(live, Device.last_seen_at.is_(None)),
        "offline": and_(live, or_(Device.last_seen_at < recent, Device.last_seen_at.is_(None))),
    }
    query = _visible(
        select(Device, User.username, certificate).outerjoin(User, User.id == Device.owner_id),
        principal,
        owner,
    )
    count = _visible(select(func.count()).select_from(Device), principal, owner)
    condition = conditions[shown]
    if condition is not None:
        query = query.where(condition)
        count = count.where(condition)
    columns: dict[str, Any] = {
        "name": Device.name,
        "id": Device.id,
        "owner": User.username,
        "last_seen": Device.last_seen_at,
        "certificate": certificate,
        "created": Device.created_at,
    }
    key = columns[sort]
    ordered = key.desc().nulls_last() if descending else key.asc().nulls_last()
    query = query.order_by(ordered, Device.id).offset(offset).limit(limit)
    rows = tuple(
        DeviceRow(device=device, owner=username, certificate_expires=expires)
        for device, username, expires in session.execute(query).all()
    )
    return DevicePage(rows=rows, total=int(session.scalar(count) or 0), offset=offset, limit=limit)
