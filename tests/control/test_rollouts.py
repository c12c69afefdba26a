"""Rollouts over a real database: waves, the failure threshold that halts them, the maintenance
window in an IANA zone, and two replicas starting a wave once."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from labgate.control import jobs, rollouts
from labgate.control.database import make_engine, session_factory
from labgate.control.errors import InvalidInput
from labgate.control.settings import ControlSettings
from labgate.control.tables import Job, Rollout
from labgate.control.transactions import unit_of_work

from .conftest import Api, Clock


@dataclass
class Lab:
    api: Api
    olga: dict[str, str]
    devices: list[str]
    sessions: sessionmaker[Session]
    clock: Clock

    def rollout(self, **body: Any) -> Any:
        body = {"type": "report_status", "devices": self.devices, **body}
        return self.api.post("/api/v1/rollouts", headers=self.olga, json=body)

    def get(self, rollout_id: int) -> dict[str, Any]:
        answer = self.api.get(f"/api/v1/rollouts/{rollout_id}", headers=self.olga)
        assert answer.status_code == 200, answer.text
        body: dict[str, Any] = answer.json()
        return body

    def wave_jobs(self, rollout_id: int, wave: int) -> list[Job]:
        with unit_of_work(self.sessions) as session:
            found = session.scalars(
                select(Job).where(Job.rollout_id == rollout_id, Job.wave == wave)
            )
            return list(found)

    def finish(self, job: Job, status: str) -> None:
        """The device's two reports, as the agent sends them."""
        with unit_of_work(self.sessions) as session:
            now = self.clock()
            moved = jobs.report(session, device_id=job.device_id, job_id=job.id,
                                status="IN_PROGRESS", expected_version=job.version,
                                details={}, now=now)  # fmt: skip
            ended = jobs.report(session, device_id=job.device_id, job_id=job.id, status=status,
                                expected_version=moved.version, details={}, now=now)  # fmt: skip
            rollouts.after_report(session, ended, now=now)


@pytest.fixture
def lab(client: TestClient, settings: ControlSettings, clock: Clock) -> Iterator[Lab]:
    api = Api(client, settings)
    olga = api.create_user(api.admin(), "olga", "operator")
    devices = [api.create_device(olga, f"bench-{n}")["device"]["id"] for n in range(12)]
    engine = make_engine(settings.resolved_database_url)
    try:
        yield Lab(api=api, olga=olga, devices=devices, sessions=session_factory(engine),
                  clock=clock)  # fmt: skip
    finally:
        engine.dispose()


def test_waves_of_one_ten_percent_and_the_rest_run_in_turn(lab: Lab) -> None:
    made = lab.rollout(waves=["1", "10%", "rest"])
    assert made.status_code == 201, made.text
    rollout = made.json()
    assert rollout["waves"] == [1, 2, 9] and rollout["current_wave"] == 1
    for wave, size in ((1, 1), (2, 2), (3, 9)):
        current = lab.wave_jobs(rollout["id"], wave)
        assert len(current) == size, wave
        assert lab.wave_jobs(rollout["id"], wave + 1) == []  # nothing of the next wave yet
        for job in current:
            lab.finish(job, "SUCCEEDED")
    done = lab.get(rollout["id"])
    assert done["state"] == "COMPLETED" and done["jobs"] == {"SUCCEEDED": 12}


def test_a_wave_above_the_threshold_halts_the_rollout_at_once(lab: Lab) -> None:
    rollout = lab.rollout(waves=["1", "3", "rest"], failure_threshold=0.2).json()
    lab.finish(lab.wave_jobs(rollout["id"], 1)[0], "SUCCEEDED")
    second = lab.wave_jobs(rollout["id"], 2)
    lab.finish(second[0], "FAILED")  # 1 of 3: 33% > 20%, with two jobs still queued
    halted = lab.get(rollout["id"])
    assert halted["state"] == "HALTED" and "33%" in halted["halted_reason"]
    assert halted["jobs"] == {"SUCCEEDED": 1, "FAILED": 1, "CANCELED": 2}
    assert lab.wave_jobs(rollout["id"], 3) == []


def test_a_wave_at_most_at_the_threshold_goes_on(lab: Lab) -> None:
    rollout = lab.rollout(waves=["10", "rest"], failure_threshold=0.1).json()
    first = lab.wave_jobs(rollout["id"], 1)
    lab.finish(first[0], "REJECTED")
    for job in first[1:]:
        lab.finish(job, "SUCCEEDED")
    assert lab.get(rollout["id"])["current_wave"] == 2


