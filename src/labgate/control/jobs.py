"""Jobs for devices: created by operators, pulled by devices, moved only by versioned reports.

    QUEUED --device--> IN_PROGRESS --device--> SUCCEEDED | FAILED | REJECTED
    QUEUED --device--> REJECTED | FAILED          (a type or parameters it will not run)
    QUEUED --cancel--> CANCELED
    IN_PROGRESS --cancel--> CANCELING --device--> CANCELED (it stopped between steps)
                                      --device--> SUCCEEDED | FAILED | REJECTED (it finished)
    IN_PROGRESS | CANCELING --cancel(force)--> CANCELED, recorded as forced
    QUEUED | IN_PROGRESS | CANCELING --expires_at passed--> TIMED_OUT
    FAILED | TIMED_OUT (in progress), attempts left --> QUEUED, attempt + 1

Every change is one `UPDATE ... WHERE id = :id AND version = :v` that also steps the version,
so replicas need nothing in memory: of two reports, or a report and a cancel, racing for one
version exactly one changes the row and the other gets 409. A report carries the version it
expects; the very report that was last applied, sent again, is answered with the current state
and changes nothing (its SHA-256 is kept), so a device retrying over a bad network cannot move
a job twice. A report about a job that is over is recorded in the audit log and changes nothing.

Deadlines: `expires_at` is `not_after`, or, once in progress, the sooner of `not_after` and
start + `in_progress_seconds`. It is enforced when a device reads its jobs and by `sweep`.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, select, update
from sqlalchemy.orm import Session

from labgate.control import audit, devices
from labgate.control.errors import Conflict, Forbidden, InvalidInput, NotFound
from labgate.control.jobtypes import check_params, job_type
from labgate.control.principals import Principal, device_identity
from labgate.control.tables import Device, Job, User
from labgate.control.transactions import keep_on_error

QUEUED = "QUEUED"
IN_PROGRESS = "IN_PROGRESS"
CANCELING = "CANCELING"
SUCCEEDED = "SUCCEEDED"
FAILED = "FAILED"
REJECTED = "REJECTED"
TIMED_OUT = "TIMED_OUT"
CANCELED = "CANCELED"
ACTIVE = (QUEUED, IN_PROGRESS, CANCELING)
TERMINAL = (SUCCEEDED, FAILED, REJECTED, TIMED_OUT, CANCELED)
REPORTABLE = (IN_PROGRESS, SUCCEEDED, FAILED, REJECTED, CANCELED)

# What a device's report may do from each state (a step report, IN_PROGRESS again, included).
DEVICE_MOVES: Mapping[str, frozenset[str]] = {
    QUEUED: frozenset({IN_PROGRESS, REJECTED, FAILED}),
    IN_PROGRESS: frozenset({IN_PROGRESS, SUCCEEDED, FAILED, REJECTED}),
    CANCELING: frozenset({IN_PROGRESS, CANCELED, SUCCEEDED, FAILED, REJECTED}),
}

# Status details: a few short facts (a step, a version, a reason), never a log.
MAX_DETAIL_KEYS = 16
MAX_DETAIL_VALUE = 256
DETAIL_KEY = re.compile(r"[a-z][a-z0-9_]{0,63}")
MAX_ATTEMPTS = 10
# What a final report may carry besides its details (collected logs).
MAX_OUTPUT = 65536
# A rollout or group job creates at most this many jobs in one request.
MAX_TARGETS = 10_000


@dataclass(frozen=True, slots=True, kw_only=True)
class Timing:
    not_after_seconds: int
    in_progress_seconds: int
    max_attempts: int = 1

    def __post_init__(self) -> None:
        if not 1 <= self.max_attempts <= MAX_ATTEMPTS:
            raise InvalidInput(f"max_attempts {self.max_attempts} is not within 1..{MAX_ATTEMPTS}")


def new_job_id() -> str:
    return "j-" + secrets.token_hex(8)


def check_details(details: Any) -> dict[str, str | int | bool | None]:
    """Bounded status details, or InvalidInput naming the first thing out of bounds."""
    if details is None:
        return {}
    if not isinstance(details, dict):
        raise InvalidInput("status_details must be a JSON object")
    if len(details) > MAX_DETAIL_KEYS:
        raise InvalidInput(f"status_details has {len(details)} keys; at most {MAX_DETAIL_KEYS}")
    checked: dict[str, str | int | bool | None] = {}
    for key, value in details.items():
        if not isinstance(key, str) or not DETAIL_KEY.fullmatch(key):
            raise InvalidInput(
                f"status_details key {str(key)[:70]!r} is not [a-z][a-z0-9_]{{0,63}}"
            )
        if isinstance(value, str):
            if len(value) > MAX_DETAIL_VALUE:
                raise InvalidInput(
                    f"status_details.{key} is {len(value)} characters; at most {MAX_DETAIL_VALUE}"
                )
        elif isinstance(value, int) and not isinstance(value, bool):
            if abs(value) > 2**53:
                raise InvalidInput(f"status_details.{key} is out of range (|n| <= 2**53)")
        elif value is not None and not isinstance(value, bool):
            raise InvalidInput(f"status_details.{key} must be a string, integer, boolean or null")
        checked[key] = value
    return checked


# --- creating -----------------------------------------------------------------------------
def create_jobs(
    session: Session,
    principal: Principal,
    owner: User | None,
    *,
    type: str,
    params: Any,
    device_ids: Sequence[str],
    timing: Timing,
    now: datetime,
    rollout_id: int | None = None,
    wave: int | None = None,
) -> list[Job]:
    """One job per device, each device one `principal` may change (others are not found)."""
    kind = job_type(type)
    if principal.kind != "user" or principal.role not in kind.roles:
        raise Forbidden(
            f"{principal.identity} (role {principal.role!r}) may not create {type} jobs"
        )
    checked = check_params(kind, params)
    if not device_ids:
        raise InvalidInput("a job needs at least one device")
    if len(device_ids) > MAX_TARGETS:
        raise InvalidInput(f"{len(device_ids)} devices; at most {MAX_TARGETS} per request")
    targets = reachable(session, principal, owner, device_ids)
    created = insert_jobs(
        session,
        type=type,
        params=checked,
        device_ids=targets,
        timing=timing,
        created_by=principal.identity,
        now=now,
        rollout_id=rollout_id,
        wave=wave,
    )
    audit.record(
        session,
        at=now,
        kind="job.created",
        subject=principal.identity,
        type=type,
        jobs=len(created),
        first=created[0].id,
        rollout=rollout_id,
    )
    return created


def insert_jobs(
    session: Session,
    *,
    type: str,
    params: Mapping[str, Any],
    device_ids: Sequence[str],
    timing: Timing,
    created_by: str,
    now: datetime,
    rollout_id: int | None = None,
    wave: int | None = None,
) -> list[Job]:
    """The rows themselves, for checks already made (create_jobs, a rollout's next wave)."""
    text = json.dumps(dict(params), sort_keys=True, separators=(",", ":"))
    not_after = now + timedelta(seconds=timing.not_after_seconds)
    created = [
        Job(
            id=new_job_id(),
            device_id=device_id,
            type=type,
            params=text,
            state=QUEUED,
            version=1,
            attempt=1,
            max_attempts=timing.max_attempts,
            forced=False,
            rollout_id=rollout_id,
            wave=wave,
            created_by=created_by,
            created_at=now,
            updated_at=now,
            not_after=not_after,
            expires_at=not_after,
            in_progress_seconds=timing.in_progress_seconds,
        )
        for device_id in device_ids
    ]
    session.add_all(created)
    session.flush()
    return created


def reachable(
    session: Session, principal: Principal, owner: User | None, device_ids: Sequence[str]
) -> list[str]:
    wanted = list(dict.fromkeys(device_ids))
    found: dict[str, Device] = {}
    for start in range(0, len(wanted), 500):
        chunk = wanted[start : start + 500]
        found.update((d.id, d) for d in session.scalars(select(Device).where(Device.id.in_(chunk))))
    for device_id in wanted:
        device = found.get(device_id)
        if device is None or not devices.may_reach(principal, owner, device):
            raise NotFound(f"no device {device_id[:40]!r}")
        if device.revoked:
            raise Forbidden(f"device {device_id!r} is revoked")
    return wanted


# --- reading: what a device gets ------------------------------------------------------------
def has_active(connection: Connection, device_id: str) -> bool:
    """Whether the device has any job not over: the one statement most polls need."""
    found = connection.execute(
        select(Job.id).where(Job.device_id == device_id, Job.state.in_(ACTIVE)).limit(1)
    ).first()
    return found is not None


def next_job(
    session: Session,
    device_id: str,
    *,
    now: datetime,
    held: Callable[[Job], bool] | None = None,
) -> Job | None:
    """The job the device should work on: the one it runs (in progress or canceling), else its
    oldest queued one that is not `held` (a rollout's job outside its maintenance window).
    Deadlines are applied first."""
    active = list(
        session.scalars(
            select(Job)
            .where(Job.device_id == device_id, Job.state.in_(ACTIVE))
            .order_by(Job.created_at, Job.id)
        )
    )
    live = [job for job in active if not _expire(session, job, now=now)]
    running = [job for job in live if job.state != QUEUED]
    if running:
        return running[0]
    waiting = [job for job in live if held is None or not held(job)]
    return waiting[0] if waiting else None


def _expire(session: Session, job: Job, *, now: datetime) -> bool:
    """Time the job out if its deadline passed (requeued if attempts remain); True if it is no
    longer active for the device now."""
    if job.expires_at > now:
        return False
    retry = job.state != QUEUED and job.attempt < job.max_attempts and job.not_after > now
    values: dict[str, Any] = (
        {
            "state": QUEUED,
            "attempt": job.attempt + 1,
            "started_at": None,
            "expires_at": job.not_after,
        }
        if retry
        else {"state": TIMED_OUT}
    )
    moved = _move(session, job, values, now=now)
    if moved:
        audit.record(
            session,
            at=now,
            kind="job.timed_out",
            subject=device_identity(job.device_id),
            job=job.id,
            attempt=job.attempt - (1 if retry else 0),
            requeued=retry,
        )
    return not retry


def _move(session: Session, job: Job, values: dict[str, Any], *, now: datetime) -> bool:
    """Compare-and-set on the job's version; the object is refreshed either way."""
    expected = job.version
    result = session.execute(
        update(Job)
        .where(Job.id == job.id, Job.version == expected)
        .values(version=expected + 1, updated_at=now, **values)
        .execution_options(synchronize_session=False)
    )
    session.refresh(job)
    return bool(result.rowcount)  # type: ignore[attr-defined]


# --- reports ----------------------------------------------------------------------------------
def report(
    session: Session,
    *,
    device_id: str,
    job_id: str,
    status: str,
    expected_version: int,
    details: Any,
    now: datetime,
    output: str | None = None,
) -> Job:
    """Apply the device's report, or refuse it: 404 (not its job), 409 (stale, over, or a move
    its state does not allow)."""
    if status not in REPORTABLE:
        raise InvalidInput(f"status {status[:20]!r} is not one of {', '.join(REPORTABLE)}")
    checked = check_details(details)
    job = session.get(Job, job_id)
    if job is None or job.device_id != device_id:
        raise NotFound(f"no job {job_id[:40]!r} for device {device_id!r}")
    if output is not None and (status in (IN_PROGRESS,) or len(output) > MAX_OUTPUT):
        raise InvalidInput(f"output goes with a final report, at most {MAX_OUTPUT} characters")
    digest = _digest(expected_version, status, checked)
    if job.last_report == digest and job.version == expected_version + 1:
        return job  # the report that was applied last, again: answered, not re-applied
    if job.state in ACTIVE:
        _expire(session, job, now=now)
    if job.state in TERMINAL:
        audit.record(
            session,
            at=now,
            kind="job.late_report",
            subject=device_identity(device_id),
            job=job.id,
            state=job.state,
            reported=status,
            forced=job.forced,
        )
        keep_on_error(session)
        raise Conflict(f"job {job.id} is {job.state}; the report changes nothing", code="job_over")
    if expected_version != job.version:
        raise Conflict(
            f"job {job.id} is at version {job.version}, the report expected {expected_version}",
            code="stale_version",
        )
    if status not in DEVICE_MOVES[job.state]:
        raise Conflict(f"job {job.id} is {job.state}; a device cannot report {status} now")
    values = _report_values(job, status, checked, digest, now=now)
    if output is not None:
        values["output"] = output
    if not _move(session, job, values, now=now):
        raise Conflict(f"job {job.id} changed meanwhile; read it again", code="stale_version")
    if status != IN_PROGRESS or values.get("state") == QUEUED:
        audit.record(
            session,
            at=now,
            kind="job.reported",
            subject=device_identity(device_id),
            job=job.id,
            status=status,
            state=job.state,
        )
    return job


def _report_values(
    job: Job, status: str, details: dict[str, Any], digest: str, *, now: datetime
) -> dict[str, Any]:
    values: dict[str, Any] = {
        "state": status,
        "status_details": json.dumps(details, sort_keys=True),
        "last_report": digest,
    }
    if job.state == CANCELING and status == IN_PROGRESS:
        values["state"] = CANCELING
    if status == IN_PROGRESS and job.state == QUEUED:
        values["started_at"] = now
        values["expires_at"] = min(job.not_after, now + timedelta(seconds=job.in_progress_seconds))
    if status == FAILED and job.attempt < job.max_attempts and job.not_after > now:
        values.update(
            state=QUEUED, attempt=job.attempt + 1, started_at=None, expires_at=job.not_after
        )
    return values


def _digest(expected_version: int, status: str, details: dict[str, Any]) -> str:
    text = json.dumps([expected_version, status, details], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# --- cancel -----------------------------------------------------------------------------------
def cancel(
    session: Session,
    principal: Principal,
    owner: User | None,
    job_id: str,
    *,
    force: bool,
    now: datetime,
) -> Job:
    """Queued: canceled at once. Running: canceling (the device stops between steps and
    acknowledges), or with `force` canceled now, recorded as forced. Over: 409."""
    job = job_for(session, principal, owner, job_id)
    if principal.kind != "user" or principal.role not in job_type(job.type).roles:
        raise Forbidden(f"{principal.identity} may not cancel {job.type} jobs")
    if job.state in ACTIVE:
        _expire(session, job, now=now)
    if job.state in TERMINAL:
        raise Conflict(f"job {job.id} is already {job.state}", code="job_over")
    if job.state == QUEUED:
        values: dict[str, Any] = {"state": CANCELED}
    elif force:
        values = {"state": CANCELED, "forced": True}
    elif job.state == CANCELING:
        return job
    else:
        values = {"state": CANCELING}
    if not _move(session, job, values, now=now):
        raise Conflict(f"job {job.id} changed meanwhile; read it again", code="stale_version")
    audit.record(
        session,
        at=now,
        kind="job.canceled" if job.state == CANCELED else "job.canceling",
        subject=device_identity(job.device_id),
        job=job.id,
        by=principal.identity,
        forced=bool(values.get("forced")),
    )
    return job


def job_for(session: Session, principal: Principal, owner: User | None, job_id: str) -> Job:
    """The job if `principal` may see its device (else not found: ids cannot be probed)."""
    job = session.get(Job, job_id)
    if job is None:
        raise NotFound(f"no job {job_id[:40]!r}")
    device = session.get(Device, job.device_id)
    if device is None or not devices.may_reach(principal, owner, device):
        raise NotFound(f"no job {job_id[:40]!r}")
    return job


# --- the sweeper ------------------------------------------------------------------------------
def sweep(session: Session, *, now: datetime, limit: int = 1000) -> int:
    """Time out (or requeue) up to `limit` jobs whose deadline passed; how many moved."""
    due = list(
        session.scalars(
            select(Job)
            .where(Job.state.in_(ACTIVE), Job.expires_at <= now)
            .order_by(Job.expires_at)
            .limit(limit)
        )
    )
    for job in due:
        _expire(session, job, now=now)
    return len(due)


def params_of(job: Job) -> dict[str, Any]:
    value = json.loads(job.params)
    assert isinstance(value, dict)
    return value


def details_of(job: Job) -> dict[str, Any]:
    if not job.status_details:
        return {}
    value = json.loads(job.status_details)
    return value if isinstance(value, dict) else {}
