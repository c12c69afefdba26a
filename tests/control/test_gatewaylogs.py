"""Gateways ship their audit logs: the server takes only batches that continue the chain it holds.

Every case runs over real mutual TLS against a live server, with logs written by the gateway's own
`AuditLog` (or, for the forgeries, by the chain functions it uses), on SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.orm import Session

from labgate.control import audit, gatewaylogs, keystore
from labgate.control.database import make_engine
from labgate.control.layout import ca_dir
from labgate.gateway.audit import AuditLog
from labgate.gateway.auditchain import ChainHead, next_line, start_line, verify
from labgate.pki.authority import CertificateAuthority
from labgate.pki.profiles import Profile


def write_log(path: Path, events: int) -> list[bytes]:
    """A log as the gateway writes it: log-start, `events` records, log-stop."""
    with AuditLog(path) as log:
        for n in range(events):
            log.record({"event": "command", "conn": 1, "command": "RUNTITLE?", "n": n})
    return path.read_bytes().splitlines(keepends=True)


def ship(api: Any, name: str, log_id: str, lines: list[bytes]) -> Any:
    return api.post(
        f"/api/v1/gateways/{name}/audit",
        params={"log": log_id},
        content=b"".join(lines),
        headers={"content-type": "application/x-ndjson"},
    )


def log_id_of(lines: list[bytes]) -> str:
    value = json.loads(lines[0])["log_id"]
    assert isinstance(value, str)
    return value


@pytest.fixture
def site(mtls: Any, gateway_identity: Any) -> Any:
    chain, key, _ = gateway_identity(Profile.GATEWAY, "site-1")
    with mtls("site-1", chain, key) as api:
        yield api


def test_a_log_shipped_in_batches_ends_at_the_head_verify_names(site: Any, tmp_path: Path) -> None:
    lines = write_log(tmp_path / "audit.jsonl", 40)
    log_id = log_id_of(lines)
    empty = site.get("/api/v1/gateways/site-1/audit")
    assert empty.status_code == 200, empty.text
    assert empty.json()["seq"] is None
    first = ship(site, "site-1", log_id, lines[:15])
    assert first.status_code == 200, first.text
    assert first.json()["seq"] == 14
    rest = ship(site, "site-1", log_id, lines[15:])
    assert rest.status_code == 200, rest.text
    intact = verify(lines)
    assert intact.ok
    assert rest.json()["seq"] == intact.last_seq
    assert rest.json()["hash"] == intact.head
    assert rest.json()["closed"] is True
    # The reply to the last batch was lost: the gateway sends it again, and nothing changes.
    again = ship(site, "site-1", log_id, lines[10:])
    assert again.status_code == 200, again.text
    assert again.json()["hash"] == intact.head
    assert again.json()["records"] == len(lines)


def test_a_gap_is_refused_naming_the_missing_seqs(site: Any, tmp_path: Path) -> None:
    lines = write_log(tmp_path / "audit.jsonl", 20)
    log_id = log_id_of(lines)
    assert ship(site, "site-1", log_id, lines[:5]).status_code == 200
    gap = ship(site, "site-1", log_id, lines[8:])
    assert gap.status_code == 409, gap.text
    body = gap.json()
    assert body["code"] == "audit_gap"
    assert body["where"]["held_seq"] == 4
    assert body["where"]["expected_seq"] == 5
    assert body["where"]["sent_seq"] == 8
    assert "seq 5-7 are missing" in body["message"]
    # Not starting a log at its start is a gap too.
    other = write_log(tmp_path / "other.jsonl", 3)
    late = ship(site, "site-1", log_id_of(other), other[2:])
    assert late.status_code == 409
    assert late.json()["code"] == "audit_gap"


def test_a_log_cut_back_on_the_gateways_host_and_written_on_is_a_fork(
    site: Any, tmp_path: Path, settings: Any
) -> None:
    """The attacker cuts the records already shipped off the file; the gateway resumes and
    writes on. Its next batch cannot continue what the server holds, and the server says where."""
    path = tmp_path / "audit.jsonl"
    lines = write_log(path, 30)
    log_id = log_id_of(lines)
    assert ship(site, "site-1", log_id, lines).status_code == 200
    path.write_bytes(b"".join(lines[:12]))  # cut at a line boundary: it resumes without a word
    with AuditLog(path) as log:
        log.record({"event": "command", "conn": 2, "command": "RUNTITLE?"})
    rewritten = path.read_bytes().splitlines(keepends=True)
    assert verify(rewritten).ok  # on its own, the rewritten file is a perfect log
    fork = ship(site, "site-1", log_id, rewritten[12:])
    assert fork.status_code == 409, fork.text
    body = fork.json()
    assert body["code"] == "audit_fork"
    assert body["where"]["sent_seq"] == 12
    assert body["where"]["held_hash"] == verify(lines[:13]).head
    assert body["where"]["sent_hash"] != body["where"]["held_hash"]
    # Sent from the head on (what a shipper would do next): still refused, as a fork.
    after = ship(site, "site-1", log_id, rewritten[-1:])
    assert after.status_code == 409
    assert after.json()["code"] in ("audit_fork", "audit_gap")
    head = site.get("/api/v1/gateways/site-1/audit").json()
    assert head["seq"] == len(lines) - 1  # nothing of the rewritten log was taken
    assert head["divergence"]["code"] in ("audit_fork", "audit_gap")
    engine = make_engine(settings.resolved_database_url, pool_size=1)
    try:
        with Session(engine) as session:
            refused = audit.events(session, kind="gateway.audit_refused")
    finally:
        engine.dispose()
    assert [json.loads(e.detail)["code"] for e in refused] == [
        "audit_fork",
        head["divergence"]["code"],
    ]


def test_a_chain_recomputed_from_an_edited_record_is_a_fork(site: Any, tmp_path: Path) -> None:
    """Someone who can write the file edits an old record and recomputes every link after it:
    `labgate audit verify` cannot tell, the server can."""
    lines = write_log(tmp_path / "audit.jsonl", 10)
    log_id = log_id_of(lines)
    assert ship(site, "site-1", log_id, lines[:8]).status_code == 200
    forged = _recompute(lines, edit_seq=3)
    assert verify(forged).ok
    whole = ship(site, "site-1", log_id, forged)
    assert whole.status_code == 409
    assert whole.json()["code"] == "audit_fork"
    assert whole.json()["where"]["sent_seq"] == 3
    tail = ship(site, "site-1", log_id, forged[8:])
    assert tail.status_code == 409
    assert tail.json()["code"] == "audit_fork"
    assert tail.json()["where"]["sent_seq"] == 8
    assert ship(site, "site-1", log_id, lines[8:]).status_code == 200  # the true log goes on


def _recompute(lines: list[bytes], *, edit_seq: int) -> list[bytes]:
    records = [json.loads(line) for line in lines]
    start = records[0]
    line, chain = start_line(log_id=start["log_id"], time=start["time"])
    out = [line]
    for record in records[1:]:
        event = {k: v for k, v in record.items() if k not in ("seq", "prev", "digest", "time")}
        if record["seq"] == edit_seq:
            event["command"] = "RUN"
        line, chain = next_line(chain, event, time=record["time"])
        out.append(line)
    return out


def test_forged_lines_are_refused_and_nothing_is_taken(site: Any, tmp_path: Path) -> None:
    lines = write_log(tmp_path / "audit.jsonl", 6)
    log_id = log_id_of(lines)
    assert ship(site, "site-1", log_id, lines[:3]).status_code == 200
    # A record changed without its digest: its own hash is wrong.
    edited = lines[3].replace(b"RUNTITLE?", b"RUNSTOP")
    bad = ship(site, "site-1", log_id, [edited, *lines[4:]])
    assert bad.status_code == 422, bad.text
    assert bad.json()["code"] == "audit_record_invalid"
    assert "digest" in bad.json()["message"]
    # A sealed record whose prev is not the head (made after a head the server never saw).
    stranger = ChainHead(log_id=log_id, seq=2, hash="ab" * 32)
    line, _ = next_line(stranger, {"event": "command", "conn": 9}, time="2026-12-02T00:00:00.000Z")
    wrong_prev = ship(site, "site-1", log_id, [line])
    assert wrong_prev.status_code == 409
    assert wrong_prev.json()["code"] == "audit_fork"
    assert wrong_prev.json()["where"]["sent_prev"] == "ab" * 32
    # Lines out of order inside one batch.
    swapped = ship(site, "site-1", log_id, [lines[4], lines[3]])
    assert swapped.status_code == 422
    assert "does not follow" in swapped.json()["message"]
    inside = ship(site, "site-1", log_id, [lines[3], lines[5]])
    assert inside.status_code == 422
    assert "does not follow" in inside.json()["message"]
    # Not JSON, and a lone fragment of a line.
    assert ship(site, "site-1", log_id, [b"not json\n"]).status_code == 422
    assert ship(site, "site-1", log_id, [lines[3][:40]]).status_code == 422
    head = site.get("/api/v1/gateways/site-1/audit").json()
    assert head["seq"] == 2
    assert ship(site, "site-1", log_id, lines[3:]).status_code == 200


def test_a_new_log_is_taken_after_a_clean_stop_and_refused_after_none(
    site: Any, tmp_path: Path
) -> None:
    first = write_log(tmp_path / "first.jsonl", 3)
    assert ship(site, "site-1", log_id_of(first), first).status_code == 200
    second = write_log(tmp_path / "second.jsonl", 3)  # the operator moved the log aside
    taken = ship(site, "site-1", log_id_of(second), second[:3])  # not closed: no log-stop yet
    assert taken.status_code == 200, taken.text
    assert taken.json()["log_id"] == log_id_of(second)
    third = write_log(tmp_path / "third.jsonl", 3)  # replaced while the second was still open
    replaced = ship(site, "site-1", log_id_of(third), third)
    assert replaced.status_code == 409
    body = replaced.json()
    assert body["code"] == "audit_log_replaced"
    assert body["where"]["held_log"] == log_id_of(second)
    assert body["where"]["held_seq"] == 2
    # The unknown log's later records name no start the server took.
    assert ship(site, "site-1", secrets.token_hex(32), second[1:]).status_code == 409


def test_only_the_gateways_own_unrevoked_certificate_ships_its_log(
    live_server: Any, mtls: Any, gateway_identity: Any, tmp_path: Path
) -> None:
    lines = write_log(tmp_path / "audit.jsonl", 2)
    log_id = log_id_of(lines)
    with live_server.api() as anonymous:
        refused = ship(anonymous, "site-1", log_id, lines)
        assert refused.status_code == 401
        assert refused.json()["code"] == "certificate_required"
        assert anonymous.get("/api/v1/gateways/site-1/audit").status_code == 401
    chain, key, serial = gateway_identity(Profile.GATEWAY, "site-2")
    with mtls("site-2", chain, key) as other:
        assert ship(other, "site-1", log_id, lines).status_code == 403  # another site's log
        assert other.get("/api/v1/gateways/site-1/audit").status_code == 403
        assert ship(other, "site-2", log_id, lines).status_code == 200  # its own is fine
    user_chain, user_key, _ = gateway_identity(Profile.CLIENT, "alice")
    with mtls("alice", user_chain, user_key) as user:
        assert ship(user, "site-1", log_id, lines).status_code == 403
    settings = live_server.settings
    passphrase = keystore.load_passphrase(settings)
    with CertificateAuthority.open(ca_dir(settings.data_dir), passphrase=passphrase) as ca:
        ca.revoke(serial, reason="keyCompromise")
    more = write_log(tmp_path / "more.jsonl", 2)
    with mtls("site-2b", chain, key) as revoked:
        answer = ship(revoked, "site-2", log_id_of(more), more)
        assert answer.status_code == 403
        assert "revoked" in answer.json()["message"]


def test_the_body_limit_allows_a_full_batch_and_no_more(site: Any, tmp_path: Path) -> None:
    lines = write_log(tmp_path / "audit.jsonl", gatewaylogs.MAX_BATCH_RECORDS + 5)
    log_id = log_id_of(lines)
    too_many = ship(site, "site-1", log_id, lines[: gatewaylogs.MAX_BATCH_RECORDS + 1])
    assert too_many.status_code == 422
    assert "at most" in too_many.json()["message"]
    full = ship(site, "site-1", log_id, lines[: gatewaylogs.MAX_BATCH_RECORDS])
    assert full.status_code == 200, full.text
    huge = ship(site, "site-1", log_id, [b"x" * (2 * 1024 * 1024)])
    assert huge.status_code == 413


def test_only_an_admin_releases_a_log_that_never_closed_and_says_why(
    live_server: Any, site: Any, tmp_path: Path
) -> None:
    """A crash cut the log's last line; its operator moved it aside. The new log is refused
    until an administrator releases the old one; nobody else can."""
    old = write_log(tmp_path / "old.jsonl", 3)[:-1]  # no log-stop: it never closed
    assert ship(site, "site-1", log_id_of(old), old).status_code == 200
    new = write_log(tmp_path / "new.jsonl", 3)
    assert ship(site, "site-1", log_id_of(new), new).json()["code"] == "audit_log_replaced"
    path = "/api/v1/audit/gateways/site-1/release"
    with live_server.api() as api:
        admin = api.admin()
        auditor = api.create_user(admin, "inspector", "auditor")
        operator = api.create_user(admin, "otto", "operator")
        for who in (auditor, operator):
            assert api.post(path, headers=who, json={"reason": "moved aside"}).status_code == 403
        assert ship(site, "site-1", log_id_of(new), new).status_code == 409  # still refused
        assert api.post(path, headers=admin, json={"reason": ""}).status_code == 422
        assert (
            api.post(
                "/api/v1/audit/gateways/site-9/release", headers=admin, json={"reason": "x"}
            ).status_code
            == 404
        )
        released = api.post(path, headers=admin, json={"reason": "crash cut the last line"})
        assert released.status_code == 200, released.text
        assert released.json()["closed"] is True
    taken = ship(site, "site-1", log_id_of(new), new)
    assert taken.status_code == 200, taken.text
    assert taken.json()["log_id"] == log_id_of(new)
    engine = make_engine(live_server.settings.resolved_database_url, pool_size=1)
    try:
        with Session(engine) as session:
            events = audit.events(session, kind="gateway.audit_released")
    finally:
        engine.dispose()
    detail = json.loads(events[0].detail)
    assert (detail["by"], detail["reason"], detail["seq"]) == (
        "labgate:user:admin", "crash cut the last line", len(old) - 1,
    )  # fmt: skip


def test_the_same_batch_sent_in_parallel_is_taken_once_and_never_fails_the_server(
    mtls: Any, gateway_identity: Any, tmp_path: Path
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    lines = write_log(tmp_path / "audit.jsonl", 200)
    log_id = log_id_of(lines)
    chain, key, _ = gateway_identity(Profile.GATEWAY, "site-1")
    clients = [mtls(f"site-1-{n}", chain, key) for n in range(6)]
    try:
        with ThreadPoolExecutor(len(clients)) as pool:
            answers = list(pool.map(lambda api: ship(api, "site-1", log_id, lines), clients))
        assert {a.status_code for a in answers} <= {200, 409}, [a.text for a in answers]
        assert any(a.status_code == 200 for a in answers)
        head = clients[0].get("/api/v1/gateways/site-1/audit").json()
    finally:
        for api in clients:
            api.close()
    assert head["seq"] == len(lines) - 1
    assert head["records"] == len(lines)
