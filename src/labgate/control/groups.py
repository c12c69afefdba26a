"""Device groups: a name for a set of devices that a job or rollout can target.

A group belongs to the user who made it; only that user (or an administrator) sees, changes or
targets it, and it can hold only devices that user may change, so a group cannot reach past
device ownership.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from labgate.control import audit, jobs
from labgate.control.errors import NotFound
from labgate.control.principals import Principal
from labgate.control.tables import DeviceGroup, DeviceGroupMember, User


def put_group(
    session: Session,
    principal: Principal,
    owner: User | None,
    name: str,
    device_ids: Sequence[str],
    *,
    now: datetime,
) -> DeviceGroup:
    """Create the group or replace its members."""
    principal.require_role("admin", "operator")
    members = jobs.reachable(session, principal, owner, device_ids)
    group = session.get(DeviceGroup, name)
    if group is None:
        group = DeviceGroup(name=name, owner_id=owner.id if owner else None, created_at=now)
        session.add(group)
        session.flush()
    elif not _may_see(principal, owner, group):
        raise NotFound(f"no group {name!r}")
    session.execute(delete(DeviceGroupMember).where(DeviceGroupMember.group_name == name))
    session.add_all(DeviceGroupMember(group_name=name, device_id=d) for d in members)
    session.flush()
    audit.record(
        session, at=now, kind="group.set", subject=principal.identity, group=name, size=len(members)
    )
    return group


def group_for(session: Session, principal: Principal, owner: User | None, name: str) -> DeviceGroup:
    group = session.get(DeviceGroup, name)
    if group is None or not _may_see(principal, owner, group):
        raise NotFound(f"no group {name!r}")
    return group


def members(session: Session, name: str) -> list[str]:
    return list(
        session.scalars(
            select(DeviceGroupMember.device_id)
            .where(DeviceGroupMember.group_name == name)
            .order_by(DeviceGroupMember.device_id)
        )
    )


def _may_see(principal: Principal, owner: User | None, group: DeviceGroup) -> bool:
    if principal.kind != "user":
        return False
    return principal.is_admin or (owner is not None and group.owner_id == owner.id)


def targets(
    session: Session,
    principal: Principal,
    owner: User | None,
    group: str | None,
    device_ids: Sequence[str],
) -> list[str]:
    """The members of `group` (if named, and visible to `principal`), else `device_ids`."""
    if group is None:
        return list(device_ids)
    group_for(session, principal, owner, group)
    return members(session, group)
