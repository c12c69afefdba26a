"""`POST /api/v1/certificates`: a short-lived client certificate for the caller's own key."""

from __future__ import annotations

from fastapi import APIRouter, status

from labgate.control import certificates
from labgate.control.dependencies import CurrentPrincipal, RuntimeDep, SessionDep
from labgate.control.schemas import CertificateOut, CertificateRequest

router = APIRouter(prefix="/api/v1/certificates", tags=["certificates"])


@router.post("", response_model=CertificateOut, status_code=status.HTTP_201_CREATED)
def issue_certificate(
    body: CertificateRequest, runtime: RuntimeDep, session: SessionDep, principal: CurrentPrincipal
) -> CertificateOut:
    """Sign the caller's CSR; the certificate's only SAN is the caller's identity URI."""
    issued = certificates.issue_for(
        session,
        runtime.ca,
        principal,
        body.csr_pem.encode("utf-8"),
        days=runtime.settings.client_certificate_days,
        now=runtime.clock(),
    )
    session.commit()
    return CertificateOut(
        serial=format(issued.serial, "x"),
        identity=principal.identity,
        not_after=issued.certificate.not_valid_after_utc,
        certificate_pem=issued.certificate_pem.decode("ascii"),
        chain_pem=issued.chain_pem.decode("ascii"),
    )
