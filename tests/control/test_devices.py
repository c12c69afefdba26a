"""Devices and ownership from the attacker's side: no device reaches another device's data."""

from __future__ import annotations

from typing import Any


def two_devices(api: Any) -> tuple[dict[str, str], dict[str, Any], dict[str, Any]]:
    admin = api.admin()
    owner = api.create_user(admin, "olga", "operator")
    first = api.create_device(owner, "bench-1", location={"latitude": 47.3769, "longitude": 8.5417})
    second = api.create_device(owner, "bench-2")
    return owner, first, second


def device_headers(api: Any, device: dict[str, Any]) -> dict[str, str]:
    return api.bearer(device["credentials"]["access_token"])


def test_device_reads_and_updates_only_itself(api: Any) -> None:
    _, first, second = two_devices(api)
    mine, theirs = first["device"]["id"], second["device"]["id"]
    headers = device_headers(api, first)
    assert api.get(f"/api/v1/devices/{mine}", headers=headers).status_code == 200
    assert api.get(f"/api/v1/devices/{theirs}", headers=headers).status_code == 404
    moved = api.put(
        f"/api/v1/devices/{theirs}/location",
        headers=headers,
        json={"latitude": 1.0, "longitude": 2.0},
    )
    assert moved.status_code == 404
    listed = api.get("/api/v1/devices", headers=headers).json()
    assert [d["id"] for d in listed] == [mine]
    assert api.post(f"/api/v1/devices/{theirs}/revoke", headers=headers).status_code == 404
    assert api.post(f"/api/v1/devices/{mine}/revoke", headers=headers).status_code == 403
    me = api.get("/api/v1/me", headers=headers).json()
    assert me == {
        "identity": f"labgate:device:{mine}",
        "kind": "device",
        "name": mine,
        "role": "device",
    }


def test_device_cannot_use_user_or_admin_endpoints(api: Any) -> None:
    _, first, _ = two_devices(api)
    headers = device_headers(api, first)
    assert api.get("/api/v1/users", headers=headers).status_code == 403
    assert api.post("/api/v1/devices", headers=headers, json={"name": "x"}).status_code == 403
    grant = {"principal": "labgate:user:olga", "instrument": "*", "level": "Full"}
    assert api.post("/api/v1/grants", headers=headers, json=grant).status_code == 403


def test_other_users_cannot_see_my_devices(api: Any) -> None:
    admin = api.admin()
    owner, first, _ = two_devices(api)
    other = api.create_user(admin, "mallory", "operator")
    device_id = first["device"]["id"]
    assert api.get("/api/v1/devices", headers=other).json() == []
    assert api.get(f"/api/v1/devices/{device_id}", headers=other).status_code == 404
    assert api.post(f"/api/v1/devices/{device_id}/revoke", headers=other).status_code == 404
    assert api.get(f"/api/v1/devices/{device_id}", headers=admin).status_code == 200
    assert len(api.get("/api/v1/devices", headers=owner).json()) == 2


def test_viewer_cannot_create_devices(api: Any) -> None:
    viewer = api.create_user(api.admin(), "vic", "viewer")
    assert api.post("/api/v1/devices", headers=viewer, json={"name": "x"}).status_code == 403


def test_revoking_a_device_ends_its_tokens_at_once(api: Any) -> None:
    owner, first, _ = two_devices(api)
    device_id = first["device"]["id"]
    headers = device_headers(api, first)
    assert api.post(f"/api/v1/devices/{device_id}/revoke", headers=owner).status_code == 200
    assert api.get("/api/v1/me", headers=headers).status_code == 401
    assert api.refresh(first["credentials"]["refresh_token"]).status_code == 401


def test_device_tokens_live_a_day_and_rotate(api: Any) -> None:
    _, first, _ = two_devices(api)
    assert first["credentials"]["expires_in"] == 24 * 3600
    rotated = api.refresh(first["credentials"]["refresh_token"])
    assert rotated.status_code == 200
    assert (
        api.get("/api/v1/me", headers=api.bearer(rotated.json()["access_token"])).json()["kind"]
        == "device"
    )


def test_public_locations_are_rounded_and_say_nothing_else(api: Any) -> None:
    two_devices(api)
    assert api.get("/api/v1/public/locations").json() == [{"latitude": 47.38, "longitude": 8.54}]


def test_disabling_a_user_ends_every_session(api: Any) -> None:
    admin = api.admin()
    victim = api.create_user(admin, "dora", "viewer")
    user_id = api.get("/api/v1/me", headers=victim).json()
    users = {u["username"]: u["id"] for u in api.get("/api/v1/users", headers=admin).json()}
    assert user_id["name"] == "dora"
    assert api.post(f"/api/v1/users/{users['dora']}/disable", headers=admin).status_code == 200
    assert api.get("/api/v1/me", headers=victim).status_code == 401
    refused = api.post(
        "/api/v1/auth/login", json={"username": "dora", "password": api.STRONG_PASSWORD}
    )
    assert refused.status_code == 401


def test_non_admins_cannot_manage_users_or_grants(api: Any) -> None:
    operator = api.create_user(api.admin(), "otto", "operator")
    assert api.get("/api/v1/users", headers=operator).status_code == 403
    created = api.post("/api/v1/users", headers=operator, json={"username": "x", "role": "admin"})
    assert created.status_code == 403
    grant = {"principal": "labgate:user:otto", "instrument": "*", "level": "Full"}
    assert api.post("/api/v1/grants", headers=operator, json=grant).status_code == 403


def test_grants_are_listed_to_their_principal_only(api: Any) -> None:
    admin = api.admin()
    viewer = api.create_user(admin, "gina", "viewer")
    for who in ("labgate:user:gina", "labgate:user:someone"):
        grant = {"principal": who, "instrument": "qs5-bench3", "level": "Observer"}
        assert api.post("/api/v1/grants", headers=admin, json=grant).status_code == 201
    duplicate = {"principal": "labgate:user:gina", "instrument": "qs5-bench3", "level": "Full"}
    assert api.post("/api/v1/grants", headers=admin, json=duplicate).status_code == 409
    mine = api.get("/api/v1/grants", headers=viewer).json()
    assert [g["principal"] for g in mine] == ["labgate:user:gina"]
    assert len(api.get("/api/v1/grants", headers=admin).json()) == 2
    bad = {"principal": "labgate:user:gina", "instrument": "qs5", "level": "Root"}
    assert api.post("/api/v1/grants", headers=admin, json=bad).status_code == 422
