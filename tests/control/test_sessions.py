"""Login, refresh rotation, reuse detection, grace, logout and password changes, attacked."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient


def test_one_time_password_session_may_only_change_its_password(api: Any) -> None:
    tokens = api.login("admin", api.admin_password)
    assert tokens["password_change_required"] is True
    headers = api.bearer(tokens["access_token"])
    for method, path in (
        ("GET", "/api/v1/me"),
        ("GET", "/api/v1/users"),
        ("GET", "/api/v1/devices"),
        ("GET", "/api/v1/grants"),
    ):
        response = api.request(method, path, headers=headers)
        assert response.status_code == 403
        assert response.json()["code"] == "password_change_required"
    # Its refresh token keeps the restriction: rotating does not escape it.
    rotated = api.refresh(tokens["refresh_token"]).json()
    assert rotated["password_change_required"] is True
    assert api.get("/api/v1/me", headers=api.bearer(rotated["access_token"])).status_code == 403


def test_password_change_gives_a_full_session_and_ends_the_old_one(api: Any) -> None:
    restricted = api.login("admin", api.admin_password)
    full = api.admin_tokens()
    assert full["password_change_required"] is False
    assert api.get("/api/v1/me", headers=api.bearer(full["access_token"])).json()["role"] == "admin"
    old = api.get("/api/v1/me", headers=api.bearer(restricted["access_token"]))
    assert old.status_code == 401
    assert api.refresh(restricted["refresh_token"]).status_code == 401


def test_password_failing_the_policy_in_force_forces_a_change(api: Any, clock: Any) -> None:
    api.admin_tokens()  # now api.STRONG_PASSWORD (NIST-compliant)
    from labgate.control.http.app import create_app

    enhanced = api.settings.model_copy(update={"password_policy": "enhanced"})
    with TestClient(create_app(enhanced, clock=clock)) as strict:
        # The stored password has no upper case, digit or special character.
        tokens = type(api)(strict, enhanced).login("admin", api.STRONG_PASSWORD)
        assert tokens["password_change_required"] is True
        me = strict.get("/api/v1/me", headers=api.bearer(tokens["access_token"]))
        assert me.status_code == 403


def test_policy_cannot_be_bypassed_through_the_api(api: Any) -> None:
    one_time = api.admin_password
    tokens = api.login("admin", one_time)
    headers = api.bearer(tokens["access_token"])
    refused = {
        "short-password": "too_short",
        "frenchrevolution": "common_password",
        "Password1234567890!": "common_password_variant",
        "admin-admin-admin-admin": "contains_username",
        one_time: "unchanged",
    }
    for candidate, reason in refused.items():
        response = api.post(
            "/api/v1/auth/password",
            headers=headers,
            json={"old_password": one_time, "new_password": candidate},
        )
        assert response.status_code == 422, candidate
        assert response.json()["code"] == "password_rejected"
        assert f"({reason})" in response.json()["message"]
    still = api.get("/api/v1/me", headers=headers)
    assert still.status_code == 403  # nothing changed: still a password-change-only session


def test_wrong_old_password_does_not_change_it(api: Any) -> None:
    headers = api.bearer(api.login("admin", api.admin_password)["access_token"])
    response = api.post(
        "/api/v1/auth/password",
        headers=headers,
        json={"old_password": "not the old one at all", "new_password": api.STRONG_PASSWORD},
    )
    assert response.status_code == 401
    assert api.login("admin", api.admin_password)["password_change_required"]


def test_unknown_user_and_wrong_password_look_the_same(api: Any) -> None:
    unknown = api.post("/api/v1/auth/login", json={"username": "nobody", "password": "x" * 20})
    wrong = api.post("/api/v1/auth/login", json={"username": "admin", "password": "x" * 20})
    assert unknown.status_code == wrong.status_code == 401
    assert unknown.json() == wrong.json()


def test_logout_revokes_the_family_and_its_access_token(api: Any) -> None:
    tokens = api.admin_tokens()
    headers = api.bearer(tokens["access_token"])
    assert api.post("/api/v1/auth/logout", headers=headers).status_code == 200
    assert api.get("/api/v1/me", headers=headers).status_code == 401
    assert api.refresh(tokens["refresh_token"]).status_code == 401


ENHANCED_REFUSALS = {
    "Sh0rt!pass": "too_short",
    "alllowercase-with-digit-1": "missing_uppercase",
    "ALLUPPERCASE-WITH-DIGIT-1": "missing_lowercase",
    "No-Digits-In-This-One": "missing_digit",
    "NoSpecial1234567Chars": "missing_special",
}


def test_enhanced_policy_is_enforced_through_the_api(api: Any, clock: Any) -> None:
    from labgate.control.http.app import create_app

    enhanced = api.settings.model_copy(update={"password_policy": "enhanced"})
    with TestClient(create_app(enhanced, clock=clock)) as client:
        strict = type(api)(client, enhanced)
        one_time = strict.admin_password
        headers = strict.bearer(strict.login("admin", one_time)["access_token"])
        for candidate, reason in ENHANCED_REFUSALS.items():
            response = client.post(
                "/api/v1/auth/password",
                headers=headers,
                json={"old_password": one_time, "new_password": candidate},
            )
            assert response.status_code == 422, candidate
            assert f"({reason})" in response.json()["message"]
        accepted = client.post(
            "/api/v1/auth/password",
            headers=headers,
            json={"old_password": one_time, "new_password": "Violet-Staple-Hammock-42"},
        )
        assert accepted.status_code == 200, accepted.text


def test_unknown_user_costs_as_much_as_a_wrong_password(api: Any, clock: Any) -> None:
    """Timing must not tell which names exist (production argon2 parameters)."""
    import statistics
    import time

    from labgate.control.http.app import create_app

    production = api.settings.model_copy(
        update={"argon2_time_cost": None, "argon2_memory_kib": None, "argon2_parallelism": None}
    )
    admin = api.admin()
    api.post("/api/v1/users", headers=admin, json={"username": "real-user", "role": "viewer"})
    with TestClient(create_app(production, clock=clock)) as client:
        reset = client.post(  # re-hash the user's password with the production parameters
            f"/api/v1/users/{client.get('/api/v1/users', headers=admin).json()[-1]['id']}"
            "/password-reset",
            headers=admin,
        )
        assert reset.status_code == 200

        def median_login(username: str) -> float:
            times = []
            for _ in range(3):
                began = time.perf_counter()
                response = client.post(
                    "/api/v1/auth/login",
                    json={"username": username, "password": "wrong password for timing"},
                )
                times.append(time.perf_counter() - began)
                assert response.status_code == 401
            return statistics.median(times)

        known, unknown = median_login("real-user"), median_login("no-such-user")
    # Without the dummy verification an unknown name answers ~100x faster; allow wide noise.
    assert unknown > known / 3, (known, unknown)


def test_a_login_ends_after_user_session_max_seconds_however_often_it_refreshes(
    api: Any, clock: Any
) -> None:
    tokens = api.admin_tokens()
    limit = api.settings.user_session_max_seconds
    assert limit == 12 * 3600
    lived = 0
    while lived + 3600 < limit:  # refresh every hour, well inside the 2 h refresh lifetime
        clock.advance(3600)
        lived += 3600
        response = api.refresh(tokens["refresh_token"])
        assert response.status_code == 200, (lived, response.text)
        tokens = response.json()
    # The last pair cannot outlive the login: its access token stops at the end too.
    me = api.get("/api/v1/me", headers=api.bearer(tokens["access_token"]))
    assert me.status_code == 200
    clock.advance(limit - lived)
    ended = api.refresh(tokens["refresh_token"])
    assert ended.status_code == 401
    assert "(session_expired)" in ended.json()["message"]
    assert api.get("/api/v1/me", headers=api.bearer(tokens["access_token"])).status_code == 401
    # Logging in again starts a new one.
    assert api.login("admin", api.STRONG_PASSWORD)["access_token"]


def test_a_device_refreshes_past_the_user_session_limit(api: Any, clock: Any) -> None:
    device = api.create_device(api.admin(), "field-unit")
    tokens = device["credentials"]
    for _ in range(3):  # 3 x 20 h: far beyond a user's 12 h
        clock.advance(20 * 3600)
        response = api.refresh(tokens["refresh_token"])
        assert response.status_code == 200, response.text
        tokens = response.json()
