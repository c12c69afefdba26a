"""Jobs on the live server (real TLS, the device's own certificate and bound token), attacked:
unknown types, parameters outside each bound, the wrong creator, the wrong device, stale and
repeated reports, deadlines, retries and cancel from every state."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from labgate.auth.errors import UnknownKey
from labgate.auth.jobdocument import JOBS_KEY_USE, verify_job
from labgate.auth.keyring import PublicKeySet
from labgate.control import audit
from labgate.control.database import make_engine, session_factory
from labgate.control.transactions import unit_of_work

from .conftest import Api, Clock, LiveServer
from .jobclient import LinkedDevice, create_job, enrol

SHA = "ab" * 32


@dataclass
class Fleet:
    api: Api
    server: LiveServer
    admin: dict[str, str]
    olga: dict[str, str]
    device: LinkedDevice
    clock: Clock

    def job(self, type: str = "report_status", **extra: Any) -> dict[str, Any]:
        response = create_job(self.api, self.olga, self.device.id, type, **extra)
        assert response.status_code == 201, response.text
        body: dict[str, Any] = response.json()[0]
        return body

    def state(self, job_id: str) -> dict[str, Any]:
        response = self.api.get(f"/api/v1/jobs/{job_id}", headers=self.olga)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def audit(self, kind: str) -> list[Any]:
        engine = make_engine(self.server.settings.resolved_database_url)
        try:
            with unit_of_work(session_factory(engine)) as session:
                return [e.detail for e in audit.events(session, kind=kind)]
        finally:
            engine.dispose()


@pytest.fixture
def fleet(live_server: LiveServer, mtls: Any, make_csr: Any, clock: Clock) -> Iterator[Fleet]:
    with live_server.api() as api:
        admin = api.admin()
        olga = api.create_user(admin, "olga", "operator")
        device = enrol(api, olga, make_csr, mtls, "bench-1")
        yield Fleet(api=api, server=live_server, admin=admin, olga=olga, device=device, clock=clock)


def jobs_keys(api: Api) -> PublicKeySet:
    return PublicKeySet.from_jwks(api.get("/.well-known/jwks.json").json(), use=JOBS_KEY_USE)


def test_a_job_reaches_its_device_signed_with_the_jobs_key_and_bound_to_it(fleet: Fleet) -> None:
    params = {"target_path": "qs5/fw-2.bin", "length": 9, "sha256": SHA}
    made = create_job(fleet.api, fleet.admin, fleet.device.id, "install_release", params=params)
    assert made.status_code == 201, made.text
    created = made.json()[0]
    assert created["state"] == "QUEUED" and created["version"] == 1
    nxt = fleet.device.next()
    assert nxt.status_code == 200, nxt.text
    body = nxt.json()
    assert body["poll_seconds"] == fleet.server.settings.jobs_poll_seconds
    claims = verify_job(
        body["job"]["document"], jobs_keys(fleet.api), device_id=fleet.device.id, now=fleet.clock()
    )
    assert claims.job_id == created["id"] and claims.type == "install_release"
    assert claims.params == {"target_path": "qs5/fw-2.bin", "length": 9, "sha256": SHA}
    # The jobs key is not a token key: a token verifier's key set does not hold it.
    jwks = fleet.api.get("/.well-known/jwks.json").json()
    token_keys = PublicKeySet.from_jwks(jwks)
    with pytest.raises(UnknownKey):
        token_keys.verification_key(claims.key_id, now=fleet.clock())
    uses = {entry["kid"]: entry["use"] for entry in jwks["keys"]}
    assert uses[claims.key_id] == JOBS_KEY_USE and "sig" in uses.values()


def test_unknown_type_and_each_bound_of_the_schema_are_refused(fleet: Fleet) -> None:
    api, admin, device = fleet.api, fleet.admin, fleet.device.id
    unknown = create_job(api, admin, device, "run_shell", params={"cmd": "rm -rf /"})
    assert unknown.status_code == 422 and "unknown job type" in unknown.json()["message"]
    good = {"target_path": "fw.bin", "length": 10, "sha256": SHA}
    cases = {
        "size": {**good, "target_path": "a" * 256},
        "range low": {**good, "length": 0},
        "range high": {**good, "length": 4 * 1024**3 + 1},
        "pattern": {**good, "sha256": SHA.upper()},
        "path escape": {**good, "target_path": "../../etc/passwd"},
        "absolute": {**good, "target_path": "/etc/passwd"},
        "extra": {**good, "command": "reboot"},
        "missing": {"target_path": "fw.bin", "length": 10},
        "type": {**good, "length": "10"},
    }
    for name, params in cases.items():
        refused = create_job(api, admin, device, "install_release", params=params)
        assert refused.status_code == 422, (name, refused.text)
        assert refused.json()["message"].startswith("job install_release"), name
    enum = create_job(api, admin, device, "instrument_action",
                      params={"instrument": "qs5", "action": "OPEN"})  # fmt: skip
    assert enum.status_code == 422 and "is not one of" in enum.json()["message"]
    logs = create_job(api, admin, device, "collect_logs", params={"max_bytes": 10**9})
    assert logs.status_code == 422
    assert fleet.device.next().json()["job"] is None  # nothing was created


def test_only_the_roles_of_a_type_may_create_it_and_only_for_their_devices(fleet: Fleet) -> None:
    api = fleet.api
    params = {"target_path": "fw.bin", "length": 1, "sha256": SHA}
    olga_may_not = create_job(api, fleet.olga, fleet.device.id, "install_release", params=params)
    assert olga_may_not.status_code == 403
    viewer = api.create_user(fleet.admin, "vera", "viewer")
    assert create_job(api, viewer, fleet.device.id, "report_status").status_code == 403
    piet = api.create_user(fleet.admin, "piet", "operator")
    # Another operator's device is not found, as if it did not exist.
    assert create_job(api, piet, fleet.device.id, "report_status").status_code == 404
    assert create_job(api, piet, "d-0000000000000000", "report_status").status_code == 404
    job = fleet.job()
    assert api.get(f"/api/v1/jobs/{job['id']}", headers=piet).status_code == 404
    assert api.post(f"/api/v1/jobs/{job['id']}/cancel", headers=piet, json={}).status_code == 404
    # A group cannot reach past ownership either.
    put = api.put("/api/v1/groups/piets", headers=piet, json={"devices": [fleet.device.id]})
    assert put.status_code == 404
    # A device's token cannot create jobs (for itself or anyone).
    own = create_job(fleet.device.http, fleet.device.headers, fleet.device.id, "report_status")
    assert own.status_code == 403


def test_only_the_device_itself_with_its_certificate_reads_and_reports(
    fleet: Fleet, mtls: Any, make_csr: Any
) -> None:
    job = fleet.job()
    other = enrol(fleet.api, fleet.olga, make_csr, mtls, "bench-2")
    mine = f"/api/v1/devices/{fleet.device.id}/jobs"
    assert other.http.get(f"{mine}/next", headers=other.headers).status_code == 404
    stolen = other.http.post(f"{mine}/{job['id']}/report", headers=other.headers,
                             json={"status": "SUCCEEDED", "expected_version": 1})  # fmt: skip
    assert stolen.status_code == 404
    # Reporting on its own path about another device's job: not found either.
    assert other.report(job["id"], "SUCCEEDED", 1).status_code == 404
    # The owner's user token is not the device.
    assert fleet.api.get(f"{mine}/next", headers=fleet.olga).status_code == 404
    # The device's bound token without its certificate: refused by the binding.
    assert fleet.api.get(f"{mine}/next", headers=fleet.device.headers).status_code == 401
    assert fleet.state(job["id"])["state"] == "QUEUED"


def test_a_revoked_device_gets_nothing(fleet: Fleet) -> None:
    fleet.job()
    revoked = fleet.api.post(f"/api/v1/devices/{fleet.device.id}/revoke", headers=fleet.olga)
    assert revoked.status_code == 200
    assert fleet.device.next().status_code == 401


def test_reports_carry_the_version_stale_is_409_and_a_repeat_moves_once(fleet: Fleet) -> None:
    job = fleet.job()
    started = fleet.device.report(job["id"], "IN_PROGRESS", 1, step="begin")
    assert started.status_code == 200 and started.json()["version"] == 2
    for _ in range(100):
        again = fleet.device.report(job["id"], "IN_PROGRESS", 1, step="begin")
        assert again.status_code == 200 and again.json()["version"] == 2
    stale = fleet.device.report(job["id"], "SUCCEEDED", 1)
    assert stale.status_code == 409 and stale.json()["code"] == "stale_version"
    done = fleet.device.report(job["id"], "SUCCEEDED", 2, release="2.0")
    assert done.status_code == 200 and done.json()["state"] == "SUCCEEDED"
    for _ in range(100):
        assert fleet.device.report(job["id"], "SUCCEEDED", 2, release="2.0").status_code == 200
    final = fleet.state(job["id"])
    assert final["version"] == 3 and final["status_details"] == {"release": "2.0"}
    assert len([d for d in fleet.audit("job.reported") if job["id"] in d]) == 1
    # Back from a terminal state: nothing moves it.
    assert fleet.device.report(job["id"], "IN_PROGRESS", 3).status_code == 409
    assert fleet.device.next().json()["job"] is None


def test_status_details_are_bounded(fleet: Fleet) -> None:
    job = fleet.job()
    too_many = {f"k{i}": i for i in range(17)}
    assert fleet.device.report(job["id"], "IN_PROGRESS", 1, **too_many).status_code == 422
    long = fleet.device.report(job["id"], "IN_PROGRESS", 1, note="x" * 257)
    assert long.status_code == 422
    nested = fleet.device.report(job["id"], "IN_PROGRESS", 1, log={"a": "b"})
    assert nested.status_code == 422
    bad_key = fleet.device.report(job["id"], "IN_PROGRESS", 1, **{"Bad-Key": 1})
    assert bad_key.status_code == 422
    assert fleet.state(job["id"])["version"] == 1


def test_deadlines_are_enforced_on_read_and_in_progress_times_out(fleet: Fleet) -> None:
    queued = fleet.job(not_after_seconds=60)
    fleet.clock.advance(61)
    assert fleet.device.next().json()["job"] is None
    assert fleet.state(queued["id"])["state"] == "TIMED_OUT"
    running = fleet.job(in_progress_seconds=10)
    assert fleet.device.report(running["id"], "IN_PROGRESS", 1).status_code == 200
    fleet.clock.advance(11)
    late = fleet.device.report(running["id"], "SUCCEEDED", 2)
    assert late.status_code == 409 and late.json()["code"] == "job_over"
    assert fleet.state(running["id"])["state"] == "TIMED_OUT"


def test_the_sweeper_times_out_jobs_nobody_reads(fleet: Fleet) -> None:
    from labgate.control.runtime import Runtime
    from labgate.control.sweeper import sweep_once

    job = fleet.job(not_after_seconds=60)
    fleet.clock.advance(61)
    runtime = Runtime.open(fleet.server.settings, clock=fleet.clock)
    try:
        assert sweep_once(runtime) >= 1
        assert sweep_once(runtime) == 0
    finally:
        runtime.close()
    assert fleet.state(job["id"])["state"] == "TIMED_OUT"


def test_a_failed_job_is_retried_up_to_its_limit(fleet: Fleet) -> None:
    job = fleet.job(max_attempts=2)
    fleet.device.report(job["id"], "IN_PROGRESS", 1)
    failed = fleet.device.report(job["id"], "FAILED", 2, reason="disk full")
    assert failed.json()["state"] == "QUEUED"
    again = fleet.device.next().json()["job"]
    assert again["attempt"] == 2 and again["job_id"] == job["id"]
    fleet.device.report(job["id"], "IN_PROGRESS", again["version"])
    last = fleet.device.report(job["id"], "FAILED", again["version"] + 1, reason="disk full")
    assert last.json()["state"] == "FAILED"
    assert fleet.state(job["id"])["attempt"] == 2


def _cancel(fleet: Fleet, job_id: str, force: bool = False) -> Any:
    return fleet.api.post(
        f"/api/v1/jobs/{job_id}/cancel", headers=fleet.olga, json={"force": force}
    )


def _to(fleet: Fleet, state: str) -> dict[str, Any]:
    """A job brought to `state` the way it gets there."""
    job = fleet.job(in_progress_seconds=10)
    if state == "QUEUED":
        return job
    fleet.device.report(job["id"], "IN_PROGRESS", 1)
    if state == "IN_PROGRESS":
        return job
    if state == "CANCELING":
        assert _cancel(fleet, job["id"]).json()["state"] == "CANCELING"
    elif state == "TIMED_OUT":
        fleet.clock.advance(11)
        fleet.device.next()
    elif state == "CANCELED":
        assert _cancel(fleet, job["id"], force=True).status_code == 200
    else:
        fleet.device.report(job["id"], state, 2)
    assert fleet.state(job["id"])["state"] == state
    return job


@pytest.mark.parametrize(
    ("state", "force", "outcome"),
    [
        ("QUEUED", False, "CANCELED"),
        ("QUEUED", True, "CANCELED"),
        ("IN_PROGRESS", False, "CANCELING"),
        ("IN_PROGRESS", True, "CANCELED"),
        ("CANCELING", False, "CANCELING"),
        ("CANCELING", True, "CANCELED"),
        ("SUCCEEDED", False, 409),
        ("FAILED", False, 409),
        ("REJECTED", False, 409),
        ("TIMED_OUT", False, 409),
        ("CANCELED", True, 409),
    ],
)
def test_cancel_from_every_state(fleet: Fleet, state: str, force: bool, outcome: Any) -> None:
    job = _to(fleet, state)
    answer = _cancel(fleet, job["id"], force)
    if outcome == 409:
        assert answer.status_code == 409 and answer.json()["code"] == "job_over"
        assert fleet.state(job["id"])["state"] == state
        return
    assert answer.status_code == 200, answer.text
    assert answer.json()["state"] == outcome
    assert answer.json()["forced"] is (force and state != "QUEUED")


def test_two_phase_cancel_the_device_stops_between_steps_and_acknowledges(fleet: Fleet) -> None:
    job = _to(fleet, "IN_PROGRESS")
    _cancel(fleet, job["id"])
    step = fleet.device.report(job["id"], "IN_PROGRESS", 3, step="download")
    assert step.status_code == 200 and step.json()["cancel_requested"] is True
    assert step.json()["state"] == "CANCELING"
    ack = fleet.device.report(job["id"], "CANCELED", step.json()["version"])
    assert ack.json()["state"] == "CANCELED"
    assert fleet.state(job["id"])["forced"] is False


def test_a_late_report_after_a_forced_cancel_is_logged_and_changes_nothing(fleet: Fleet) -> None:
    job = _to(fleet, "IN_PROGRESS")
    assert _cancel(fleet, job["id"], force=True).json()["forced"] is True
    late = fleet.device.report(job["id"], "SUCCEEDED", 2, release="2.0")
    assert late.status_code == 409 and late.json()["code"] == "job_over"
    after = fleet.state(job["id"])
    assert after["state"] == "CANCELED" and after["status_details"] == {}
    assert any(
        job["id"] in detail and "SUCCEEDED" in detail for detail in fleet.audit("job.late_report")
    )


def test_a_group_job_goes_to_each_member(fleet: Fleet, mtls: Any, make_csr: Any) -> None:
    other = enrol(fleet.api, fleet.olga, make_csr, mtls, "bench-2")
    put = fleet.api.put("/api/v1/groups/lab-a", headers=fleet.olga,
                        json={"devices": [fleet.device.id, other.id]})  # fmt: skip
    assert put.status_code == 200 and sorted(put.json()["devices"]) == sorted(
        [fleet.device.id, other.id]
    )
    made = fleet.api.post("/api/v1/jobs", headers=fleet.olga,
                          json={"type": "report_status", "group": "lab-a"})  # fmt: skip
    assert made.status_code == 201 and len(made.json()) == 2
    assert fleet.device.next().json()["job"] is not None
    assert other.next().json()["job"] is not None


def test_racing_reports_for_one_version_move_the_job_once(fleet: Fleet) -> None:
    import concurrent.futures

    job = fleet.job()

    def one(n: int) -> int:
        answer = fleet.device.report(job["id"], "IN_PROGRESS", 1, step=f"racer-{n}")
        return int(answer.status_code)

    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        codes = list(pool.map(one, range(24)))
    assert codes.count(200) == 1 and codes.count(409) == 23, codes
    assert fleet.state(job["id"])["version"] == 2


def test_two_replicas_on_one_database_agree_on_each_job(
    fleet: Fleet, settings: Any, clock: Clock, tmp_path: Any
) -> None:
    """A device reads from one replica and reports to another, an operator cancels on the
    first: every step holds across them, since all of it is in the database."""
    import ssl

    from labgate.control.http.serving import run_in_thread

    from .conftest import tls_identity

    if settings.database_url is None:
        pytest.skip("two replicas need a shared database server (PostgreSQL)")
    job = fleet.job()
    with run_in_thread(settings, clock=clock) as second:
        chain, key = tls_identity(tmp_path, "second", fleet.device.chain_pem, fleet.device.key_pem)
        context = ssl.create_default_context(cafile=fleet.server.root)
        context.load_cert_chain(chain, key)
        with Api(httpx.Client(base_url=second.url, verify=context), settings) as other:
            path = f"/api/v1/devices/{fleet.device.id}/jobs"
            envelope = other.get(f"{path}/next", headers=fleet.device.headers).json()["job"]
            assert envelope["job_id"] == job["id"]
            started = fleet.device.report(job["id"], "IN_PROGRESS", envelope["version"])
            assert started.json()["version"] == 2
            # The same report to the other replica: answered, not applied again.
            again = other.post(f"{path}/{job['id']}/report", headers=fleet.device.headers,
                               json={"status": "IN_PROGRESS", "expected_version": 1})  # fmt: skip
            assert again.status_code == 200 and again.json()["version"] == 2
            assert _cancel(fleet, job["id"]).json()["state"] == "CANCELING"
            step = other.post(f"{path}/{job['id']}/report", headers=fleet.device.headers,
                              json={"status": "IN_PROGRESS", "expected_version": 3})  # fmt: skip
            assert step.json()["cancel_requested"] is True
    assert fleet.state(job["id"])["state"] == "CANCELING"
