"""Refresh-token rotation attacked: reuse, lost responses, expiry, twenty at once."""

from __future__ import annotations

import threading
from typing import Any

from sqlalchemy import func, select

from labgate.control import audit
from labgate.control.database import make_engine, session_factory
from labgate.control.tables import RefreshToken


def test_refresh_reuse_revokes_the_family_and_is_audited(api: Any, clock: Any) -> None:
    first = api.admin_tokens()
    second = api.refresh(first["refresh_token"]).json()
    third = api.refresh(second["refresh_token"]).json()  # second's successor is now used
    stolen = api.refresh(first["refresh_token"])
    assert stolen.status_code == 401
    assert stolen.json()["code"] == "refresh_token_reused"
    # Every token of the family is dead, access tokens included, at once.
    assert api.refresh(third["refresh_token"]).status_code == 401
    assert api.get("/api/v1/me", headers=api.bearer(third["access_token"])).status_code == 401
    engine = make_engine(api.settings.resolved_database_url, pool_size=1)
    with session_factory(engine)() as session:
        events = audit.events(session, kind="refresh.reuse")
    engine.dispose()
    assert len(events) == 1
    assert events[0].subject == "labgate:user:admin"


def test_grace_replays_the_same_pair_until_the_successor_is_used(api: Any) -> None:
    first = api.admin_tokens()
    a = api.refresh(first["refresh_token"])
    b = api.refresh(first["refresh_token"])  # response "lost": the client retries
    assert a.status_code == b.status_code == 200
    assert a.json() == b.json()
    api.refresh(a.json()["refresh_token"])  # the successor is used now
    late = api.refresh(first["refresh_token"])
    assert late.status_code == 401
    assert late.json()["code"] == "refresh_token_reused"


def test_grace_ends_after_thirty_seconds(api: Any, clock: Any) -> None:
    first = api.admin_tokens()
    assert api.refresh(first["refresh_token"]).status_code == 200
    clock.advance(31)
    late = api.refresh(first["refresh_token"])
    assert late.json()["code"] == "refresh_token_reused"


def test_expired_and_unknown_refresh_tokens_are_refused(api: Any, clock: Any) -> None:
    tokens = api.admin_tokens()
    assert api.refresh("A" * 43).status_code == 401
    assert api.refresh("").status_code == 422
    clock.advance(2 * 3600 + 1)
    assert api.refresh(tokens["refresh_token"]).status_code == 401


def test_twenty_concurrent_refreshes_mint_exactly_one_pair(live_server: Any) -> None:
    settings = live_server.settings
    with live_server.api() as api:
        tokens = api.admin_tokens()
    barrier = threading.Barrier(20)
    results: list[tuple[int, dict[str, Any]]] = []
    lock = threading.Lock()

    def attempt() -> None:
        with live_server.api(timeout=60) as api:
            barrier.wait()
            response = api.refresh(tokens["refresh_token"])
        with lock:
            results.append((response.status_code, response.json()))

    threads = [threading.Thread(target=attempt) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=90)
    assert len(results) == 20
    pairs = {body["refresh_token"] for status, body in results if status == 200}
    refusals = [body for status, body in results if status != 200]
    assert len(pairs) == 1, pairs
    assert all(body["code"] == "refresh_token_reused" for body in refusals)
    engine = make_engine(settings.resolved_database_url, pool_size=1)
    with session_factory(engine)() as session:
        family = session.scalar(
            select(RefreshToken.family_id)
            .where(RefreshToken.subject == "labgate:user:admin")
            .order_by(RefreshToken.id.desc())
        )
        minted = session.scalar(
            select(func.count()).select_from(RefreshToken).where(RefreshToken.family_id == family)
        )
    engine.dispose()
    assert minted == 2  # the login's token and exactly one successor
