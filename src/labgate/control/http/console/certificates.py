"""Certificates: every one for an administrator, one's own for anyone else (as `GET
/api/v1/certificates`), filtered by holder, status and days left, soonest end first; revoking one
takes a reason and a confirmation."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import HTMLResponse, Response

from labgate.control import certificates
from labgate.control.errors import InvalidInput
from labgate.control.http.console.gate import Person, Posted
from labgate.control.http.console.pages import ConsoleRoute, notice, page, parsed, see_other
from labgate.control.http.dependencies import RuntimeDep, SessionDep
from labgate.control.schemas import IDENTITY_PATTERN, CertificateRevoke, CertificateStatus
from labgate.control.servercertificate import serving_serial
from labgate.pki.revocation import REASONS

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)
PAGE_SIZE = 50
Serial = Annotated[str, Path(pattern=r"^[0-9a-fA-F]{1,40}$")]
# The reasons a person picks from; the CA-only ones (cACompromise, ...) stay with the API.
PICKED = (
    "unspecified",
    "keyCompromise",
    "affiliationChanged",
    "superseded",
    "cessationOfOperation",
    "privilegeWithdrawn",
)


@router.get("/console/certificates", response_class=HTMLResponse)
def certificate_list(
    request: Request,
    runtime: RuntimeDep,
    session: SessionDep,
    visitor: Person,
    identity: Annotated[str | None, Query(max_length=200)] = None,
    status: CertificateStatus | None = None,
    expiring: Annotated[int | None, Query(ge=1, le=3650)] = None,
    page_number: Annotated[int, Query(alias="page", ge=1, le=100_000)] = 1,
    notice_key: Annotated[str | None, Query(alias="notice", max_length=40)] = None,
) -> Response:
    now = runtime.clock()
    holder = identity or None
    if holder is not None and re.fullmatch(IDENTITY_PATTERN, holder) is None:
        raise InvalidInput(f"holder {holder[:80]!r} is not an identity such as labgate:user:alice")
    listed = certificates.certificate_page(
        session,
        runtime.ca.inventory,
        visitor.principal,
        identity=holder,
        status=status,
        ending_within=timedelta(days=expiring) if expiring is not None else None,
        offset=(page_number - 1) * PAGE_SIZE,
        limit=PAGE_SIZE,
        now=now,
    )
    given = {"identity": holder or "", "status": status or "", "expiring": expiring or ""}
    return page(
        request,
        "console/certificates.html",
        here="certificates",
        records=listed.records,
        total=listed.total,
        page_number=page_number,
        pages=max(1, -(-listed.total // PAGE_SIZE)),
        query=urlencode({k: v for k, v in given.items() if v}),
        identity=holder or "",
        status_filter=status or "",
        expiring=expiring or "",
        reasons=[r for r in PICKED if r in REASONS],
        notice=notice(notice_key),
        now=now,
    )


@router.post("/console/certificates/{serial}/revoke")
def revoke(
    serial: Serial, runtime: RuntimeDep, session: SessionDep, visitor: Person, fields: Posted
) -> Response:
    """As `POST /api/v1/certificates/{serial}/revoke`, once the person confirmed it."""
    if fields.get("confirm") != "yes":
        raise InvalidInput("tick the confirmation to revoke: a revoked certificate stays revoked")
    body = parsed(CertificateRevoke, {"reason": fields.get("reason", "")})
    certificates.revoke_one(
        session,
        runtime.ca.inventory,
        visitor.principal,
        int(serial, 16),
        reason=body.reason,
        now=runtime.clock(),
        serving=serving_serial(runtime.settings.data_dir),
    )
    return see_other("/console/certificates?notice=certificate-revoked")