def test_the_maintenance_window_holds_waves_and_queued_jobs(lab: Lab) -> None:
    zone = "America/New_York"
    local = lab.clock().astimezone(ZoneInfo(zone))
    opens = (local + timedelta(hours=1)).replace(second=0, microsecond=0)
    closes = opens + timedelta(hours=1)
    window = {"timezone": zone, "start": f"{opens:%H:%M}", "end": f"{closes:%H:%M}"}
    rollout = lab.rollout(waves=["1", "rest"], window=window).json()
    assert rollout["current_wave"] == 0 and rollout["jobs"] == {}
    lab.clock.advance(3600 + 60)
    with unit_of_work(lab.sessions) as session:  # the sweeper's pass, now the window is open
        assert rollouts.advance_all(session, now=lab.clock()) == 1
    job = lab.wave_jobs(rollout["id"], 1)[0]
    with unit_of_work(lab.sessions) as session:
        now = lab.clock()
        held = rollouts.held(session, now=now)
        assert jobs.next_job(session, job.device_id, now=now, held=held) is not None
        later = now + timedelta(hours=1)
        held = rollouts.held(session, now=later)
        assert jobs.next_job(session, job.device_id, now=later, held=held) is None


def test_bad_rollouts_are_refused_with_the_problem_named(lab: Lab) -> None:
    cases = {
        "Mars/Olympus_Mons": {"window": {"timezone": "Mars/Olympus_Mons", "start": "01:00",
                                         "end": "02:00"}},
        "'rest' can only be the last": {"waves": ["rest", "1"]},
        "is not a count": {"waves": ["0"]},
        "exactly one of group and devices": {"group": "lab-a"},
    }  # fmt: skip
    for problem, body in cases.items():
        refused = lab.rollout(**body)
        assert refused.status_code == 422 and problem in refused.json()["message"], refused.text
    params = {"target_path": "a", "length": 1, "sha256": "0" * 64}
    admin_only = lab.rollout(type="install_release", params=params)
    assert admin_only.status_code == 403


def test_two_replicas_start_the_next_wave_once(lab: Lab) -> None:
    rollout = lab.rollout(waves=["1", "rest"]).json()
    job = lab.wave_jobs(rollout["id"], 1)[0]
    with unit_of_work(lab.sessions) as session:
        now = lab.clock()
        mine = {"device_id": job.device_id, "job_id": job.id, "details": {}, "now": now}
        moved = jobs.report(session, status="IN_PROGRESS", expected_version=1, **mine)
        jobs.report(session, status="SUCCEEDED", expected_version=moved.version, **mine)
    first, second = lab.sessions(), lab.sessions()
    try:
        one = first.get(Rollout, rollout["id"])
        other = second.get(Rollout, rollout["id"])
        assert one is not None and other is not None
        assert rollouts.advance(first, one, now=lab.clock()) is True
        first.commit()
        assert rollouts.advance(second, other, now=lab.clock()) is False
        second.commit()
    finally:
        first.close()
        second.close()
    assert len(lab.wave_jobs(rollout["id"], 2)) == 11


@pytest.mark.parametrize(
    ("utc", "open_"),
    [
        ("2026-07-01T19:59:00", False),  # 21:59 in Berlin (summer, UTC+2)
        ("2026-07-01T20:00:00", True),  # 22:00
        ("2026-07-02T01:59:00", True),  # 03:59, across midnight
        ("2026-07-02T02:00:00", False),  # 04:00
        ("2026-12-01T20:59:00", False),  # 21:59 in winter (UTC+1)
        ("2026-12-01T21:00:00", True),
    ],
)
def test_a_window_across_midnight_follows_the_zone_s_own_time(utc: str, open_: bool) -> None:
    window = rollouts.Window.parse({"timezone": "Europe/Berlin", "start": "22:00", "end": "04:00"})
    assert window.is_open(datetime.fromisoformat(utc).replace(tzinfo=UTC)) is open_


def test_wave_sizes() -> None:
    assert rollouts.wave_sizes(["1", "10%", "rest"], 1000) == [1, 100, 899]
    assert rollouts.wave_sizes(["1", "10%", "rest"], 1) == [1]
    assert rollouts.wave_sizes(["5"], 12) == [5, 7]
    with pytest.raises(InvalidInput):
        rollouts.wave_sizes(["200%"], 3)
