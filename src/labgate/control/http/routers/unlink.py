"""`POST /api/v1/devices/{device_id}/unlink`: a linked device leaves (`labgate agent unlink`)."""

from __future__ import annotations

from fastapi import APIRouter

from labgate.control import audit, certificates
from labgate.control.errors import NotFound
from labgate.control.http.dependencies import CurrentPrincipal, RuntimeDep, SessionDep
from labgate.control.principals import device_identity
from labgate.control.revocation import revoke_subject
from labgate.control.schemas import Unlinked
from labgate.control.standing import record_change
from labgate.control.tables import Device

router = APIRouter(prefix="/api/v1/devices", tags=["devices"])


@router.post("/{device_id}/unlink", response_model=Unlinked)
def unlink(
    device_id: str, runtime: RuntimeDep, session: SessionDep, principal: CurrentPrincipal
) -> Unlinked:
    """The device itself ends its link: it, its certificates and its tokens are revoked."""
    device = session.get(Device, device_id)
    if principal.kind != "device" or principal.name != device_id or device is None:
        raise NotFound(f"no device {device_id!r} of yours")
    now = runtime.clock()
    identity = device_identity(device_id)
    if not device.revoked:
        device.revoked = True
        revoke_subject(session, identity, now=now)
        certificates.revoke_held(
            session,
            runtime.ca.inventory,
            identity,
            reason="cessationOfOperation",
            now=now,
            by=identity,
        )
        record_change(session)
        audit.record(session, at=now, kind="device.unlinked", subject=identity)
    return Unlinked(device_id=device_id)
