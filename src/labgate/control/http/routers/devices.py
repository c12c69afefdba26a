"""`/api/v1/devices`: create, list, get, update location, revoke; ownership checked on each."""

from __future__ import annotations

from fastapi import APIRouter, status
from sqlalchemy.orm import Session

from labgate.control import accounts, devices
from labgate.control.http.dependencies import CurrentPrincipal, RuntimeDep, SessionDep
from labgate.control.minting import mint_pair, new_family
from labgate.control.principals import DEVICE_ROLE, Principal, device_identity, user_identity
from labgate.control.runtime import Runtime
from labgate.control.schemas import DeviceCreate, DeviceCreated, DeviceOut, Location
from labgate.control.tables import Device, User

router = APIRouter(prefix="/api/v1/devices", tags=["devices"])


def _caller_user(session: Session, principal: Principal) -> User | None:
    return accounts.find_user(session, principal.name) if principal.kind == "user" else None


def device_out(session: Session, device: Device, runtime: Runtime) -> DeviceOut:
    owner = session.get(User, device.owner_id) if device.owner_id is not None else None
    return DeviceOut(
        id=device.id,
        identity=device_identity(device.id),
        name=device.name,
        owner=user_identity(owner.username) if owner else None,
        latitude=device.latitude,
        longitude=device.longitude,
        revoked=device.revoked,
        online=devices.is_online(device, now=runtime.clock()),
        created_at=device.created_at,
    )


@router.post("", response_model=DeviceCreated, status_code=status.HTTP_201_CREATED)
def create_device(
    body: DeviceCreate, runtime: RuntimeDep, session: SessionDep, principal: CurrentPrincipal
) -> DeviceCreated:
    """A device owned by the caller, with its first token pair (shown once)."""
    principal.require_role("admin", "operator")
    owner = _caller_user(session, principal)
    assert owner is not None
    now = runtime.clock()
    location = (body.location.latitude, body.location.longitude) if body.location else None
    device = devices.create_device(session, owner, name=body.name, location=location, now=now)
    minted = mint_pair(
        session,
        runtime.mint,
        subject=device_identity(device.id),
        role=DEVICE_ROLE,
        family_id=new_family(),
        restricted=False,
        cnf_thumbprint=None,
        now=now,
    )
    return DeviceCreated(device=device_out(session, device, runtime), credentials=minted.pair)


@router.get("", response_model=list[DeviceOut])
def list_devices(
    runtime: RuntimeDep, session: SessionDep, principal: CurrentPrincipal
) -> list[DeviceOut]:
    owner = _caller_user(session, principal)
    return [
        device_out(session, d, runtime) for d in devices.visible_devices(session, principal, owner)
    ]


@router.get("/{device_id}", response_model=DeviceOut)
def get_device(
    device_id: str, runtime: RuntimeDep, session: SessionDep, principal: CurrentPrincipal
) -> DeviceOut:
    owner = _caller_user(session, principal)
    device = devices.device_for(session, principal, owner, device_id, change=False)
    return device_out(session, device, runtime)


@router.put("/{device_id}/location", response_model=DeviceOut)
def update_location(
    device_id: str,
    body: Location,
    runtime: RuntimeDep,
    session: SessionDep,
    principal: CurrentPrincipal,
) -> DeviceOut:
    owner = _caller_user(session, principal)
    device = devices.device_for(session, principal, owner, device_id, change=True)
    devices.update_location(
        device, latitude=body.latitude, longitude=body.longitude, now=runtime.clock()
    )
    return device_out(session, device, runtime)


@router.post("/{device_id}/revoke", response_model=DeviceOut)
def revoke_device(
    device_id: str, runtime: RuntimeDep, session: SessionDep, principal: CurrentPrincipal
) -> DeviceOut:
    """Revoke the device, its tokens (at once, everywhere) and its certificates."""
    owner = _caller_user(session, principal)
    device = devices.device_for(session, principal, owner, device_id, change=False)
    devices.revoke_device(session, runtime.ca.inventory, principal, device, now=runtime.clock())
    return device_out(session, device, runtime)
