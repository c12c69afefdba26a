"""`/api/v1/grants`: who may use which instrument at which level (administrators change them)."""

from __future__ import annotations

from fastapi import APIRouter, status

from labgate.control import grants
from labgate.control.http.dependencies import (
    AdminPrincipal,
    CurrentPrincipal,
    RowId,
    RuntimeDep,
    SessionDep,
)
from labgate.control.schemas import Done, GrantCreate, GrantOut
from labgate.control.tables import Grant

router = APIRouter(prefix="/api/v1/grants", tags=["grants"])


def grant_out(grant: Grant) -> GrantOut:
    return GrantOut(
        id=grant.id,
        principal=grant.principal,
        instrument=grant.instrument,
        level=grant.level,
        created_at=grant.created_at,
    )


@router.post("", response_model=GrantOut, status_code=status.HTTP_201_CREATED)
def create_grant(
    body: GrantCreate, runtime: RuntimeDep, session: SessionDep, principal: AdminPrincipal
) -> GrantOut:
    grant = grants.create_grant(
        session,
        principal,
        who=body.principal,
        instrument=body.instrument,
        level=body.level,
        now=runtime.clock(),
    )
    return grant_out(grant)


@router.get("", response_model=list[GrantOut])
def list_grants(session: SessionDep, principal: CurrentPrincipal) -> list[GrantOut]:
    """Every grant for an administrator; the caller's own grants for anyone else."""
    return [grant_out(g) for g in grants.visible_grants(session, principal)]


@router.delete("/{grant_id}", response_model=Done)
def delete_grant(
    grant_id: RowId, runtime: RuntimeDep, session: SessionDep, principal: AdminPrincipal
) -> Done:
    grants.delete_grant(session, principal, grant_id, now=runtime.clock())
    return Done()
