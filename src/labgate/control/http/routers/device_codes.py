"""`/api/v1/device-codes`: RFC 8628 linking by code (README: "Linking a device: the wire
protocol"): the device's request and poll, the person's look and approval."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request

from labgate.auth.codes import format_user_code
from labgate.control import accounts, devicecodes
from labgate.control.addresses import public_address
from labgate.control.errors import Forbidden
from labgate.control.http.dependencies import CurrentPrincipal, RuntimeDep, SessionDep
from labgate.control.principals import Principal
from labgate.control.schemas import (
    DeviceCodeApproval,
    DeviceCodeDecision,
    DeviceCodeInfo,
    DeviceCodeOut,
    DeviceCodeRequest,
    DeviceTokenRequest,
    Enrolment,
)
from labgate.control.tables import DeviceCode, User

router = APIRouter(prefix="/api/v1/device-codes", tags=["device codes"])


def _person(session: SessionDep, principal: Principal) -> User:
    user = accounts.find_user(session, principal.name) if principal.kind == "user" else None
    if user is None:
        raise Forbidden("only a person's session may approve devices", code="access_denied")
    return user


@router.post("", response_model=DeviceCodeOut)
def request_code(
    body: DeviceCodeRequest, request: Request, runtime: RuntimeDep, session: SessionDep
) -> DeviceCodeOut:
    """A device asks to be linked by code (RFC 8628 section 3.1-3.2)."""
    row, device_code, user_code = devicecodes.create(
        session,
        runtime.settings,
        body,
        public_address=public_address(request, runtime.settings),
        now=runtime.clock(),
    )
    shown = format_user_code(user_code)
    page = str(request.base_url).rstrip("/") + "/link"
    return DeviceCodeOut(
        device_code=device_code,
        user_code=shown,
        verification_uri=page,
        verification_uri_complete=f"{page}?user_code={shown}",
        expires_in=runtime.settings.device_code_seconds,
        interval=row.interval,
        device_id=row.device_id,
    )


def _info(row: DeviceCode, typed: str) -> DeviceCodeInfo:
    return DeviceCodeInfo(
        user_code=format_user_code(typed),
        device_id=row.device_id,
        model=row.model,
        serial=row.serial,
        hostname=row.hostname,
        local_address=row.local_address,
        public_address=row.public_address,
        requested_at=row.created_at,
        expires_at=row.expires_at,
    )


@router.get("/approve", response_model=DeviceCodeInfo)
def show_code(
    user_code: Annotated[str, Query(min_length=1, max_length=32)],
    request: Request,
    runtime: RuntimeDep,
    session: SessionDep,
    principal: CurrentPrincipal,
) -> DeviceCodeInfo:
    """Which device asked for this code, from where and when (an entry: counted if wrong)."""
    row = devicecodes.find_entered(
        session,
        runtime,
        _person(session, principal),
        user_code,
        public_address=public_address(request, runtime.settings),
        now=runtime.clock(),
    )
    return _info(row, user_code)


@router.post("/approve", response_model=DeviceCodeDecision)
def approve_code(
    body: DeviceCodeApproval,
    request: Request,
    runtime: RuntimeDep,
    session: SessionDep,
    principal: CurrentPrincipal,
) -> DeviceCodeDecision:
    row = devicecodes.decide(
        session,
        runtime,
        _person(session, principal),
        body.user_code,
        approve=body.approve,
        public_address=public_address(request, runtime.settings),
        now=runtime.clock(),
    )
    return DeviceCodeDecision(
        status="approved" if row.state == "approved" else "denied", device_id=row.device_id
    )


@router.post("/token", response_model=Enrolment)
def poll_token(body: DeviceTokenRequest, runtime: RuntimeDep, session: SessionDep) -> Enrolment:
    """The device's poll (RFC 8628 section 3.4) with its CSR: the enrolment, exactly once."""
    return devicecodes.poll(
        session,
        runtime,
        grant_type=body.grant_type,
        device_code=body.device_code,
        csr_pem=body.csr_pem,
        now=runtime.clock(),
    )
