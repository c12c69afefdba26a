"""`/api/v1/jobs`, `/api/v1/groups` and a device's own `/api/v1/devices/{id}/jobs/...`."""

from __future__ import annotations

import json
from typing import Annotated

from fastapi import APIRouter, Path, status
from sqlalchemy.orm import Session

from labgate.auth.jobdocument import sign_job
from labgate.control import accounts, groups, jobs, rollouts
from labgate.control.errors import CertificateRequired, NotFound
from labgate.control.http.dependencies import (
    CurrentPrincipal,
    PeerCertificate,
    RowId,
    RuntimeDep,
    SessionDep,
)
from labgate.control.principals import Principal, device_identity, user_identity
from labgate.control.runtime import Runtime
from labgate.control.schemas import (
    DEVICE_ID_PATTERN,
    GROUP_PATTERN,
    GroupOut,
    GroupPut,
    JobCancel,
    JobCreate,
    JobDocumentOut,
    JobNext,
    JobOut,
    JobReport,
    JobStateOut,
    RolloutCreate,
    RolloutOut,
)
from labgate.control.standing import presented
from labgate.control.tables import Job, Rollout, User

router = APIRouter(tags=["jobs"])

DeviceId = Annotated[str, Path(pattern=DEVICE_ID_PATTERN, max_length=40)]
JobId = Annotated[str, Path(pattern=r"^j-[0-9a-f]{16}$")]
GroupName = Annotated[str, Path(pattern=GROUP_PATTERN, max_length=64)]


def _owner(session: Session, principal: Principal) -> User | None:
    return accounts.find_user(session, principal.name) if principal.kind == "user" else None


def job_out(job: Job) -> JobOut:
    return JobOut(
        id=job.id,
        device_id=job.device_id,
        type=job.type,
        params=jobs.params_of(job),
        state=job.state,  # type: ignore[arg-type]
        version=job.version,
        attempt=job.attempt,
        max_attempts=job.max_attempts,
        status_details=jobs.details_of(job),
        output=job.output,
        forced=job.forced,
        rollout_id=job.rollout_id,
        wave=job.wave,
        created_by=job.created_by,
        created_at=job.created_at,
        updated_at=job.updated_at,
        not_after=job.not_after,
    )


def timing(
    runtime: Runtime, not_after: int | None, running: int | None, attempts: int
) -> jobs.Timing:
    settings = runtime.settings
    return jobs.Timing(
        not_after_seconds=min(
            not_after or settings.jobs_default_seconds, settings.jobs_max_seconds
        ),
        in_progress_seconds=running or settings.jobs_in_progress_seconds,
        max_attempts=attempts,
    )


@router.post("/api/v1/jobs", response_model=list[JobOut], status_code=status.HTTP_201_CREATED)
def create_jobs(
    body: JobCreate, runtime: RuntimeDep, session: SessionDep, principal: CurrentPrincipal
) -> list[JobOut]:
    """Jobs of a registered type, with parameters its schema accepts, for one device or a group;
    the type names the roles that may create it."""
    owner = _owner(session, principal)
    targets = groups.targets(session, principal, owner, body.group, [body.device_id or ""])
    created = jobs.create_jobs(
        session,
        principal,
        owner,
        type=body.type,
        params=body.params,
        device_ids=targets,
        timing=timing(runtime, body.not_after_seconds, body.in_progress_seconds, body.max_attempts),
        now=runtime.clock(),
    )
    return [job_out(job) for job in created]


@router.get("/api/v1/jobs/{job_id}", response_model=JobOut)
def get_job(job_id: JobId, session: SessionDep, principal: CurrentPrincipal) -> JobOut:
    return job_out(jobs.job_for(session, principal, _owner(session, principal), job_id))


@router.post("/api/v1/jobs/{job_id}/cancel", response_model=JobOut)
def cancel_job(
    job_id: JobId,
    body: JobCancel,
    runtime: RuntimeDep,
    session: SessionDep,
    principal: CurrentPrincipal,
) -> JobOut:
    """Queued: canceled. Running: canceling until the device acknowledges (or, with `force`,
    canceled now and recorded as forced)."""
    owner = _owner(session, principal)
    job = jobs.cancel(session, principal, owner, job_id, force=body.force, now=runtime.clock())
    return job_out(job)


@router.put("/api/v1/groups/{name}", response_model=GroupOut)
def put_group(
    name: GroupName,
    body: GroupPut,
    runtime: RuntimeDep,
    session: SessionDep,
    principal: CurrentPrincipal,
) -> GroupOut:
    owner = _owner(session, principal)
    groups.put_group(session, principal, owner, name, body.devices, now=runtime.clock())
    return GroupOut(
        name=name,
        owner=user_identity(owner.username) if owner else None,
        devices=groups.members(session, name),
    )


@router.get("/api/v1/groups/{name}", response_model=GroupOut)
def get_group(name: GroupName, session: SessionDep, principal: CurrentPrincipal) -> GroupOut:
    owner = _owner(session, principal)
    group = groups.group_for(session, principal, owner, name)
    holder = session.get(User, group.owner_id) if group.owner_id is not None else None
    return GroupOut(
        name=name,
        owner=user_identity(holder.username) if holder else None,
        devices=groups.members(session, name),
    )


