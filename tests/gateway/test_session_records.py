"""What a session leaves in the audit log: who, what, the decision and why, the reply and how
long it took; a file's size and digest but never its content."""

from __future__ import annotations

import base64
import hashlib
import json
import os
from typing import Any


def _events(gateway: Any) -> list[dict[str, Any]]:
    gateway.call(gateway.gateway.audit.flush())
    return [json.loads(line) for line in gateway.gateway.audit.path.read_text().splitlines()]


def test_a_session_is_recorded_command_by_command(gateway: Any, pki: Any, raw_client: Any) -> None:
    client = raw_client(gateway, pki, "alice")
    assert client.line().startswith(b"READy")
    assert client.ask("0 ACC -stealth=false -exclusive=false Controller") == b"OK 0"
    content = base64.encodebytes(os.urandom(3000)).decode()
    assert client.ask(
        f"1 FILE:WRITE public_run_complete/rec.bin <quote.base64>\n{content}</quote.base64>"
    ).startswith(b"OK 1")
    assert client.ask('2 SYST:EXEC "id"').startswith(b"ERRor 2 [InsufficientAccess]")
    assert client.ask("3 QUIT") == b"OK 3"
    client.sock.settimeout(10)
    assert client.line() == b""

    events = _events(gateway)
    alice = [e for e in events if e.get("identity") == "labgate:user:alice"]
    kinds = [e["event"] for e in alice]
    assert kinds[0] == "connect" and kinds[-1] == "disconnect"
    fingerprint = alice[0]["fingerprint"]
    assert len(fingerprint) == 64 and all(e["fingerprint"] == fingerprint for e in alice)
    assert all(e["instrument"] == "qs5-plain" for e in alice)

    write = next(e for e in alice if e["event"] == "command" and e["command"] == "FILE:WRITE")
    assert write["decision"] == "allowed"
    body = f"\n{content}".encode()
    assert write["payload"] == {"bytes": len(body), "sha256": hashlib.sha256(body).hexdigest()}
    assert write["args"] == ["public_run_complete/rec.bin"]
    assert content[:40] not in gateway.gateway.audit.path.read_text()

    replies = [e for e in alice if e["event"] == "reply"]
    assert {r["command"] for r in replies} >= {"FILE:WRITE"}
    # QUIT with nothing outstanding is answered by the gateway, which keeps the connection warm.
    quit_ = next(e for e in alice if e["event"] == "command" and e["command"] == "QUIT")
    assert quit_["decision"] == "answered"
    assert kinds[-1] == "disconnect" and alice[-1]["reason"] == "client quit"
    assert all(r["status"] == "OK" and r["latency_ms"] >= 0 for r in replies)

    denied = next(e for e in alice if e["event"] == "command" and e["decision"] == "denied")
    assert denied["command"] == "SYSTEM:EXEC" and "Full" in denied["reason"]
    assert alice[-1]["upstream_kept"] is True
