"""`/api/v1/acme/eab`: administrators make, list and revoke ACME external account binding
credentials; the HMAC key is in the answer to POST, once."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, status

from labgate.control.acme import external
from labgate.control.acme.external import ExternalKey
from labgate.control.http.dependencies import AdminPrincipal, RuntimeDep, SessionDep
from labgate.control.schemas import ExternalKeyCreate, ExternalKeyCreated, ExternalKeyOut

router = APIRouter(prefix="/api/v1/acme/eab", tags=["acme"])

Kid = Annotated[str, Path(pattern=r"^[A-Za-z0-9_-]{1,64}$")]


def external_key_out(key: ExternalKey) -> ExternalKeyOut:
    return ExternalKeyOut(
        kid=key.kid,
        label=key.label,
        dns_suffixes=list(key.dns_suffixes),
        ip_ranges=list(key.ip_ranges),
        created_at=key.created_at,
        created_by=key.created_by,
        revoked_at=key.revoked_at,
        account_id=key.account_id,
    )


@router.post("", response_model=ExternalKeyCreated, status_code=status.HTTP_201_CREATED)
def create_external_key(
    body: ExternalKeyCreate, runtime: RuntimeDep, session: SessionDep, admin: AdminPrincipal
) -> ExternalKeyCreated:
    """A credential for one ACME account (certbot: --eab-kid KID --eab-hmac-key KEY), limited
    to names under `dns_suffixes` and addresses in `ip_ranges`."""
    key, hmac_key = external.create(
        session,
        runtime.acme.sealer,
        label=body.label,
        dns_suffixes=body.dns_suffixes,
        ip_ranges=body.ip_ranges,
        by=admin.identity,
        now=runtime.clock(),
    )
    return ExternalKeyCreated(external_key=external_key_out(key), hmac_key=hmac_key)


@router.get("", response_model=list[ExternalKeyOut])
def list_external_keys(session: SessionDep, _admin: AdminPrincipal) -> list[ExternalKeyOut]:
    return [external_key_out(key) for key in external.list_keys(session)]


@router.post("/{kid}/revoke", response_model=ExternalKeyOut)
def revoke_external_key(
    kid: Kid, runtime: RuntimeDep, session: SessionDep, admin: AdminPrincipal
) -> ExternalKeyOut:
    """The credential binds no new account, and its account may order nothing more."""
    key = external.revoke(session, kid, by=admin.identity, now=runtime.clock())
    return external_key_out(key)