# --- the device's own side ---------------------------------------------------------------
def _the_device(principal: Principal, certificate: bytes | None, device_id: str) -> None:
    """Only the device itself, over a connection presenting its own certificate (so its
    certificate-bound token's binding was checked, and the certificate's standing)."""
    if principal.kind != "device" or principal.name != device_id:
        raise NotFound(f"no jobs for device {device_id!r} here")
    if certificate is None:
        raise CertificateRequired("a device's jobs need its client certificate on the connection")
    if presented(certificate).identity != device_identity(device_id):
        raise NotFound(f"no jobs for device {device_id!r} here")


@router.get("/api/v1/devices/{device_id}/jobs/next", response_model=JobNext)
def next_job(
    device_id: DeviceId,
    runtime: RuntimeDep,
    session: SessionDep,
    principal: CurrentPrincipal,
    certificate: PeerCertificate,
) -> JobNext:
    """The device's current job as a signed document (or none), and when to ask again."""
    _the_device(principal, certificate, device_id)
    now = runtime.clock()
    poll = runtime.settings.jobs_poll_seconds
    # Most polls find nothing: one autocommit statement, and the request's transaction (a
    # BEGIN and COMMIT more on PostgreSQL) is never begun.
    with runtime.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        if not jobs.has_active(connection, device_id):
            return JobNext(job=None, poll_seconds=poll)
    job = jobs.next_job(session, device_id, now=now, held=rollouts.held(session, now=now))
    if job is None:
        return JobNext(job=None, poll_seconds=poll)
    document = sign_job(
        runtime.job_keys.ring(),
        device_id=device_id,
        job_id=job.id,
        attempt=job.attempt,
        type=job.type,
        params=jobs.params_of(job),
        not_after=job.not_after,
        now=now,
    )
    return JobNext(
        job=JobDocumentOut(
            job_id=job.id,
            state=job.state,  # type: ignore[arg-type]
            version=job.version,
            attempt=job.attempt,
            document=document,
        ),
        poll_seconds=poll,
    )


@router.post("/api/v1/devices/{device_id}/jobs/{job_id}/report", response_model=JobStateOut)
def report(
    device_id: DeviceId,
    job_id: JobId,
    body: JobReport,
    runtime: RuntimeDep,
    session: SessionDep,
    principal: CurrentPrincipal,
    certificate: PeerCertificate,
) -> JobStateOut:
    """A state change with the version it expects: stale 409, the same report again answered
    without a second change, a report on a finished job recorded and refused (409)."""
    _the_device(principal, certificate, device_id)
    job = jobs.report(
        session,
        device_id=device_id,
        job_id=job_id,
        status=body.status,
        expected_version=body.expected_version,
        details=body.status_details,
        output=body.output,
        now=runtime.clock(),
    )
    rollouts.after_report(session, job, now=runtime.clock())
    return JobStateOut(
        job_id=job.id,
        state=job.state,  # type: ignore[arg-type]
        version=job.version,
        cancel_requested=job.state == jobs.CANCELING,
    )


# --- rollouts ------------------------------------------------------------------------------
def rollout_out(session: Session, rollout: Rollout) -> RolloutOut:
    return RolloutOut(
        id=rollout.id,
        type=rollout.type,
        state=rollout.state,  # type: ignore[arg-type]
        current_wave=rollout.current_wave,
        waves=json.loads(rollout.waves),
        failure_threshold=rollout.failure_threshold,
        window=json.loads(rollout.window) if rollout.window else None,
        halted_reason=rollout.halted_reason,
        jobs=rollouts.counts(session, rollout.id),
        created_by=rollout.created_by,
        created_at=rollout.created_at,
        updated_at=rollout.updated_at,
    )


@router.post("/api/v1/rollouts", response_model=RolloutOut, status_code=status.HTTP_201_CREATED)
def create_rollout(
    body: RolloutCreate, runtime: RuntimeDep, session: SessionDep, principal: CurrentPrincipal
) -> RolloutOut:
    """The first wave starts now if the maintenance window is open, else when it opens."""
    owner = _owner(session, principal)
    targets = groups.targets(session, principal, owner, body.group, body.devices or [])
    rollout = rollouts.create_rollout(
        session,
        principal,
        owner,
        type=body.type,
        params=body.params,
        device_ids=targets,
        waves=body.waves,
        failure_threshold=body.failure_threshold,
        window=body.window.model_dump() if body.window else None,
        timing=timing(runtime, body.not_after_seconds, body.in_progress_seconds, body.max_attempts),
        now=runtime.clock(),
    )
    return rollout_out(session, rollout)


@router.get("/api/v1/rollouts/{rollout_id}", response_model=RolloutOut)
def get_rollout(
    rollout_id: RowId, runtime: RuntimeDep, session: SessionDep, principal: CurrentPrincipal
) -> RolloutOut:
    owner = _owner(session, principal)
    rollout = rollouts.rollout_for(session, principal, owner, rollout_id)
    rollouts.advance(session, rollout, now=runtime.clock())
    return rollout_out(session, rollout)
