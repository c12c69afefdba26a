"""Linking by code (RFC 8628), from the attacker's side: guessing, racing, and the approver."""

from __future__ import annotations

import concurrent.futures
from typing import Any

import pytest
from fastapi.testclient import TestClient

from labgate.auth.codes import USER_CODE_ALPHABET
from labgate.control import devicecodes, throttling
from labgate.control.settings import ControlSettings
from labgate.control.transactions import unit_of_work

from .conftest import Api, Clock, LiveServer
from .linking import peer

GRANT = "urn:ietf:params:oauth:grant-type:device_code"
DEVICE_AT = "203.0.113.20"


def ask(http: Any, **extra: Any) -> dict[str, Any]:
    body = {"model": "QS5", "serial": "272510042", "hostname": "bench-3", **extra}
    response = http.post("/api/v1/device-codes", json=body)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def poll(http: Any, code: dict[str, Any], csr: str) -> Any:
    return http.post(
        "/api/v1/device-codes/token",
        json={"grant_type": GRANT, "device_code": code["device_code"], "csr_pem": csr},
    )


def enter(http: Any, headers: dict[str, str], user_code: str) -> Any:
    return http.get(
        "/api/v1/device-codes/approve", params={"user_code": user_code}, headers=headers
    )


def approve(http: Any, headers: dict[str, str], user_code: str, yes: bool = True) -> Any:
    return http.post(
        "/api/v1/device-codes/approve",
        headers=headers,
        json={"user_code": user_code, "approve": yes},
    )


def wrong_half(user_code: str) -> str:
    """The same first half (the code's name), a different second half."""
    canonical = user_code.replace("-", "")
    tail = "".join(
        USER_CODE_ALPHABET[(USER_CODE_ALPHABET.index(c) + 1) % 20] for c in canonical[4:]
    )
    return canonical[:4] + tail


@pytest.fixture
def device(client: TestClient) -> TestClient:
    return peer(client, DEVICE_AT)


@pytest.fixture
def person(api: Api) -> dict[str, str]:
    return api.create_user(api.admin(), "olga", "operator")


def test_code_flow_end_to_end_shows_the_device_and_enrols_once(
    client: TestClient, device: TestClient, person: dict[str, str], make_csr: Any
) -> None:
    code = ask(device, local_address="192.168.7.9:46001")
    assert code["expires_in"] == 900 and code["interval"] == 5
    assert len(code["user_code"]) == 9 and code["user_code"][4] == "-"
    assert code["verification_uri_complete"].endswith(f"/link?user_code={code['user_code']}")
    _, csr = make_csr(code["device_id"])
    pending = poll(device, code, csr)
    assert pending.status_code == 400 and pending.json()["error"] == "authorization_pending"
    # Typed in lower case with spaces: normalised before lookup.
    typed = code["user_code"].lower().replace("-", " ")
    shown = enter(client, person, typed)
    assert shown.status_code == 200, shown.text
    info = shown.json()
    assert info["model"] == "QS5" and info["serial"] == "272510042"
    assert info["local_address"] == "192.168.7.9:46001" and info["public_address"] == DEVICE_AT
    assert info["device_id"] == code["device_id"] and info["requested_at"]
    assert approve(client, person, typed).json() == {
        "status": "approved",
        "device_id": code["device_id"],
    }
    assert approve(client, person, typed).status_code == 409
    enrolled = poll(device, code, csr)
    assert enrolled.status_code == 200, enrolled.text
    assert enrolled.json()["identity"] == f"labgate:device:{code['device_id']}"
    again = poll(device, code, csr)
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"
    assert approve(client, person, typed).status_code == 404  # a redeemed code is no more


def test_polling_too_fast_slows_the_device_down(device: TestClient, make_csr: Any) -> None:
    code = ask(device)
    _, csr = make_csr(code["device_id"])
    assert poll(device, code, csr).json()["error"] == "authorization_pending"
    fast = poll(device, code, csr).json()
    assert fast["error"] == "slow_down" and fast["interval"] == 10
    assert poll(device, code, csr).json()["interval"] == 15


def test_after_fifteen_minutes_the_code_is_over(
    client: TestClient, device: TestClient, person: dict[str, str], make_csr: Any, clock: Clock
) -> None:
    code = ask(device)
    clock.advance(901)
    _, csr = make_csr(code["device_id"])
    assert poll(device, code, csr).json()["error"] == "expired_token"


def test_a_denied_code_gets_access_denied(
    client: TestClient, device: TestClient, person: dict[str, str], make_csr: Any
) -> None:
    code = ask(device)
    assert approve(client, person, code["user_code"], yes=False).json()["status"] == "denied"
    _, csr = make_csr(code["device_id"])
    assert poll(device, code, csr).json()["error"] == "access_denied"


