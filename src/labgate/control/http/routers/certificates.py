"""`/api/v1/certificates`: a short-lived client certificate for the caller's own key; the
certificates one may see (an administrator all, anyone else their own); revoking one (an
administrator any leaf, a holder their own). A revocation is in the next bundle and CRL."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, status

from labgate.control import certificates
from labgate.control.certificates import CertificateRecord
from labgate.control.errors import NotFound
from labgate.control.http.dependencies import CurrentPrincipal, RuntimeDep, SessionDep
from labgate.control.schemas import (
    IDENTITY_PATTERN,
    CertificateInfo,
    CertificateOut,
    CertificateRequest,
    CertificateRevoke,
    CertificateStatus,
)
from labgate.control.servercertificate import serving_serial

router = APIRouter(prefix="/api/v1/certificates", tags=["certificates"])

# A serial as this CA draws them: at most 159 bits, in hex (40 digits).
Serial = Annotated[str, Path(pattern=r"^[0-9a-fA-F]{1,40}$")]


def certificate_info(record: CertificateRecord, runtime: RuntimeDep) -> CertificateInfo:
    return CertificateInfo(
        serial=format(record.serial, "x"),
        identity=record.identity,
        profile=record.profile,
        status=record.status(runtime.clock()),
        not_after=record.not_after,
        issued_at=record.issued_at,
        revoked_at=record.revoked_at,
        revocation_reason=record.revocation_reason,
    )


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
    return CertificateOut(
        serial=format(issued.serial, "x"),
        identity=principal.identity,
        not_after=issued.certificate.not_valid_after_utc,
        certificate_pem=issued.certificate_pem.decode("ascii"),
        chain_pem=issued.chain_pem.decode("ascii"),
    )


@router.get("", response_model=list[CertificateInfo])
def list_certificates(
    runtime: RuntimeDep,
    session: SessionDep,
    principal: CurrentPrincipal,
    identity: Annotated[str | None, Query(pattern=IDENTITY_PATTERN)] = None,
    status: CertificateStatus | None = None,
) -> list[CertificateInfo]:
    """Every certificate for an administrator, the caller's own for anyone else."""
    records = certificates.list_certificates(
        session,
        runtime.ca.inventory,
        principal,
        identity=identity,
        status=status,
        now=runtime.clock(),
    )
    return [certificate_info(record, runtime) for record in records]


@router.post("/{serial}/revoke", response_model=CertificateInfo)
def revoke_certificate(
    serial: Serial,
    body: CertificateRevoke,
    runtime: RuntimeDep,
    session: SessionDep,
    principal: CurrentPrincipal,
) -> CertificateInfo:
    """Revoke a certificate now: refused on every replica at once, listed in the next CRL and
    bundle, and gateways close the sessions it holds. Token families bound to it end."""
    try:
        number = int(serial, 16)
    except ValueError:
        raise NotFound(f"no certificate with serial {serial}") from None
    record = certificates.revoke_one(
        session,
        runtime.ca.inventory,
        principal,
        number,
        reason=body.reason,
        now=runtime.clock(),
        serving=serving_serial(runtime.settings.data_dir),
    )
    return certificate_info(record, runtime)
