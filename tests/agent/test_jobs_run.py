"""`labgate agent run` as a real process: once linked, it polls for jobs and runs them."""

from __future__ import annotations

import time
from typing import Any

import pytest

from .test_upkeep import link_by_code

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]


def test_a_linked_agent_process_pulls_and_runs_its_job(server: Any, start_agent: Any) -> None:
    agent = link_by_code(server, start_agent)  # linked, then stopped
    device_id = agent.status()["device_id"]
    admin = server.admin()
    with server.client() as http:
        made = http.post("/api/v1/jobs", headers=admin,
                         json={"type": "report_status", "device_id": device_id})  # fmt: skip
        assert made.status_code == 201, made.text
        job_id = made.json()[0]["id"]
        again = start_agent()  # the same data directory: linked; it polls at once
        deadline = time.monotonic() + 60
        state = ""
        while time.monotonic() < deadline:
            state = http.get(f"/api/v1/jobs/{job_id}", headers=admin).json()["state"]
            if state == "SUCCEEDED":
                break
            time.sleep(0.3)
    assert state == "SUCCEEDED", again.stderr()
    # The agent logs the end once the server has taken its final report.
    while f"reason=job_done job {job_id}" not in again.stderr() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert f"reason=job_started job {job_id} (report_status)" in again.stderr()
    assert f"reason=job_done job {job_id}" in again.stderr()
