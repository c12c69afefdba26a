"""A linked agent keeps itself linked against the real server: renewal (a new key each time),
refresh over the new certificate, and backoff while the server is away."""

from __future__ import annotations

import asyncio
import stat
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from labgate.agent.errors import ServerAway, ServerRefused
from labgate.agent.store import DEVICE, Store
from labgate.agent.upkeep import Upkeep

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]


def link_by_code(server: Any, start_agent: Any) -> Any:
    agent = start_agent("--link-code")
    admin = server.admin()
    with server.client() as http:
        answer = http.post(
            "/api/v1/device-codes/approve",
            json={"user_code": agent.ready["code"], "approve": True},
            headers=admin,
        )
        assert answer.status_code == 200, answer.text
    agent.wait_for("linked")
    agent.stop()
    return agent


def key_bytes(data: Path) -> bytes:
    pem = (data / DEVICE).read_bytes()
    return pem[pem.index(b"-----BEGIN PRIVATE KEY") :]


def test_renewal_brings_a_new_key_and_certificate_and_refresh_binds_to_it(
    server: Any, start_agent: Any
) -> None:
    agent = link_by_code(server, start_agent)
    store = Store(agent.data)
    linked = store.linked()
    assert linked is not None
    old_key, old_tokens = key_bytes(agent.data), store.tokens()
    upkeep = Upkeep(store, server.url, linked)
    renewed = asyncio.run(upkeep.renew())
    assert renewed.serial != linked.serial
    assert key_bytes(agent.data) != old_key
    assert stat.S_IMODE((agent.data / DEVICE).stat().st_mode) == 0o600
    certificate = x509.load_pem_x509_certificate((agent.data / DEVICE).read_bytes())
    assert format(certificate.serial_number, "x") == renewed.serial
    assert store.linked() == renewed
    fresh = asyncio.run(upkeep.refresh())
    assert fresh.refresh_token != old_tokens.refresh_token
    # The old refresh token is spent (its grace aside, a later reuse ends the family).
    with server.client() as http:
        me = http.get("/api/v1/me", headers={"Authorization": f"Bearer {fresh.access_token}"})
        # Without the device certificate a bound token is refused.
        assert me.status_code == 401


def test_a_server_away_is_reported_as_such_and_retried_with_growing_waits(
    server: Any, start_agent: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    agent = link_by_code(server, start_agent)
    store = Store(agent.data)
    linked = store.linked()
    assert linked is not None
    waits: list[float] = []

    async def record(seconds: float) -> None:
        waits.append(seconds)
        if len(waits) >= 8:
            raise asyncio.CancelledError

    # Nothing listens on port 9. The loop's own sleep is counted, not asyncio's: patching
    # asyncio.sleep would also stall the in-process server's loop.
    upkeep = Upkeep(store, "https://127.0.0.1:9", linked, sleep=record)
    with pytest.raises(ServerAway):
        asyncio.run(upkeep.refresh())
    monkeypatch.setattr("labgate.agent.upkeep.refresh_due", lambda *a, **k: linked.not_before)
    with pytest.raises(asyncio.CancelledError):
        asyncio.run(upkeep.run_forever())
    retries = waits[1::2]  # each round: the wait until due (0), then the backoff
    assert all(w <= 300.0 for w in retries)
    assert max(retries) > min(retries)


def test_a_revoked_device_cannot_renew(server: Any, start_agent: Any) -> None:
    agent = link_by_code(server, start_agent)
    store = Store(agent.data)
    linked = store.linked()
    assert linked is not None
    with server.client() as http:
        revoked = http.post(f"/api/v1/devices/{linked.device_id}/revoke", headers=server.admin())
        assert revoked.status_code == 200, revoked.text
    with pytest.raises(ServerRefused) as refused:
        asyncio.run(Upkeep(store, server.url, linked).renew())
    assert refused.value.status in (401, 403)