def test_five_wrong_entries_kill_a_code(
    client: TestClient, device: TestClient, person: dict[str, str], make_csr: Any
) -> None:
    code = ask(device)
    for _ in range(5):
        miss = enter(client, person, wrong_half(code["user_code"]))
        assert miss.status_code == 404 and miss.json()["code"] == "invalid_user_code"
    # Now even the right code is refused, and the device learns it is over.
    assert enter(client, person, code["user_code"]).status_code == 404
    _, csr = make_csr(code["device_id"])
    assert poll(device, code, csr).json()["error"] == "expired_token"


def test_guessing_is_bounded_per_address_and_per_account_and_success_resets_nothing(
    api: Api,
    client: TestClient,
    device: TestClient,
    person: dict[str, str],
    settings: ControlSettings,
) -> None:
    mine = ask(device)
    here = peer(client, "198.51.100.1")
    # A right entry first: it buys nothing later.
    assert enter(here, person, mine["user_code"]).status_code == 200
    statuses = [enter(here, person, "BBBB-BBBB").status_code for _ in range(12)]
    assert statuses == [404] * settings.device_code_wrong_per_address + [429] * 2
    # Even the right code is refused from there now, and with Retry-After.
    blocked = enter(here, person, mine["user_code"])
    assert blocked.status_code == 429 and int(blocked.headers["Retry-After"]) > 0
    # From other addresses the account's own limit (20) still holds, counted across them.
    counted = settings.device_code_wrong_per_address
    elsewhere = 2
    while counted < settings.device_code_wrong_per_account:
        there = peer(client, f"198.51.100.{elsewhere}")
        for _ in range(min(5, settings.device_code_wrong_per_account - counted)):
            assert enter(there, person, "CCCC-CCCC").status_code == 404
            counted += 1
        elsewhere += 1
    fresh = peer(client, "198.51.100.200")
    assert enter(fresh, person, "CCCC-CCCC").status_code == 429
    assert enter(fresh, person, mine["user_code"]).status_code == 429
    # Another person at a fresh address is not blocked by olga's guesses.
    other = api.create_user(api.admin(), "omar", "operator")
    assert enter(peer(client, "198.51.100.201"), other, mine["user_code"]).status_code == 200


def test_malformed_entries_count_as_wrong(
    client: TestClient, person: dict[str, str], settings: ControlSettings
) -> None:
    here = peer(client, "198.51.100.50")
    for typed in ["AEIOUAEI", "12345678", "B", "BCDF-GHJK-L"] * 3:
        if enter(here, person, typed).status_code == 429:
            break
    assert enter(here, person, "BCDFGHJK").status_code == 429


def test_a_disabled_or_locked_account_cannot_approve(
    api: Api,
    client: TestClient,
    device: TestClient,
    person: dict[str, str],
    settings: ControlSettings,
) -> None:
    code = ask(device)
    admin = api.admin()
    locked = api.create_user(admin, "lars", "operator")
    # Locked as failed logins spread over many addresses lock it: the account's own counter.
    runtime = client.app.state.runtime  # type: ignore[attr-defined]
    keys = throttling.LoginKeys.of("lars")
    with unit_of_work(runtime.sessions) as session:
        for _ in range(settings.lockout_threshold):
            throttling.record_failure(session, keys, settings, now=runtime.clock())
    refused = approve(client, locked, code["user_code"])
    assert refused.status_code == 423 and refused.json()["code"] == "account_locked"
    (olga,) = [
        u for u in client.get("/api/v1/users", headers=admin).json() if u["username"] == "olga"
    ]
    assert client.post(f"/api/v1/users/{olga['id']}/disable", headers=admin).status_code == 200
    assert approve(client, person, code["user_code"]).status_code == 401
    viewer = api.create_user(admin, "vera", "viewer")
    assert approve(client, viewer, code["user_code"]).status_code == 403


def test_an_approver_disabled_before_the_poll_gets_the_device_nothing(
    api: Api, client: TestClient, device: TestClient, person: dict[str, str], make_csr: Any
) -> None:
    code = ask(device)
    assert approve(client, person, code["user_code"]).status_code == 200
    admin = api.admin()
    (olga,) = [
        u for u in client.get("/api/v1/users", headers=admin).json() if u["username"] == "olga"
    ]
    client.post(f"/api/v1/users/{olga['id']}/disable", headers=admin)
    _, csr = make_csr(code["device_id"])
    assert poll(device, code, csr).json()["error"] == "access_denied"


def test_a_bad_csr_leaves_the_code_approved(
    client: TestClient, device: TestClient, person: dict[str, str], make_csr: Any
) -> None:
    code = ask(device)
    approve(client, person, code["user_code"])
    _, wrong = make_csr("someone-else")
    assert poll(device, code, wrong).status_code == 422
    _, csr = make_csr(code["device_id"])
    assert poll(device, code, csr).status_code == 200


