"""Rollouts: one job type over many devices in waves, halted when a wave fails too often.

Waves are given as counts (`1`), shares (`10%`) or `rest`, and fixed as sizes when the rollout
is made (over the device list in the order given). Wave w+1 starts only when every job of wave w
is over and its failure rate (FAILED, REJECTED, TIMED_OUT over the wave's size) is at most
`failure_threshold`; the rollout halts by itself as soon as the rate of a wave exceeds it, even
before the wave is over, and its queued jobs are canceled.

A maintenance window (`{"timezone": "Europe/Berlin", "start": "22:00", "end": "04:00"}`, an IANA
zone read through zoneinfo, so summer time is the zone's own) applies to the whole rollout: a
wave starts only inside it, and a queued job of the rollout is not handed to its device outside
it (a job already running carries on).

Every step is a compare-and-set on the rollout's row (`current_wave`, `state`), so replicas'
sweepers and reports racing to start the same wave start it once.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, time
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from labgate.control import audit, jobs
from labgate.control.errors import Forbidden, InvalidInput, NotFound
from labgate.control.jobtypes import check_params, job_type
from labgate.control.principals import Principal
from labgate.control.tables import Device, Job, Rollout, User

RUNNING = "RUNNING"
HALTED = "HALTED"
COMPLETED = "COMPLETED"
MAX_WAVES = 10
FAILURES = (jobs.FAILED, jobs.REJECTED, jobs.TIMED_OUT)
_SHARE = re.compile(r"([0-9]{1,3})%")
_CLOCK = re.compile(r"([01][0-9]|2[0-3]):([0-5][0-9])")


@dataclass(frozen=True, slots=True, kw_only=True)
class Window:
    timezone: str
    start: time
    end: time

    @classmethod
    def parse(cls, value: Any) -> Window:
        if not isinstance(value, dict) or set(value) != {"timezone", "start", "end"}:
            raise InvalidInput("window must be {timezone, start, end}")
        zone, start, end = value["timezone"], value["start"], value["end"]
        if not isinstance(zone, str) or len(zone) > 64:
            raise InvalidInput("window.timezone must be an IANA time zone name")
        try:
            ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError):
            raise InvalidInput(f"window.timezone {zone!r} is not an IANA time zone") from None
        return cls(timezone=zone, start=_clock(start, "start"), end=_clock(end, "end"))

    def is_open(self, now: datetime) -> bool:
        local = now.astimezone(ZoneInfo(self.timezone)).time().replace(tzinfo=None)
        if self.start < self.end:
            return self.start <= local < self.end
        return local >= self.start or local < self.end  # a window across midnight

    def to_json(self) -> str:
        return json.dumps(
            {"timezone": self.timezone, "start": f"{self.start:%H:%M}", "end": f"{self.end:%H:%M}"}
        )


def _clock(value: Any, name: str) -> time:
    match = _CLOCK.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise InvalidInput(f"window.{name} must be HH:MM (24-hour), got {str(value)[:10]!r}")
    return time(int(match[1]), int(match[2]))


def wave_sizes(spec: Sequence[str | int], total: int) -> list[int]:
    """Sizes of the waves over `total` devices: counts, shares rounded up, `rest` (last)."""
    if not 1 <= len(spec) <= MAX_WAVES:
        raise InvalidInput(f"a rollout has 1 to {MAX_WAVES} waves, not {len(spec)}")
    sizes: list[int] = []
    left = total
    for index, entry in enumerate(spec):
        text = str(entry).strip()
        if text == "rest":
            if index != len(spec) - 1:
                raise InvalidInput("'rest' can only be the last wave")
            size = left
        elif (share := _SHARE.fullmatch(text)) is not None and 1 <= int(share[1]) <= 100:
            size = math.ceil(total * int(share[1]) / 100)
        elif text.isdigit() and 1 <= int(text) <= jobs.MAX_TARGETS:
            size = int(text)
        else:
            raise InvalidInput(f"wave {index + 1}: {text[:12]!r} is not a count, N% or 'rest'")
        size = min(size, left)
        if size:
            sizes.append(size)
        left -= size
    if left:
        sizes.append(left)  # devices no wave named form a last wave rather than being skipped
    return sizes


def create_rollout(
    session: Session,
    principal: Principal,
    owner: User | None,
    *,
    type: str,
    params: Any,
    device_ids: Sequence[str],
    waves: Sequence[str | int],
    failure_threshold: float,
    window: Any,
    timing: jobs.Timing,
    now: datetime,
) -> Rollout:
    kind = job_type(type)
    if principal.kind != "user" or principal.role not in kind.roles:
        raise Forbidden(
            f"{principal.identity} (role {principal.role!r}) may not create {type} jobs"
        )
    checked = check_params(kind, params)
    if not device_ids or len(device_ids) > jobs.MAX_TARGETS:
        raise InvalidInput(f"a rollout needs 1 to {jobs.MAX_TARGETS} devices")
    if not 0.0 <= failure_threshold <= 1.0:
        raise InvalidInput(f"failure_threshold {failure_threshold} is not within 0..1")
    targets = jobs.reachable(session, principal, owner, device_ids)
    parsed = Window.parse(window) if window is not None else None
    rollout = Rollout(
        type=type,
        params=json.dumps(checked, sort_keys=True),
        devices=json.dumps(targets),
        waves=json.dumps(wave_sizes(waves, len(targets))),
        failure_threshold=failure_threshold,
        window=parsed.to_json() if parsed else None,
        state=RUNNING,
        current_wave=0,
        job_seconds=timing.not_after_seconds,
        in_progress_seconds=timing.in_progress_seconds,
        max_attempts=timing.max_attempts,
        created_by=principal.identity,
        created_at=now,
        updated_at=now,
    )
    session.add(rollout)
    session.flush()
    audit.record(
        session,
        at=now,
        kind="rollout.created",
        subject=principal.identity,
        rollout=rollout.id,
        type=type,
        devices=len(targets),
    )
    advance(session, rollout, now=now)
    return rollout


def rollout_for(
    session: Session, principal: Principal, owner: User | None, rollout_id: int
) -> Rollout:
    rollout = session.get(Rollout, rollout_id)
    if rollout is None or principal.kind != "user":
        raise NotFound(f"no rollout {rollout_id}")
    if not principal.is_admin and rollout.created_by != principal.identity:
        raise NotFound(f"no rollout {rollout_id}")
    return rollout


def window_of(rollout: Rollout) -> Window | None:
    return Window.parse(json.loads(rollout.window)) if rollout.window else None


def counts(session: Session, rollout_id: int, wave: int | None = None) -> dict[str, int]:
    query = select(Job.state, func.count()).where(Job.rollout_id == rollout_id)
    if wave is not None:
        query = query.where(Job.wave == wave)
    return {state: int(n) for state, n in session.execute(query.group_by(Job.state)).all()}


def advance(session: Session, rollout: Rollout, *, now: datetime) -> bool:
    """Halt, start the next wave, or complete, as the current wave's jobs say; True if moved."""
    if rollout.state != RUNNING:
        return False
    sizes: list[int] = json.loads(rollout.waves)
    wave = rollout.current_wave
    if wave:
        seen = counts(session, rollout.id, wave)
        failed = sum(seen.get(state, 0) for state in FAILURES)
        rate = failed / sizes[wave - 1]
        if rate > rollout.failure_threshold:
            return _halt(session, rollout, wave, rate, now=now)
        if any(seen.get(state, 0) for state in jobs.ACTIVE):
            return False
        if wave == len(sizes):
            return _finish(session, rollout, COMPLETED, None, now=now)
    window = window_of(rollout)
    if window is not None and not window.is_open(now):
        return False
    if not _step(session, rollout, {"current_wave": wave + 1}, now=now):
        return False
    devices: list[str] = json.loads(rollout.devices)
    start = sum(sizes[:wave])
    chosen = devices[start : start + sizes[wave]]
    revoked = set(
        session.scalars(select(Device.id).where(Device.id.in_(chosen), Device.revoked.is_(True)))
    )
    jobs.insert_jobs(
        session,
        type=rollout.type,
        params=json.loads(rollout.params),
        device_ids=[d for d in chosen if d not in revoked],
        timing=jobs.Timing(
            not_after_seconds=rollout.job_seconds,
            in_progress_seconds=rollout.in_progress_seconds,
            max_attempts=rollout.max_attempts,
        ),
        created_by=rollout.created_by,
        now=now,
        rollout_id=rollout.id,
        wave=wave + 1,
    )
    audit.record(
        session,
        at=now,
        kind="rollout.wave",
        subject=rollout.created_by,
        rollout=rollout.id,
        wave=wave + 1,
        devices=len(chosen) - len(revoked),
        skipped_revoked=len(revoked),
    )
    return True


