"""The site audit trail: filters, paging, exports, transcripts and session lists return exactly
what was shipped, to admins and auditors only, and every read is itself on record."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.orm import Session, sessionmaker

from labgate.control import audit, gatewaylogs
from labgate.control.database import make_engine
from labgate.control.transactions import unit_of_work
from labgate.gateway.audit import AuditLog

PEOPLE = ("labgate:user:alice", "labgate:user:bob", "labgate:user:carol")
INSTRUMENTS = ("qs5-bench3", "qs6-bench1")
COMMANDS = ("RUNTITLE?", "BLOCK?", "RUN", "AUTH")


def peer_of(conn: int) -> str:
    return f"127.0.0.{1 + conn % 3}:{40000 + conn}" if conn % 4 else f"[::1]:{conn}"


def write_sessions(path: Path, sessions: int) -> list[bytes]:
    """A gateway's log: `sessions` sessions of a few commands each, as the gateway records them."""
    with AuditLog(path) as log:
        log.record({"event": "gateway_start", "instruments": list(INSTRUMENTS)})
        for conn in range(sessions):
            base = {
                "conn": conn,
                "identity": PEOPLE[conn % 3],
                "fingerprint": "ab" * 32,
                "instrument": INSTRUMENTS[conn % 2],
            }
            # As the gateway writes them: only the connect names the client's address.
            log.record({"event": "connect", **base, "peer": peer_of(conn), "grant": "Observer"})
            for step in range(3):
                command = COMMANDS[(conn + step) % 4]
                decision = "denied" if command in ("RUN", "AUTH") else "allowed"
                log.record({"event": "command", **base, "command": command, "decision": decision})
                if decision == "allowed":
                    log.record({"event": "reply", **base, "command": command, "status": "OK"})
            log.record({"event": "disconnect", **base, "reason": "client quit"})
        log.record({"event": "refused", "conn": sessions, "peer": "127.0.0.9:1", "kind": "grant",
                    "identity": "labgate:user:mallory", "instrument": INSTRUMENTS[0],
                    "reason": "no grant"})  # fmt: skip
    return path.read_bytes().splitlines(keepends=True)


@pytest.fixture
def shipped(settings: Any, tmp_path: Path) -> list[dict[str, Any]]:
    """A log of 24 sessions shipped by gateway site-1 (through the domain; the HTTP path of
    shipping has its own tests); its records as the trail should give them back."""
    lines = write_sessions(tmp_path / "audit.jsonl", 24)
    log_id = json.loads(lines[0])["log_id"]
    engine = make_engine(settings.resolved_database_url, pool_size=1)
    try:
        with unit_of_work(sessionmaker(engine)) as session:
            for start in range(0, len(lines), 50):
                gatewaylogs.receive(
                    session, gateway="site-1", log_id=log_id, lines=lines[start : start + 50],
                    now=datetime.now(UTC),
                )  # fmt: skip
    finally:
        engine.dispose()
    return [json.loads(line) for line in lines]


@pytest.fixture
def auditor(api: Any) -> dict[str, str]:
    return api.create_user(api.admin(), "inspector", "auditor")  # type: ignore[no-any-return]


def everything(api: Any, headers: dict[str, str], **params: Any) -> list[dict[str, Any]]:
    """Every page of a search, walked by its cursors."""
    found: list[dict[str, Any]] = []
    cursor = None
    for _ in range(1000):
        query = {**params, "limit": 7, **({"after": cursor} if cursor else {})}
        response = api.get("/api/v1/audit/records", headers=headers, params=query)
        assert response.status_code == 200, response.text
        body = response.json()
        found += body["records"]
        cursor = body["next"]
        if cursor is None:
            return found
    raise AssertionError("paging did not end")


def source(record: dict[str, Any]) -> str | None:
    """The record's client address: its own, or its session's (the connect's)."""
    if "peer" in record:
        return gatewaylogs.source_address(record["peer"])
    if "conn" in record:
        return gatewaylogs.source_address(peer_of(record["conn"]))
    return None


