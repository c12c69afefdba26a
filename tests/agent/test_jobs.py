"""The agent's job loop against a real control server (TLS, its own certificate and bound token),
and the jobs a compromised or confused server could hand it, each refused before it runs."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from labgate.agent import enrolment
from labgate.agent.jobs.poller import JobPoller
from labgate.agent.jobs.registry import builtin_types
from labgate.agent.jobs.types import JobContext, JobType, Outcome
from labgate.agent.store import Store
from labgate.agent.upkeep import Upkeep
from labgate.auth.jobdocument import sign_job
from labgate.auth.keyring import KeyRing
from labgate.control import keystore
from labgate.control.jobkeys import JOBS_KEYRING_FILE
from labgate.control.settings import ControlSettings
from labgate.pki import keypair

from .conftest import Server

SHA = "cd" * 32


@dataclass
class Device:
    server: Server
    store: Store
    upkeep: Upkeep
    admin: dict[str, str]

    @property
    def id(self) -> str:
        return self.upkeep.linked.device_id

    def poller(self, **kw: Any) -> JobPoller:
        return JobPoller(self.store, self.server.url, self.upkeep, **kw)

    def create(self, type: str = "report_status", **body: Any) -> dict[str, Any]:
        with self.server.client() as http:
            made = http.post("/api/v1/jobs", headers=self.admin,
                             json={"type": type, "device_id": self.id, **body})  # fmt: skip
        assert made.status_code == 201, made.text
        job: dict[str, Any] = made.json()[0]
        return job

    def job(self, job_id: str) -> dict[str, Any]:
        with self.server.client() as http:
            answer = http.get(f"/api/v1/jobs/{job_id}", headers=self.admin)
        assert answer.status_code == 200, answer.text
        body: dict[str, Any] = answer.json()
        return body

    def cancel(self, job_id: str, force: bool = False) -> dict[str, Any]:
        with self.server.client() as http:
            answer = http.post(f"/api/v1/jobs/{job_id}/cancel", headers=self.admin,
                               json={"force": force})  # fmt: skip
        assert answer.status_code == 200, answer.text
        body: dict[str, Any] = answer.json()
        return body

    def envelope(self) -> dict[str, Any]:
        """What jobs/next hands this device now (over its own mutual TLS)."""

        async def read() -> dict[str, Any]:
            envelope, _ = await self.poller()._next()
            assert envelope is not None
            return envelope

        return asyncio.run(read())

    def ring(self, name: str) -> KeyRing:
        settings = ControlSettings.load(self.server.data_dir)
        return keystore.read_keyring(
            self.server.data_dir / name, keystore.load_passphrase(settings)
        )


def link_in_process(server: Server, data: Path) -> Device:
    """A device created by the admin, its key, certificate and token pair stored as a linked
    agent keeps them, then the token refreshed over mutual TLS (bound to the certificate)."""
    admin = server.admin()
    with server.client() as http:
        created = http.post("/api/v1/devices", headers=admin, json={"name": "bench-9"}).json()
        device_id = created["device"]["id"]
        key = keypair.new_key()
        token = created["credentials"]["access_token"]
        issued = http.post("/api/v1/certificates", headers={"Authorization": f"Bearer {token}"},
                           json={"csr_pem": keypair.build_csr(key, device_id)})  # fmt: skip
        assert issued.status_code == 201, issued.text
    store = Store(data)
    store.prepare()
    store.save_server(server.url, server.root.read_bytes())
    body = {**issued.json(), **created["credentials"], "device_id": device_id}
    body["identity"] = f"labgate:device:{device_id}"
    linked = enrolment.accept(store, body, key, device_id)
    upkeep = Upkeep(store, server.url, linked)
    asyncio.run(upkeep.refresh())
    return Device(server=server, store=store, upkeep=upkeep, admin=admin)


@pytest.fixture
def device(server: Server, data_dir: Path) -> Iterator[Device]:
    yield link_in_process(server, data_dir)


def run_once(poller: JobPoller) -> float:
    return asyncio.run(poller.poll_once())


def test_report_status_runs_and_succeeds_with_its_details(device: Device) -> None:
    job = device.create()
    assert run_once(device.poller()) == 60.0
    done = device.job(job["id"])
    assert done["state"] == "SUCCEEDED", done
    assert done["status_details"]["serial"] == device.upkeep.linked.serial
    assert done["version"] == 3  # QUEUED -> IN_PROGRESS -> SUCCEEDED


def test_collect_logs_sends_at_most_max_bytes(device: Device, agent_log: Any) -> None:
    from labgate.agent.logtail import log_tail
    from labgate.agent.reasons import Reason, event

    log_tail()

    for n in range(50):
        event(Reason.REFRESHED, f"filler line {n} " + "x" * 40)
    job = device.create("collect_logs", params={"max_bytes": 300, "lines": 40})
    run_once(device.poller())
    done = device.job(job["id"])
    assert done["state"] == "SUCCEEDED"
    assert 0 < len(done["output"].encode()) <= 300 and "filler line 49" in done["output"]


def test_rotate_credentials_brings_a_new_key_and_the_device_keeps_working(
    device: Device,
) -> None:
    before = device.upkeep.linked.serial
    job = device.create("rotate_credentials")
    run_once(device.poller())
    done = device.job(job["id"])
    assert done["state"] == "SUCCEEDED", done
    linked = device.store.linked()
    assert linked is not None and linked.serial == done["status_details"]["serial"] != before
    # The next poll goes over the new certificate with a token bound to it.
    again = device.create()
    run_once(device.poller())
    assert device.job(again["id"])["state"] == "SUCCEEDED"


def test_install_release_on_a_device_not_set_up_for_releases_is_rejected(device: Device) -> None:
    job = device.create(
        "install_release", params={"target_path": "qs5/fw.bin", "length": 5, "sha256": SHA}
    )
    run_once(device.poller())
    done = device.job(job["id"])
    assert done["state"] == "REJECTED"
    assert done["status_details"]["reason"].startswith("not_configured: ")


# --- what a compromised or confused server could hand out --------------------------------
def forged(device: Device, envelope: dict[str, Any], ring: KeyRing, **claims: Any) -> str:
    values: dict[str, Any] = {
        "device_id": device.id,
        "job_id": envelope["job_id"],
        "attempt": envelope["attempt"],
        "type": "report_status",
        "params": {},
        "not_after": datetime.now(UTC) + timedelta(hours=1),
        "now": datetime.now(UTC),
    }
    values.update(claims)
    return sign_job(ring, **values)


def unsigned(device: Device, envelope: dict[str, Any]) -> str:
    claims = jwt.decode(envelope["document"], options={"verify_signature": False})
    return jwt.encode(claims, key=None, algorithm="none", headers={"typ": "labgate-job+jwt"})


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("unknown type", "is not one this device runs"),
        ("params outside the device's schema", "Additional properties"),
        ("range outside the device's schema", "maximum"),
        ("signed with the token key", "UnknownKey"),
        ("signed with a stranger's key", "UnknownKey"),
        ("unsigned", "AlgorithmNotAllowed"),
        ("for another device", "WrongAudience"),
        ("past not_after", "TokenExpired"),
        ("another job's document", "not"),
    ],
)
def test_a_bad_job_is_rejected_with_its_reason_and_never_runs(
    device: Device, case: str, reason: str
) -> None:
    jobs_ring = device.ring(JOBS_KEYRING_FILE)
    job = device.create()
    envelope = device.envelope()
    assert envelope["job_id"] == job["id"]
    now = datetime.now(UTC)
    documents = {
        "unknown type": lambda: forged(device, envelope, jobs_ring, type="run_shell"),
        "params outside the device's schema": lambda: forged(
            device, envelope, jobs_ring, type="collect_logs", params={"path": "/etc/shadow"}
        ),
        "range outside the device's schema": lambda: forged(
            device, envelope, jobs_ring, type="collect_logs", params={"max_bytes": 10**9}
        ),
        "signed with the token key": lambda: forged(
            device, envelope, device.ring(keystore.KEYRING_FILE)
        ),
        "signed with a stranger's key": lambda: forged(device, envelope, KeyRing.generate(now=now)),
        "unsigned": lambda: unsigned(device, envelope),
        "for another device": lambda: forged(
            device, envelope, jobs_ring, device_id="d-0000000000000000"
        ),
        "past not_after": lambda: forged(
            device,
            envelope,
            jobs_ring,
            not_after=now - timedelta(minutes=5),
            now=now - timedelta(hours=1),
        ),
        "another job's document": lambda: forged(
            device, envelope, jobs_ring, job_id="j-" + "0" * 16
        ),
    }
    ran: list[str] = []

    async def counting(ctx: JobContext) -> Outcome:
        ran.append(ctx.job.job_id)
        return {}

    table = {name: JobType(name=name, schema=t.schema, handler=counting)
             for name, t in builtin_types().items()}  # fmt: skip
    poller = device.poller(types=table)
    asyncio.run(poller.handle({**envelope, "document": documents[case]()}))
    assert ran == [], f"{case}: the job ran"
    after = device.job(job["id"])
    assert after["state"] == "REJECTED", (case, after)
    assert reason in after["status_details"]["reason"], (case, after["status_details"])


def test_a_replayed_job_is_not_run_twice(device: Device) -> None:
    job = device.create()
    envelope = device.envelope()
    ran: list[str] = []

    async def counting(ctx: JobContext) -> Outcome:
        ran.append(ctx.job.job_id)
        return {}

    table = {"report_status": JobType(name="report_status", schema={"type": "object"},
                                      handler=counting)}  # fmt: skip
    poller = device.poller(types=table)
    asyncio.run(poller.handle(envelope))
    assert ran == [job["id"]] and device.job(job["id"])["state"] == "SUCCEEDED"
    # The same signed document again (as a replaying server would hand it), even to a new
    # poller after a restart: not run.
    asyncio.run(device.poller(types=table).handle(envelope))
    assert ran == [job["id"]]
    assert json.loads(device.store.path("jobs-done.json").read_text())["done"]


def test_cancel_between_steps_is_acknowledged_and_the_rest_never_runs(device: Device) -> None:
    job = device.create()
    reached: list[str] = []

    async def stepping(ctx: JobContext) -> Outcome:
        await ctx.step("download")
        reached.append("download")
        device_cancel()  # the operator cancels while the device works
        await ctx.step("install")
        reached.append("install")
        return {}

    def device_cancel() -> None:
        assert device.cancel(job["id"])["state"] == "CANCELING"

    table = {"report_status": JobType(name="report_status", schema={"type": "object"},
                                      handler=stepping)}  # fmt: skip
    run_once(device.poller(types=table))
    assert reached == ["download"]
    after = device.job(job["id"])
    assert after["state"] == "CANCELED" and after["forced"] is False


def test_after_a_forced_cancel_the_device_stops_reporting(device: Device) -> None:
    job = device.create()
    finished: list[bool] = []

    async def slow(ctx: JobContext) -> Outcome:
        await ctx.step("one")
        device.cancel(job["id"], force=True)
        await ctx.step("two")  # refused: the job is over
        finished.append(True)
        return {}

    table = {"report_status": JobType(name="report_status", schema={"type": "object"},
                                      handler=slow)}  # fmt: skip
    run_once(device.poller(types=table))
    after = device.job(job["id"])
    assert after["state"] == "CANCELED" and after["forced"] is True and finished == []


def test_the_jobs_endpoint_refuses_a_poll_with_another_devices_token(
    device: Device, server: Server, tmp_path: Path
) -> None:
    other = link_in_process(server, tmp_path / "other")
    job = device.create()
    from labgate.agent.controlclient import tls_context

    context = tls_context(server.root, other.store.path("device.pem"))
    with httpx.Client(base_url=server.url, verify=context) as http:
        headers = {"Authorization": f"Bearer {other.store.tokens().access_token}"}
        assert (
            http.get(f"/api/v1/devices/{device.id}/jobs/next", headers=headers).status_code == 404
        )
        report = {"status": "SUCCEEDED", "expected_version": 1}
        path = f"/api/v1/devices/{device.id}/jobs/{job['id']}/report"
        stolen = http.post(path, headers=headers, json=report)
        assert stolen.status_code == 404
    assert device.job(job["id"])["state"] == "QUEUED"


def test_after_a_jobs_key_rotation_the_agent_fetches_the_new_key_and_runs_the_job(
    device: Device,
) -> None:
    import time

    from typer.testing import CliRunner

    from labgate.cli.app import app

    poller = device.poller()
    first = device.create()
    run_once(poller)
    assert device.job(first["id"])["state"] == "SUCCEEDED"
    rotated = CliRunner().invoke(
        app, ["server", "rotate-keys", "--jobs", "--data", str(device.server.data_dir)]
    )
    assert rotated.exit_code == 0 and "jobs signing key is now" in rotated.output
    time.sleep(1.2)  # a running server reads a changed key ring within a second
    second = device.create()
    # The agent fetched the JWKS moments ago: the job waits for its next look, unrefused.
    run_once(poller)
    assert device.job(second["id"])["state"] == "QUEUED"
    poller.keys._fetched -= 60  # a minute later
    run_once(poller)
    assert device.job(second["id"])["state"] == "SUCCEEDED"


def test_a_failure_message_with_line_breaks_still_reaches_the_server(device: Device) -> None:
    from labgate.agent.jobs.types import JobFailed

    job = device.create()

    async def failing(ctx: JobContext) -> Outcome:
        raise JobFailed("line one\nline two\x00" + "x" * 400)

    table = {"report_status": JobType(name="report_status", schema={"type": "object"},
                                      handler=failing)}  # fmt: skip
    run_once(device.poller(types=table))
    after = device.job(job["id"])
    assert after["state"] == "FAILED"
    reason = after["status_details"]["reason"]
    assert reason.startswith("line one line two ") and len(reason) == 256