def test_codes_per_address_are_limited(device: TestClient, settings: ControlSettings) -> None:
    for _ in range(settings.device_codes_per_address):
        ask(device)
    over = device.post("/api/v1/device-codes", json={"model": "a", "serial": "b", "hostname": "c"})
    assert over.status_code == 429


def test_unknown_grant_type_and_device_code(device: TestClient, make_csr: Any) -> None:
    code = ask(device)
    _, csr = make_csr(code["device_id"])
    other = device.post(
        "/api/v1/device-codes/token",
        json={"grant_type": "password", "device_code": code["device_code"], "csr_pem": csr},
    )
    assert other.json()["error"] == "unsupported_grant_type"
    assert poll(device, {"device_code": "x" * 43}, csr).json()["error"] == "invalid_grant"


@pytest.mark.slow
def test_fifty_parallel_polls_of_one_approved_code_give_one_enrolment(
    live_server: LiveServer, make_csr: Any
) -> None:
    with live_server.api() as api:
        admin = api.admin()
        person = api.create_user(admin, "olga", "operator")
        code = ask(api)
        assert approve(api, person, code["user_code"]).status_code == 200
        _, csr = make_csr(code["device_id"])

    def one(_: int) -> tuple[int, str]:
        with live_server.client(timeout=60) as http:
            response = poll(http, code, csr)
            body = response.json()
            return response.status_code, body.get("error") or body.get("serial", "")

    with concurrent.futures.ThreadPoolExecutor(max_workers=50) as pool:
        results = list(pool.map(one, range(50)))
    winners = [serial for status, serial in results if status == 200]
    assert len(winners) == 1, results
    assert sorted({err for status, err in results if status != 200}) == ["invalid_grant"]
    with live_server.api() as api:
        certificates = api.get(
            "/api/v1/certificates",
            headers=admin,
            params={"identity": f"labgate:device:{code['device_id']}"},
        ).json()
        assert len(certificates) == 1


def test_approval_and_redemption_are_compare_and_set(
    client: TestClient, device: TestClient, person: dict[str, str], make_csr: Any
) -> None:
    code = ask(device)
    approve(client, person, code["user_code"])
    _, csr = make_csr(code["device_id"])
    assert poll(device, code, csr).status_code == 200
    # A late approval cannot bring the redeemed code back.
    assert approve(client, person, code["user_code"]).status_code == 404
    assert poll(device, code, csr).json()["error"] == "invalid_grant"
    assert devicecodes.MAX_WRONG_PER_CODE == 5


def test_codes_are_stored_only_as_hashes(
    client: TestClient, device: TestClient, person: dict[str, str], settings: ControlSettings
) -> None:
    import sqlalchemy as sa

    code = ask(device)
    approve(client, person, code["user_code"])
    canonical = code["user_code"].replace("-", "")
    engine = sa.create_engine(settings.resolved_database_url)
    with engine.connect() as connection:
        for table in sa.inspect(engine).get_table_names():
            for row in connection.execute(sa.text(f'SELECT * FROM "{table}"')):
                text = repr(tuple(row))
                assert code["device_code"] not in text and canonical not in text, table
    engine.dispose()


@pytest.mark.slow
def test_parallel_guesses_at_one_code_are_compared_at_most_five_times(
    settings: ControlSettings, clock: Clock
) -> None:
    import ssl

    import httpx
    import sqlalchemy as sa

    from labgate.control.http.serving import run_in_thread

    # Address and account limits out of the way: this is about the code's own five tries.
    roomy = settings.model_copy(
        update={"device_code_wrong_per_address": 1000, "device_code_wrong_per_account": 1000}
    )
    with run_in_thread(roomy, clock=clock) as running:
        context = ssl.create_default_context(cafile=running.ca_root)
        with httpx.Client(base_url=running.url, verify=context, timeout=60) as http:
            api = Api(http, roomy)
            person = api.create_user(api.admin(), "olga", "operator")
            code = ask(http)
        canonical = code["user_code"].replace("-", "")
        tails = [t for t in ("BBBB", "CCCC", "DDDD", "FFFF") if t != canonical[4:]][:3]
        guesses = [canonical[:4] + tail for tail in tails] * 10

        def one(typed: str) -> int:
            with httpx.Client(base_url=running.url, verify=context, timeout=60) as http:
                return int(enter(http, person, typed).status_code)

        with concurrent.futures.ThreadPoolExecutor(max_workers=30) as pool:
            statuses = list(pool.map(one, guesses))
        assert statuses == [404] * 30
        engine = sa.create_engine(roomy.resolved_database_url)
        with engine.connect() as connection:
            (tries,) = connection.execute(sa.text("SELECT wrong_entries FROM device_codes")).one()
        engine.dispose()
        assert tries == 5
        with httpx.Client(base_url=running.url, verify=context) as http:
            assert enter(http, person, code["user_code"]).status_code == 404