CASES = [
    ({"identity": "labgate:user:bob"}, lambda r: r.get("identity") == "labgate:user:bob"),
    ({"instrument": "qs6-bench1"}, lambda r: r.get("instrument") == "qs6-bench1"),
    ({"command": "runtitle?"}, lambda r: r.get("command") == "RUNTITLE?"),
    ({"decision": "denied"}, lambda r: r.get("decision") == "denied"),
    ({"decision": "refused"}, lambda r: r["event"] == "refused"),
    ({"source": "::1"}, lambda r: source(r) == "::1"),
    ({"source": "127.0.0.2"}, lambda r: source(r) == "127.0.0.2"),
    ({"event": "disconnect", "identity": "labgate:user:carol"},
     lambda r: r["event"] == "disconnect" and r.get("identity") == "labgate:user:carol"),
]  # fmt: skip


def test_each_filter_returns_exactly_its_records_newest_first(
    api: Any, shipped: list[dict[str, Any]], auditor: dict[str, str]
) -> None:
    for params, wanted in CASES:
        found = everything(api, auditor, **params)
        expected = [r["seq"] for r in shipped if wanted(r)]
        assert expected, params
        assert [r["seq"] for r in found] == sorted(expected, reverse=True), params
        assert all(r["record"] == shipped[r["seq"]] for r in found)
    everyone = everything(api, auditor)
    assert len(everyone) == len(shipped)


