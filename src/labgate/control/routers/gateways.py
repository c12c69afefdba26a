"""`GET /api/v1/gateways/{name}/bundle`: the signed grants and CRL for one gateway."""

from __future__ import annotations

from fastapi import APIRouter, Response

from labgate.control import bundles
from labgate.control.dependencies import PeerCertificate, RuntimeDep, SessionDep

router = APIRouter(prefix="/api/v1/gateways", tags=["gateways"])


@router.get(
    "/{name}/bundle",
    response_class=Response,
    responses={200: {"content": {"application/jose": {"schema": {"type": "string"}}}}},
)
def bundle(
    name: str, runtime: RuntimeDep, session: SessionDep, certificate: PeerCertificate
) -> Response:
    """A compact JWS (EdDSA, `typ` labgate-bundle+jwt); the gateway authenticates by certificate."""
    audience = bundles.authenticate_gateway(runtime, name, certificate)
    token = bundles.build_bundle(session, runtime, audience=audience, now=runtime.clock())
    session.commit()
    return Response(token, media_type="application/jose")
