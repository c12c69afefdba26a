"""The site audit trail end to end: the real `labgate server`, `labgate sim` and a real gateway
with `[control]`, reached with the real qslib client. The gateway ships its log as it writes it;
an auditor finds each person's commands, sessions and refusals on the server. Then the gateway's
log is cut short on its host and the gateway restarted: the server refuses it and says where."""

from __future__ import annotations

import json
import ssl
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from qslib import Machine
from qslib.scpi_commands import AccessLevelExceeded, InsufficientAccess

from labgate.demo.children import start
from labgate.demo.stack import INSTRUMENT, OBSERVER, OPERATOR, SITE, RunningDemo, running

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]
NEW_PASSWORD = "Violet staple hammock 7 orbit!"  # enhanced: the demo server has [secure] pwd on
T = TypeVar("T")


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningDemo]:
    with running(tmp_path_factory.mktemp("trail")) as stack:
        yield stack


def api_client(demo: RunningDemo) -> httpx.Client:
    context = ssl.create_default_context(cafile=str(demo.root_ca))
    return httpx.Client(base_url=str(demo.server["url"]), verify=context, timeout=30)


def auditor_headers(api: httpx.Client, demo: RunningDemo) -> dict[str, str]:
    password = demo.admin_password.read_text().strip()
    admin = api.post("/api/v1/auth/login", json={"username": "admin", "password": password})
    headers = {"Authorization": f"Bearer {admin.json()['access_token']}"}
    made = api.post("/api/v1/users", headers=headers, json={"username": "ines", "role": "auditor"})
    assert made.status_code == 201, made.text
    one_time = made.json()["one_time_password"]
    login = api.post("/api/v1/auth/login", json={"username": "ines", "password": one_time})
    changed = api.post(
        "/api/v1/auth/password",
        headers={"Authorization": f"Bearer {login.json()['access_token']}"},
        json={"old_password": one_time, "new_password": NEW_PASSWORD},
    )
    assert changed.status_code == 200, changed.text
    return {"Authorization": f"Bearer {changed.json()['access_token']}"}


def machine(demo: RunningDemo, who: str) -> Machine:
    host, port = demo.instrument_address()
    identity = next(i for i in demo.identities if i.name == who)
    return Machine(
        host,
        port=port,
        ssl=True,
        client_certificate_path=str(identity.pem),
        server_ca_file=str(demo.root_ca),
        tls_server_name=INSTRUMENT,
    )


def eventually(probe: Callable[[], T | None], *, within: float = 30.0) -> T:
    deadline = time.monotonic() + within
    while True:
        found = probe()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError("not seen in time")
        time.sleep(0.2)


def records(api: httpx.Client, headers: dict[str, str], **params: Any) -> list[dict[str, Any]]:
    answer = api.get("/api/v1/audit/records", headers=headers, params={**params, "limit": 500})
    assert answer.status_code == 200, answer.text
    found: list[dict[str, Any]] = answer.json()["records"]
    return found


def metric(demo: RunningDemo, name: str) -> float:
    text = httpx.get(f"http://{demo.gateway['metrics']}/metrics", timeout=10).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                return float(sample.value)
    raise AssertionError(f"no metric {name}")


