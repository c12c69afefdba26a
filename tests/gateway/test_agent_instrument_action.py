"""The agent's instrument_action job through the real gateway in front of the simulator, with
the device's own certificate: only the allowlisted read-only queries, at the device's grant."""

from __future__ import annotations

import asyncio
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from labgate.agent.jobs.builtin import GatewayTarget, instrument_action
from labgate.agent.jobs.registry import accept, builtin_types
from labgate.agent.jobs.types import Job, JobContext, JobFailed, JobRejected
from labgate.agent.store import DEVICE, Store

from .conftest import Pki


def context(tmp_path: Path, pki: Pki, who: str, gateway: Any, **params: Any) -> JobContext:
    store = Store(tmp_path / f"agent-{who}")
    store.prepare()
    shutil.copy(pki.clients[who].pem, store.path(DEVICE))  # the device's own certificate
    steps: list[dict[str, Any]] = []

    async def reporter(details: dict[str, Any]) -> bool:
        steps.append(details)
        return False

    job = Job(job_id="j-" + "1" * 16, device_id="d-bench", type="instrument_action", attempt=1,
              params=params, not_after=datetime.now(UTC) + timedelta(hours=1))  # fmt: skip
    target = GatewayTarget(instruments={"qs5-plain": gateway.address("qs5-plain")}, ca=pki.root)
    return JobContext(job=job, store=store, server_url="https://127.0.0.1:1", upkeep=None,  # type: ignore[arg-type]
                      reporter=reporter, gateway=target)  # fmt: skip


def test_a_read_only_query_runs_through_the_gateway_with_the_device_certificate(
    tmp_path: Path, pki: Pki, gateway: Any
) -> None:
    ctx = context(tmp_path, pki, "olive", gateway, instrument="qs5-plain", action="run_state")
    outcome = asyncio.run(instrument_action(ctx))
    assert outcome["command"] == "ISTAT?" and outcome["reply"].lower().startswith("idle")
    drawer = context(tmp_path, pki, "olive", gateway, instrument="qs5-plain", action="drawer")
    assert asyncio.run(instrument_action(drawer))["command"] == "DRAW?"


def test_below_the_grant_the_gateway_refuses_and_the_job_fails(
    tmp_path: Path, pki: Pki, gateway: Any
) -> None:
    ctx = context(tmp_path, pki, "gus", gateway, instrument="qs5-plain", action="run_state")
    with pytest.raises(JobFailed):
        asyncio.run(instrument_action(ctx))


def test_an_unconfigured_instrument_or_a_certificate_the_gateway_refuses(
    tmp_path: Path, pki: Pki, gateway: Any
) -> None:
    elsewhere = context(tmp_path, pki, "olive", gateway, instrument="qs5-other", action="lamp")
    with pytest.raises(JobRejected, match="not configured"):
        asyncio.run(instrument_action(elsewhere))
    stranger = context(tmp_path, pki, "stranger", gateway, instrument="qs5-plain", action="lamp")
    with pytest.raises(JobFailed):
        asyncio.run(instrument_action(stranger))


def test_only_the_allowlisted_actions_exist() -> None:
    types = builtin_types()
    for action in ("OPEN", "run_state; OPEN", "ISTAT?", "RP x y"):
        with pytest.raises(JobRejected):
            accept(types, "instrument_action", {"instrument": "qs5-plain", "action": action})
