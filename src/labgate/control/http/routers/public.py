"""Endpoints without authentication: public device locations, JWKS, health, metrics."""

from __future__ import annotations

from fastapi import APIRouter, Response
from sqlalchemy import text

from labgate.control import devices, jobkeys
from labgate.control.http.dependencies import RuntimeDep, SessionDep
from labgate.control.schemas import Health, PublicLocation

router = APIRouter(tags=["public"])


@router.get("/api/v1/public/locations", response_model=list[PublicLocation])
def locations(session: SessionDep) -> list[PublicLocation]:
    """Where devices are, to about 1 km (two decimals), and nothing else about them."""
    return [
        PublicLocation(latitude=lat, longitude=lon)
        for lat, lon in devices.public_locations(session)
    ]


@router.get("/.well-known/jwks.json")
def jwks(runtime: RuntimeDep) -> dict[str, list[dict[str, str]]]:
    """The public keys that verify access tokens and gateway bundles (current and retired,
    `use` "sig"), then the jobs keys (`use` "labgate-jobs"), which verify only signed jobs."""
    now = runtime.clock()
    published = runtime.keys.ring().jwks(now=now)
    published["keys"] += jobkeys.published(runtime.job_keys.ring(), now=now)
    return published


@router.get("/healthz", response_model=Health)
def healthz(session: SessionDep) -> Health:
    session.execute(text("SELECT 1"))
    return Health()


@router.get("/metrics", response_class=Response)
def metrics(runtime: RuntimeDep) -> Response:
    return Response(runtime.metrics.exposition(), media_type="text/plain; version=0.0.4")