def test_a_time_range_bounds_the_search(
    api: Any, shipped: list[dict[str, Any]], auditor: dict[str, str]
) -> None:
    times = sorted({r["time"] for r in shipped})
    since, until = times[len(times) // 3], times[2 * len(times) // 3]
    found = everything(api, auditor, since=since, until=until)
    expected = [r["seq"] for r in shipped if since <= r["time"] < until]
    assert [r["seq"] for r in found] == sorted(expected, reverse=True)
    bad = api.get("/api/v1/audit/records", headers=auditor, params={"since": "yesterday"})
    assert bad.status_code == 422
    assert "since" in bad.json()["message"]
    naive = api.get("/api/v1/audit/records", headers=auditor, params={"since": "2026-01-01T00:00"})
    assert naive.status_code == 422
    assert (
        api.get("/api/v1/audit/records", headers=auditor, params={"decision": "maybe"}).status_code
        == 422
    )
    forged = api.get("/api/v1/audit/records", headers=auditor, params={"after": "bm90IG1pbmU"})
    assert forged.status_code == 422


def test_exports_hold_exactly_the_filtered_set(
    api: Any, shipped: list[dict[str, Any]], auditor: dict[str, str]
) -> None:
    for params, wanted in CASES[:4]:
        expected = [r for r in shipped if wanted(r)]
        jsonl = api.get(
            "/api/v1/audit/export", headers=auditor, params={**params, "format": "jsonl"}
        )
        assert jsonl.status_code == 200, jsonl.text
        assert jsonl.headers["content-type"] == "application/x-ndjson"
        items = [json.loads(line) for line in jsonl.content.splitlines()]
        assert [i["record"] for i in items] == expected  # oldest first, whole records
        as_csv = api.get(
            "/api/v1/audit/export", headers=auditor, params={**params, "format": "csv"}
        )
        assert as_csv.status_code == 200
        assert as_csv.headers["content-type"].startswith("text/csv")
        rows = list(csv.DictReader(io.StringIO(as_csv.text)))
        assert [json.loads(row["record"]) for row in rows] == expected
        assert [int(row["seq"]) for row in rows] == [r["seq"] for r in expected]
        assert {row["gateway"] for row in rows} == {"site-1"}


def test_a_csv_cell_that_would_be_a_formula_is_shown_as_text(
    api: Any, settings: Any, tmp_path: Path, auditor: dict[str, str]
) -> None:
    path = tmp_path / "audit.jsonl"
    with AuditLog(path) as log:
        log.record({"event": "command", "conn": 1, "identity": "=HYPERLINK(\"x\")",
                    "command": "+SUM(A1)", "decision": "malformed"})  # fmt: skip
    lines = path.read_bytes().splitlines(keepends=True)
    engine = make_engine(settings.resolved_database_url, pool_size=1)
    try:
        with Session(engine) as session:
            gatewaylogs.receive(
                session, gateway="site-9", log_id=json.loads(lines[0])["log_id"], lines=lines,
                now=datetime.now(UTC),
            )  # fmt: skip
            session.commit()
    finally:
        engine.dispose()
    rows = list(csv.DictReader(io.StringIO(api.get(
        "/api/v1/audit/export", headers=auditor, params={"format": "csv", "gateway": "site-9",
                                                         "event": "command"}).text)))  # fmt: skip
    assert rows[0]["identity"] == '\'=HYPERLINK("x")'
    assert rows[0]["command"] == "'+SUM(A1)"


def test_a_session_reads_as_its_transcript_and_each_instrument_lists_its_sessions(
    api: Any, shipped: list[dict[str, Any]], auditor: dict[str, str]
) -> None:
    listed = api.get("/api/v1/instruments/qs6-bench1/sessions", headers=auditor,
                     params={"limit": 5})  # fmt: skip
    assert listed.status_code == 200, listed.text
    page = listed.json()
    assert len(page["sessions"]) == 5 and page["next"]
    rest = api.get("/api/v1/instruments/qs6-bench1/sessions", headers=auditor,
                   params={"after": page["next"], "limit": 500}).json()  # fmt: skip
    sessions = page["sessions"] + rest["sessions"]
    conns = [c for c in range(24) if c % 2 == 1]
    assert len(sessions) == len(conns)
    newest = sessions[0]
    assert newest["identity"] == PEOPLE[23 % 3]
    assert newest["end_reason"] == "client quit"
    assert newest["commands"] == 3
    assert newest["refused"] == sum(
        1 for step in range(3) if COMMANDS[(23 + step) % 4] in ("RUN", "AUTH")
    )
    transcript = api.get(f"/api/v1/audit/sessions/{newest['session']}", headers=auditor)
    assert transcript.status_code == 200, transcript.text
    body = transcript.json()
    expected = [r for r in shipped if r.get("conn") == 23 and r["event"] != "refused"]
    assert [r["record"] for r in body["records"]] == expected
    assert body["records"][0]["event"] == "connect"
    assert body["records"][-1]["event"] == "disconnect"
    assert body["instrument"] == "qs6-bench1"
    missing = api.get("/api/v1/audit/sessions/site-1:nothing:0:99", headers=auditor)
    assert missing.status_code == 404


def test_only_admins_and_auditors_read_the_trail(
    api: Any, shipped: list[dict[str, Any]], auditor: dict[str, str]
) -> None:
    admin = api.admin()
    viewer = api.create_user(admin, "vera", "viewer")
    operator = api.create_user(admin, "otto", "operator")
    device = api.bearer(api.create_device(operator, "bench-pc")["credentials"]["access_token"])
    session = everything(api, auditor, event="connect")[0]["session"]
    paths = [
        "/api/v1/audit/records",
        "/api/v1/audit/export?format=csv",
        "/api/v1/audit/export?format=jsonl&identity=labgate:user:alice",
        f"/api/v1/audit/sessions/{session}",
        "/api/v1/instruments/qs5-bench3/sessions",
        "/api/v1/audit/gateways",
    ]
    for path in paths:
        assert api.get(path).status_code == 401, path
        for who in (viewer, operator, device):
            refused = api.get(path, headers=who)
            assert refused.status_code == 403, (path, refused.text)
            assert refused.json()["code"] == "forbidden"
            assert "RUNTITLE" not in refused.text  # nothing of the trail leaks
        assert api.get(path, headers=admin).status_code == 200, path
        assert api.get(path, headers=auditor).status_code == 200, path
    heads = api.get("/api/v1/audit/gateways", headers=auditor).json()["gateways"]
    assert [(h["gateway"], h["seq"], h["closed"]) for h in heads] == [
        ("site-1", len(shipped) - 1, True)
    ]


def test_viewing_and_exporting_are_on_record(
    api: Any, settings: Any, shipped: list[dict[str, Any]], auditor: dict[str, str]
) -> None:
    api.get("/api/v1/audit/records", headers=auditor, params={"identity": "labgate:user:bob"})
    api.get("/api/v1/audit/export", headers=auditor, params={"format": "csv", "decision": "denied"})
    engine = make_engine(settings.resolved_database_url, pool_size=1)
    try:
        with Session(engine) as session:
            viewed = audit.events(session, kind="trail.viewed")
            exported = audit.events(session, kind="trail.exported")
    finally:
        engine.dispose()
    assert [(e.subject, json.loads(e.detail)["filters"]) for e in viewed] == [
        ("labgate:user:inspector", {"identity": "labgate:user:bob"})
    ]
    detail = json.loads(exported[0].detail)
    assert exported[0].subject == "labgate:user:inspector"
    assert detail["filters"] == {"decision": "denied"}
    assert detail["format"] == "csv"
