"""`/api/v1/me`: who the caller is."""

from __future__ import annotations

from fastapi import APIRouter

from labgate.control.http.dependencies import CurrentPrincipal
from labgate.control.schemas import Me

router = APIRouter(prefix="/api/v1", tags=["me"])


@router.get("/me", response_model=Me)
async def me(principal: CurrentPrincipal) -> Me:
    return Me(
        identity=principal.identity, kind=principal.kind, name=principal.name, role=principal.role
    )
