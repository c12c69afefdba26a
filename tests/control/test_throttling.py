"""Brute force from the attacker's side: growing delays, a lock at 100, the peer address only."""

from __future__ import annotations

from typing import Any

WRONG = {"username": "admin", "password": "definitely not the password"}


def test_failed_logins_get_growing_delays_with_retry_after(api: Any, clock: Any) -> None:
    for _ in range(5):  # the free failures
        assert api.post("/api/v1/auth/login", json=WRONG).status_code == 401
    assert api.post("/api/v1/auth/login", json=WRONG).status_code == 401  # 6th: counted
    throttled = api.post("/api/v1/auth/login", json=WRONG)
    assert throttled.status_code == 429
    assert throttled.json()["code"] == "throttled"
    assert int(throttled.headers["Retry-After"]) >= 1
    # While throttled, even the right password is not looked at.
    right = api.post("/api/v1/auth/login", json={**WRONG, "password": api.admin_password})
    assert right.status_code == 429
    clock.advance(2)
    assert api.login("admin", api.admin_password)["password_change_required"] is True


def test_account_locks_after_one_hundred_failures_until_reset(api: Any, clock: Any) -> None:
    admin = api.admin()  # a full admin session, made before the attack
    api.post("/api/v1/users", headers=admin, json={"username": "victim", "role": "viewer"})
    attempt = {"username": "victim", "password": "guess number one two three"}
    for _ in range(100):
        clock.advance(15 * 60 + 1)  # wait out every delay: only the lock stops this attacker
        assert api.post("/api/v1/auth/login", json=attempt).status_code == 401
    clock.advance(3600)
    locked = api.post("/api/v1/auth/login", json=attempt)
    assert locked.status_code == 423
    assert locked.json()["code"] == "account_locked"
    from labgate.control import audit
    from labgate.control.database import make_engine, session_factory

    engine = make_engine(api.settings.resolved_database_url, pool_size=1)
    with session_factory(engine)() as session:
        assert [e.subject for e in audit.events(session, kind="login.locked")] == [
            "labgate:user:victim"
        ]
    engine.dispose()
    admin = api.bearer(api.login("admin", api.STRONG_PASSWORD)["access_token"])  # hours later
    users = {u["username"]: u["id"] for u in api.get("/api/v1/users", headers=admin).json()}
    reset = api.post(f"/api/v1/users/{users['victim']}/password-reset", headers=admin)
    assert reset.status_code == 200
    tokens = api.login("victim", reset.json()["one_time_password"])
    assert tokens["password_change_required"] is True


def test_address_throttle_ignores_x_forwarded_for(api: Any) -> None:
    # Spread guesses over many accounts and spoof a new forwarded address each time: the
    # socket peer is the same, so its counter still grows and throttles.
    statuses = []
    for n in range(22):
        response = api.post(
            "/api/v1/auth/login",
            json={"username": f"user{n}", "password": "spray password one two"},
            headers={"X-Forwarded-For": f"203.0.113.{n}", "X-Real-IP": f"198.51.100.{n}"},
        )
        statuses.append(response.status_code)
    assert statuses[:21] == [401] * 21
    assert statuses[21] == 429


def test_real_server_keys_on_the_socket_peer_not_forwarded_headers(live_server: Any) -> None:
    """Through uvicorn itself, which would read X-Forwarded-For from a loopback peer."""
    with live_server.api() as api:
        statuses = []
        for n in range(22):
            response = api.post(
                "/api/v1/auth/login",
                json={"username": f"user{n}", "password": "spray password one two"},
                headers={"X-Forwarded-For": f"203.0.113.{n}", "Forwarded": f"for=198.51.100.{n}"},
            )
            statuses.append(response.status_code)
    assert statuses[:21] == [401] * 21
    assert statuses[21] == 429
