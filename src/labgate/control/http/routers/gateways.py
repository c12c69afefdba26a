"""`GET /api/v1/gateways/{name}/bundle`: the signed grants and CRL for one gateway, as a long poll;
`POST /api/v1/gateways/{name}/certificates`: a gateway renewing its own certificates.

Without `after`, the bundle comes at once. With `after=N` (the `changes` number of the gateway's
last bundle), the answer comes as soon as anything changed past N, on any replica, or else after
`wait` seconds (at most `bundle_wait_seconds`) as 204 No Content: ask again. The wait holds no
database connection; the gateway's certificate is checked before it and again after.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response, status
from starlette.concurrency import run_in_threadpool

from labgate.control import bundles, gatewaycertificates, gatewaylogs
from labgate.control.http.dependencies import PeerCertificate, RuntimeDep, SessionDep
from labgate.control.runtime import Runtime
from labgate.control.schemas import CertificateOut, GatewayCertificateRequest
from labgate.control.transactions import unit_of_work

router = APIRouter(prefix="/api/v1/gateways", tags=["gateways"])

CHANGES_HEADER = "Labgate-Changes"


@router.get(
    "/{name}/bundle",
    response_class=Response,
    responses={
        200: {"content": {"application/jose": {"schema": {"type": "string"}}}},
        204: {"description": "nothing changed past `after` during the wait; ask again"},
    },
)
async def bundle(
    name: str,
    runtime: RuntimeDep,
    certificate: PeerCertificate,
    after: Annotated[int | None, Query(ge=0, le=2**62)] = None,
    wait: Annotated[float | None, Query(gt=0, le=3600)] = None,
    instrument: Annotated[list[str] | None, Query(max_length=bundles.MAX_INSTRUMENTS)] = None,
) -> Response:
    """A compact JWS (EdDSA, `typ` labgate-bundle+jwt); the gateway authenticates by certificate."""
    asked = tuple(instrument or ())
    audience = await run_in_threadpool(_authenticate, runtime, name, certificate, asked)
    if after is not None:
        limit = float(runtime.settings.bundle_wait_seconds)
        timeout = min(wait, limit) if wait is not None else limit
        if not await runtime.changes.wait_beyond(after, timeout=timeout, key=audience):
            return Response(status_code=204, headers={CHANGES_HEADER: str(after)})
    token = await run_in_threadpool(_issue, runtime, name, certificate, asked)
    return Response(token, media_type="application/jose")


def _authenticate(
    runtime: Runtime, name: str, certificate: bytes | None, asked: tuple[str, ...]
) -> str:
    with unit_of_work(runtime.sessions) as session:
        audience = bundles.authenticate_gateway(session, runtime.ca, name, certificate)
    bundles.instruments_for(runtime.settings.gateway_instruments, name, asked)
    return audience


def _issue(runtime: Runtime, name: str, certificate: bytes | None, asked: tuple[str, ...]) -> str:
    settings = runtime.settings
    with unit_of_work(runtime.sessions) as session:
        audience = bundles.authenticate_gateway(session, runtime.ca, name, certificate)
        instruments = bundles.instruments_for(settings.gateway_instruments, name, asked)
        return bundles.build_bundle(
            session,
            ca=runtime.ca,
            ring=runtime.keys.ring(),
            issuer=settings.issuer,
            lifetime=timedelta(seconds=settings.bundle_seconds),
            audience=audience,
            instruments=instruments,
            now=runtime.clock(),
        )


AUDIT_MEDIA_TYPE = "application/x-ndjson"


@router.get("/{name}/audit")
def audit_head(name: str, runtime: RuntimeDep, certificate: PeerCertificate) -> dict[str, object]:
    """Where this gateway's audit chain stands here: ship from `seq + 1` of log `log_id`."""
    with unit_of_work(runtime.sessions) as session:
        bundles.authenticate_gateway(session, runtime.ca, name, certificate)
        return gatewaylogs.head(session, name).public()


@router.post(
    "/{name}/audit",
    openapi_extra={"requestBody": {"content": {AUDIT_MEDIA_TYPE: {"schema": {"type": "string"}}}}},
)
async def audit_batch(
    name: str,
    request: Request,
    runtime: RuntimeDep,
    certificate: PeerCertificate,
    log: Annotated[str, Query(min_length=64, max_length=64, pattern="^[0-9a-f]{64}$")],
) -> dict[str, object]:
    """Lines of the gateway's audit log `log`, exactly as in its file, continuing the head held
    here; refused whole (409 with `where`: seq and hashes) when they do not."""
    body = await request.body()
    return await run_in_threadpool(_receive, runtime, name, certificate, log, body)


def _receive(
    runtime: Runtime, name: str, certificate: bytes | None, log_id: str, body: bytes
) -> dict[str, object]:
    with unit_of_work(runtime.sessions) as session:
        bundles.authenticate_gateway(session, runtime.ca, name, certificate)
        lines = gatewaylogs.split_lines(body)
        return gatewaylogs.receive(
            session, gateway=name, log_id=log_id, lines=lines, now=runtime.clock()
        ).public()


@router.post(
    "/{name}/certificates", response_model=CertificateOut, status_code=status.HTTP_201_CREATED
)
def gateway_certificate(
    name: str,
    body: GatewayCertificateRequest,
    runtime: RuntimeDep,
    session: SessionDep,
    certificate: PeerCertificate,
) -> CertificateOut:
    """Sign the gateway's CSR (its own new key) for its server or control client certificate;
    the gateway authenticates with its current certificate and keeps the names it holds."""
    issued = gatewaycertificates.issue_for_gateway(
        session,
        runtime.ca,
        name,
        certificate,
        body.csr_pem.encode("utf-8"),
        purpose=body.purpose,
        lifetime=timedelta(seconds=runtime.settings.gateway_certificate_seconds),
        now=runtime.clock(),
    )
    return CertificateOut(
        serial=format(issued.serial, "x"),
        identity=issued.identity or "",
        not_after=issued.certificate.not_valid_after_utc,
        certificate_pem=issued.certificate_pem.decode("ascii"),
        chain_pem=issued.chain_pem.decode("ascii"),
    )