def test_qslib_sessions_through_a_real_gateway_reach_the_site_trail(demo: RunningDemo) -> None:
    with machine(demo, OPERATOR) as m:
        assert m.machine_status().drawer in ("Open", "Closed")
        m.run_command("RUNTITLE?")
    observer = machine(demo, OBSERVER)
    with observer, pytest.raises((AccessLevelExceeded, InsufficientAccess)):
        observer.drawer_open()
    with api_client(demo) as api:
        auditor = auditor_headers(api, demo)
        denied = eventually(
            lambda: records(api, auditor, identity=f"labgate:user:{OBSERVER}", decision="denied")
        )
        # qslib asks to raise its access level first (ACCESS), which the observer's grant refuses.
        refused_command = denied[0]["command"]
        assert refused_command in ("ACCESS", "ACC", "OPEN")
        assert {(r["gateway"], r["instrument"], r["source"]) for r in denied} == {
            (SITE, INSTRUMENT, "127.0.0.1")
        }
        ran = eventually(
            lambda: records(api, auditor, identity=f"labgate:user:{OPERATOR}", command="RUNTITLE?")
        )
        assert {(r["event"], r["decision"]) for r in ran} == {
            ("command", "allowed"),
            ("reply", None),
        }
        # The observer's session, as a transcript: connect, the refused command, disconnect.
        transcript = api.get(f"/api/v1/audit/sessions/{denied[0]['session']}", headers=auditor)
        assert transcript.status_code == 200, transcript.text
        events = [(r["event"], r["command"], r["decision"]) for r in transcript.json()["records"]]
        assert events[0][0] == "connect"
        assert ("command", refused_command, "denied") in events
        assert eventually(
            lambda: (
                api.get(f"/api/v1/audit/sessions/{denied[0]['session']}", headers=auditor).json()[
                    "records"
                ][-1]["event"]
                == "disconnect"
            )
        )
        sessions = api.get(f"/api/v1/instruments/{INSTRUMENT}/sessions", headers=auditor).json()
        people = {s["identity"] for s in sessions["sessions"]}
        assert {f"labgate:user:{OPERATOR}", f"labgate:user:{OBSERVER}"} <= people
        # The export holds exactly what the search shows.
        wanted = {"identity": f"labgate:user:{OPERATOR}"}
        shown = records(api, auditor, **wanted)
        exported = api.get("/api/v1/audit/export", headers=auditor, params={**wanted})
        lines = [json.loads(line) for line in exported.text.splitlines()]
        assert [r["id"] for r in lines] == sorted(r["id"] for r in shown)
        # The gateway says how far it shipped; it catches up with what it wrote.
        head = api.get("/api/v1/audit/gateways", headers=auditor).json()["gateways"][0]
        assert head["gateway"] == SITE and head["divergence"] is None
        assert eventually(lambda: metric(demo, "labgate_gateway_audit_ship_lag_records") == 0)
        assert metric(demo, "labgate_gateway_audit_shipped_seq") >= head["seq"]


def test_a_gateway_log_cut_short_on_its_host_is_refused_by_the_server(demo: RunningDemo) -> None:
    with machine(demo, OPERATOR) as m:
        m.run_command("RUNTITLE?")
    gateway = next(c for c in demo.children if c.name == "gateway")
    with api_client(demo) as api:
        password = demo.admin_password.read_text().strip()
        login = api.post("/api/v1/auth/login", json={"username": "admin", "password": password})
        admin = {"Authorization": f"Bearer {login.json()['access_token']}"}

        def head() -> dict[str, Any]:
            heads = api.get("/api/v1/audit/gateways", headers=admin).json()["gateways"]
            found: dict[str, Any] = heads[0]
            return found

        gateway.stop()  # a clean stop ships its log-stop before it exits
        held = eventually(lambda: head() if head()["closed"] else None)
        lines = demo.audit_log.read_bytes().splitlines(keepends=True)
        assert held["seq"] == len(lines) - 1
        demo.audit_log.write_bytes(b"".join(lines[: len(lines) // 2]))
        restarted = start(
            "gateway",
            ["gateway", "--config", str(demo.audit_log.parent / "gateway.toml")],
            log_dir=demo.logs,
        )
        try:
            refused = eventually(lambda: head()["divergence"])
        finally:
            restarted.stop()
    assert refused["code"] == "audit_fork"
    assert refused["sent_seq"] == len(lines) // 2  # the log-resume written after the cut
    assert refused["held_seq"] == held["seq"]
    assert head_unchanged(held, refused)


def head_unchanged(held: dict[str, Any], refused: dict[str, Any]) -> bool:
    return bool(refused["held_head"] == held["hash"])