def _halt(session: Session, rollout: Rollout, wave: int, rate: float, *, now: datetime) -> bool:
    reason = (
        f"wave {wave}: failure rate {rate:.0%} is above the threshold "
        f"{rollout.failure_threshold:.0%}"
    )
    if not _finish(session, rollout, HALTED, reason, now=now):
        return False
    session.execute(
        update(Job)
        .where(Job.rollout_id == rollout.id, Job.state == jobs.QUEUED)
        .values(state=jobs.CANCELED, version=Job.version + 1, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    return True


def _finish(
    session: Session, rollout: Rollout, state: str, reason: str | None, *, now: datetime
) -> bool:
    if not _step(session, rollout, {"state": state, "halted_reason": reason}, now=now):
        return False
    audit.record(
        session,
        at=now,
        kind=f"rollout.{state.lower()}",
        subject=rollout.created_by,
        rollout=rollout.id,
        reason=reason,
    )
    return True


def _step(session: Session, rollout: Rollout, values: dict[str, Any], *, now: datetime) -> bool:
    """Compare-and-set on (state, current_wave): one replica moves the rollout, once."""
    result = session.execute(
        update(Rollout)
        .where(
            Rollout.id == rollout.id,
            Rollout.state == RUNNING,
            Rollout.current_wave == rollout.current_wave,
        )
        .values(updated_at=now, **values)
        .execution_options(synchronize_session=False)
    )
    session.refresh(rollout)
    return bool(result.rowcount)  # type: ignore[attr-defined]


def advance_all(session: Session, *, now: datetime) -> int:
    moved = 0
    for rollout in session.scalars(select(Rollout).where(Rollout.state == RUNNING).limit(100)):
        moved += advance(session, rollout, now=now)
    return moved


def after_report(session: Session, job: Job, *, now: datetime) -> None:
    """A rollout's job just ended: move the rollout at once instead of at the next sweep."""
    if job.rollout_id is not None and job.state in jobs.TERMINAL:
        rollout = session.get(Rollout, job.rollout_id)
        if rollout is not None:
            advance(session, rollout, now=now)


def held(session: Session, *, now: datetime) -> Any:
    """For `jobs.next_job`: is this queued rollout job outside its rollout's window now?"""
    windows: dict[int, Window | None] = {}

    def outside(job: Job) -> bool:
        if job.rollout_id is None:
            return False
        if job.rollout_id not in windows:
            rollout = session.get(Rollout, job.rollout_id)
            windows[job.rollout_id] = window_of(rollout) if rollout else None
        window = windows[job.rollout_id]
        return window is not None and not window.is_open(now)

    return outside
