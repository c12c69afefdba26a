"""`labgate demo` as a person runs it: a real process, reached with the real qslib client."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from qslib import Machine
from qslib.scpi_commands import AccessLevelExceeded, CommandError, InsufficientAccess

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    state = tmp_path_factory.mktemp("demo")
    proc = subprocess.Popen(
        [sys.executable, "-m", "labgate", "demo", "--json", "--state-dir", str(state)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        proc.kill()
        _, err = proc.communicate(timeout=30)
        pytest.fail(f"labgate demo printed nothing; stderr:\n{err}")
    summary = json.loads(line)
    summary["_process"] = proc
    yield summary
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def _machine(demo: dict[str, Any], who: str) -> Machine:
    host, _, port = demo["gateway"]["instruments"]["qs5-demo"].rpartition(":")
    return Machine(
        host,
        port=int(port),
        ssl=True,
        client_certificate_path=demo["identities"][who]["pem"],
        server_ca_file=demo["root_ca"],
        tls_server_name="qs5-demo",
    )


def test_the_demo_device_agent_linked_itself_by_code(demo: dict[str, Any]) -> None:
    data = Path(demo["agent"]["data"])
    status = json.loads((data / "status.json").read_text())
    assert status["state"] == "linked"
    assert status["device_id"] == demo["agent"]["device_id"]
    assert (data / "device.pem").stat().st_mode & 0o777 == 0o600
    context = ssl.create_default_context(cafile=demo["root_ca"])
    password = Path(demo["admin_password"]).read_text().strip()
    with httpx.Client(base_url=demo["server"]["url"], verify=context, timeout=30) as http:
        login = http.post("/api/v1/auth/login", json={"username": "admin", "password": password})
        headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
        device = http.get(f"/api/v1/devices/{status['device_id']}", headers=headers)
        assert device.status_code == 200 and device.json()["revoked"] is False


def test_the_demo_device_installed_the_signed_release_by_job(demo: dict[str, Any]) -> None:
    shipped = demo["release"]
    assert (shipped["version"], shipped["slot"]) == ("1.0.0", "b")
    data = Path(demo["agent"]["data"])
    state = json.loads((data / "releases" / "slots.json").read_text())
    assert (state["active"], state["good"], state["floor"]) == ("b", "b", "1.0.0")
    installed = data / "releases" / "slots" / "b" / shipped["target"]
    assert hashlib.sha256(installed.read_bytes()).hexdigest() == shipped["sha256"]
    context = ssl.create_default_context(cafile=demo["root_ca"])
    password = Path(demo["admin_password"]).read_text().strip()
    with httpx.Client(base_url=demo["server"]["url"], verify=context, timeout=30) as http:
        login = http.post("/api/v1/auth/login", json={"username": "admin", "password": password})
        headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
        job = http.get(f"/api/v1/jobs/{shipped['job_id']}", headers=headers).json()
    assert job["state"] == "SUCCEEDED" and job["type"] == "install_release"
    assert job["status_details"]["committed"] is True


def test_operator_reads_status_through_the_gateway(demo: dict[str, Any]) -> None:
    with _machine(demo, "operator") as m:
        status = m.machine_status()
    assert status.drawer in ("Open", "Closed")


def test_observer_is_refused_the_drawer_before_the_instrument_sees_it(
    demo: dict[str, Any],
) -> None:
    m = _machine(demo, "observer")
    with m, pytest.raises((AccessLevelExceeded, InsufficientAccess)):
        m.drawer_open()
    log = Path(demo["state_dir"]) / "instrument"
    received = "".join(p.read_text() for p in log.glob("*.jsonl"))
    assert "OPEN" not in received.replace("OPENED", "")


def test_a_grant_withdrawn_on_the_server_ends_access_at_the_gateway(
    demo: dict[str, Any],
) -> None:
    # Through the control server's API, as its administrator would.
    context = ssl.create_default_context(cafile=demo["root_ca"])
    with httpx.Client(base_url=demo["server"]["url"], verify=context, timeout=30) as api:
        password = Path(demo["admin_password"]).read_text().strip()
        token = api.post(
            "/api/v1/auth/login", json={"username": "admin", "password": password}
        ).json()["access_token"]
        auth = {"Authorization": f"Bearer {token}"}
        grants = api.get("/api/v1/grants", headers=auth).json()
        (observer,) = [g for g in grants if g["principal"] == "labgate:user:observer"]
        assert api.delete(f"/api/v1/grants/{observer['id']}", headers=auth).status_code == 200

    # The gateway polls its signed bundle every few seconds; then the observer is refused.
    deadline = time.monotonic() + 30
    while True:
        try:
            with _machine(demo, "observer") as m:
                m.run_command("DRAW?")
        except CommandError as exc:
            assert "AccessDenied" in str(exc), exc
            break
        assert time.monotonic() < deadline, "the gateway still serves a withdrawn grant"
        time.sleep(1)
    with _machine(demo, "operator") as m:  # the other grant stands
        assert m.run_command("DRAW?") in ("Open", "Closed")


def test_ctrl_c_stops_every_part_and_leaves_a_verifiable_audit_log(
    demo: dict[str, Any],
) -> None:
    proc: subprocess.Popen[str] = demo["_process"]
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=60) == 0
    for pid in demo["pids"].values():
        with pytest.raises(ProcessLookupError):  # reaped by the demo, so gone, not a zombie
            os.kill(pid, 0)
    verify = subprocess.run(
        [sys.executable, "-m", "labgate", "audit", "verify", demo["audit_log"]],
        capture_output=True,
        text=True,
        timeout=60,
        env=os.environ.copy(),
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr
