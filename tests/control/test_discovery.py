"""Linking on the local network, from the attacker's side: each way in fails."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from cryptography import x509
from fastapi.testclient import TestClient

from labgate.control.settings import ControlSettings

from .conftest import Api, Clock
from .linking import FakeAgent, link, peer

HOME = "203.0.113.7"  # the person's and the device's public address
ELSEWHERE = "198.51.100.9"


@pytest.fixture
def home(client: TestClient) -> TestClient:
    return peer(client, HOME)


@pytest.fixture
def person(api: Api, home: TestClient) -> dict[str, str]:
    """An operator's session, logged in from home."""
    return api.create_user(api.admin(), "olga", "operator")


def discovered(http: TestClient, headers: dict[str, str]) -> dict[str, Any]:
    response = http.get("/api/v1/discovery", headers=headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_the_whole_exchange_ends_with_a_bound_device_certificate(
    home: TestClient, person: dict[str, str], make_csr: Any
) -> None:
    agent = FakeAgent(home)
    first = agent.announce()
    assert first.status_code == 201 and first.json()["public_address"] == HOME
    assert agent.announce().status_code == 200
    listing = discovered(home, person)
    assert listing["crowded"] is False
    (shown,) = listing["devices"]
    assert shown["instance_id"] == agent.instance_id
    assert shown["link_page"] == f"http://192.168.1.20:46001/link?instance_id={agent.instance_id}"
    queued = link(home, person, agent.instance_id, agent.secret)
    assert queued.status_code == 202, queued.text
    verification = agent.fetch().json()
    assert agent.proof_ok(verification)
    assert verification["linked_by"] == "labgate:user:olga"
    _, csr = make_csr(verification["device_id"])
    enrolled = agent.complete(verification, csr)
    assert enrolled.status_code == 201, enrolled.text
    body = enrolled.json()
    certificate = x509.load_pem_x509_certificate(body["certificate_pem"].encode())
    san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [n.value for n in san] == [f"labgate:device:{verification['device_id']}"]
    # Owned by the person who linked it, and the listing no longer shows it.
    devices = home.get("/api/v1/devices", headers=person).json()
    assert [d["id"] for d in devices] == [verification["device_id"]]
    assert discovered(home, person)["devices"] == []
    state = home.get(f"/api/v1/discovery/{agent.instance_id}/link", headers=person).json()
    assert state == {
        "instance_id": agent.instance_id,
        "state": "linked",
        "device_id": body["device_id"],
    }
    # The token is bound to the certificate: without it, it is refused.
    bare = home.get("/api/v1/me", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert bare.status_code == 401


def test_a_person_at_another_public_address_sees_nothing_and_cannot_link(
    client: TestClient, home: TestClient, person: dict[str, str]
) -> None:
    agent = FakeAgent(home)
    agent.announce()
    away = peer(client, ELSEWHERE)
    assert discovered(away, person)["devices"] == []
    refused = link(away, person, agent.instance_id, agent.secret)
    assert refused.status_code == 404 and refused.json()["code"] == "not_discoverable"
    assert agent.fetch().status_code == 204  # nothing reached the agent


def test_forged_forwarding_headers_do_not_move_a_caller(
    client: TestClient, home: TestClient, person: dict[str, str]
) -> None:
    agent = FakeAgent(home)
    agent.announce()
    away = peer(client, ELSEWHERE)
    for headers in (
        {"X-Forwarded-For": HOME},
        {"Forwarded": f"for={HOME}"},
        {"X-Real-IP": HOME},
        {"X-Forwarded-For": f"{HOME}, {HOME}"},
    ):
        assert discovered(away, {**person, **headers})["devices"] == []
        refused = away.post(
            f"/api/v1/discovery/{agent.instance_id}/link",
            headers={**person, **headers},
            json={"instance_id": agent.instance_id, "secret": agent.secret},
        )
        assert refused.status_code == 404
    # Nor can a forged header put an attacker's device into the victim's bucket.
    intruder = FakeAgent(away)
    assert intruder.announce().status_code == 201
    intruder_again = away.post(
        "/api/v1/discovery/announce",
        headers={"X-Forwarded-For": HOME},
        json={
            "instance_id": intruder.instance_id,
            "local_address": intruder.local,
            "hostname": "x",
            "model": "x",
            "serial": "x",
            "announce_token": intruder.token,
        },
    )
    assert intruder_again.json()["public_address"] == ELSEWHERE
    assert [d["instance_id"] for d in discovered(home, person)["devices"]] == [agent.instance_id]


def test_two_devices_at_one_public_address_show_none(
    home: TestClient, person: dict[str, str]
) -> None:
    mine, stranger = FakeAgent(home), FakeAgent(home, local="192.168.1.66:46001")
    mine.announce()
    stranger.announce()
    listing = discovered(home, person)
    assert listing == {"public_address": HOME, "crowded": True, "devices": []}
    refused = link(home, person, mine.instance_id, mine.secret)
    assert refused.status_code == 404 and refused.json()["code"] == "not_discoverable"


def test_a_wrong_instance_id_gets_nowhere(home: TestClient, person: dict[str, str]) -> None:
    agent = FakeAgent(home)
    agent.announce()
    other = FakeAgent(home).instance_id
    assert link(home, person, other, agent.secret).json()["code"] == "not_discoverable"
    mismatched = home.post(
        f"/api/v1/discovery/{agent.instance_id}/link",
        headers=person,
        json={"instance_id": other, "secret": agent.secret},
    )
    assert mismatched.status_code == 422 and mismatched.json()["code"] == "instance_mismatch"


def test_nobody_but_the_agent_picks_up_its_verification(
    home: TestClient, person: dict[str, str]
) -> None:
    agent = FakeAgent(home)
    agent.announce()
    link(home, person, agent.instance_id, agent.secret)
    thief = FakeAgent(home)
    thief.instance_id = agent.instance_id
    thief.token = "x" * 43
    stolen = thief.fetch()
    assert stolen.status_code == 404 and stolen.json()["code"] == "instance_mismatch"
    # Nor can anyone take over the instance id by announcing it (with or without a token).
    hijack = thief.announce(announce_token=None)
    assert hijack.status_code == 409 and hijack.json()["code"] == "instance_mismatch"
    assert thief.announce().json()["code"] == "instance_mismatch"
    assert agent.fetch().status_code == 200


def test_a_wrong_secret_ends_discovery_so_a_second_guess_is_refused(
    home: TestClient, person: dict[str, str]
) -> None:
    agent = FakeAgent(home)
    agent.announce()
    guess = FakeAgent(home).secret
    assert link(home, person, agent.instance_id, guess).status_code == 202
    verification = agent.fetch().json()
    assert not agent.proof_ok(verification)
    assert agent.refuse(verification).json() == {"state": "ended", "reason": "secret_mismatch"}
    second = link(home, person, agent.instance_id, agent.secret)
    assert second.status_code == 410 and second.json()["code"] == "secret_mismatch"
    assert agent.announce().json()["code"] == "secret_mismatch"
    assert agent.fetch().json()["code"] == "secret_mismatch"
    assert discovered(home, person)["devices"] == []


def test_only_one_verification_waits_at_a_time(home: TestClient, person: dict[str, str]) -> None:
    agent = FakeAgent(home)
    agent.announce()
    assert link(home, person, agent.instance_id, agent.secret).status_code == 202
    again = link(home, person, agent.instance_id, FakeAgent(home).secret)
    assert again.status_code == 409 and again.json()["code"] == "verification_pending"


def test_a_replayed_verification_is_refused(
    home: TestClient, person: dict[str, str], make_csr: Any
) -> None:
    agent = FakeAgent(home)
    agent.announce()
    link(home, person, agent.instance_id, agent.secret)
    verification = agent.fetch().json()
    _, csr = make_csr(verification["device_id"])
    assert agent.complete(verification, csr).status_code == 201
    replay = agent.complete(verification, csr)
    assert replay.status_code == 410 and replay.json()["code"] == "already_linked"


def test_an_expired_verification_is_refused(
    home: TestClient, person: dict[str, str], make_csr: Any, clock: Clock
) -> None:
    agent = FakeAgent(home)
    agent.announce()
    link(home, person, agent.instance_id, agent.secret)
    verification = agent.fetch().json()
    clock.advance(61)
    agent.announce()
    _, csr = make_csr(verification["device_id"])
    late = agent.complete(verification, csr)
    assert late.status_code == 410 and late.json()["code"] == "verification_expired"
    assert agent.fetch().status_code == 204
    state = home.get(f"/api/v1/discovery/{agent.instance_id}/link", headers=person).json()
    assert state["state"] == "expired"


def test_a_verification_answers_only_the_device_id_it_named(
    home: TestClient, person: dict[str, str], make_csr: Any
) -> None:
    agent = FakeAgent(home)
    agent.announce()
    link(home, person, agent.instance_id, agent.secret)
    verification = agent.fetch().json()
    _, csr = make_csr("d-0000000000000000")
    wrong = agent.complete(verification, csr)
    assert wrong.status_code == 422
    # The refusal rolled everything back: the right CSR still works.
    _, csr = make_csr(verification["device_id"])
    assert agent.complete(verification, csr).status_code == 201


def test_the_server_bounds_a_presence(
    api: Api, home: TestClient, person: dict[str, str], clock: Clock, settings: ControlSettings
) -> None:
    agent = FakeAgent(home)
    agent.announce()
    clock.advance(settings.discovery_presence_seconds + 1)
    assert discovered(home, person)["devices"] == []  # silent too long: not listed
    agent.announce()
    assert len(discovered(home, person)["devices"]) == 1
    for _ in range(settings.discovery_lifetime_seconds // 20):
        clock.advance(20)
        agent.announce()
    over = agent.announce()
    assert over.status_code == 410 and over.json()["code"] == "window_closed"
    again = api.bearer(api.login("olga", api.STRONG_PASSWORD)["access_token"])
    assert discovered(home, again)["devices"] == []


def test_an_address_cannot_flood_presence(home: TestClient, settings: ControlSettings) -> None:
    for _ in range(settings.discovery_instances_per_address):
        assert FakeAgent(home).announce().status_code == 201
    assert FakeAgent(home).announce().status_code == 429


@pytest.mark.parametrize(
    "local",
    ["8.8.8.8:80", "example.com:80", "192.168.1.2", "fd00::1:80", "100.64.0.1:80", "0.0.0.0:80"],
)
def test_an_agent_can_only_announce_a_local_page(home: TestClient, local: str) -> None:
    response = FakeAgent(home, local=local).announce()
    assert response.status_code == 422, response.text


def test_a_viewer_or_a_device_cannot_list_or_link(api: Api, home: TestClient) -> None:
    viewer = api.create_user(api.admin(), "vera", "viewer")
    agent = FakeAgent(home)
    agent.announce()
    assert home.get("/api/v1/discovery", headers=viewer).status_code == 403
    assert link(home, viewer, agent.instance_id, agent.secret).status_code == 403
    assert home.get("/api/v1/discovery").status_code == 401


def test_a_person_disabled_before_the_agent_answers_gets_no_device(
    api: Api, home: TestClient, person: dict[str, str], make_csr: Any
) -> None:
    agent = FakeAgent(home)
    agent.announce()
    link(home, person, agent.instance_id, agent.secret)
    admin = api.admin()
    (olga,) = [
        u for u in home.get("/api/v1/users", headers=admin).json() if u["username"] == "olga"
    ]
    assert home.post(f"/api/v1/users/{olga['id']}/disable", headers=admin).status_code == 200
    verification = agent.fetch().json()
    _, csr = make_csr(verification["device_id"])
    refused = agent.complete(verification, csr)
    assert refused.status_code == 403 and refused.json()["code"] == "access_denied"


def test_the_secret_is_in_no_row_and_no_log_line(
    home: TestClient,
    person: dict[str, str],
    make_csr: Any,
    settings: ControlSettings,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    agent, wrong = FakeAgent(home), FakeAgent(home)
    agent.announce()
    link(home, person, agent.instance_id, wrong.secret)
    agent.refuse(agent.fetch().json())
    second = FakeAgent(home)
    second.announce()
    link(home, person, second.instance_id, second.secret)
    verification = second.fetch().json()
    _, csr = make_csr(verification["device_id"])
    assert second.complete(verification, csr).status_code == 201
    secrets_used = (agent.secret, wrong.secret, second.secret)
    engine = sa.create_engine(settings.resolved_database_url)
    with engine.connect() as connection:
        for table in sa.inspect(engine).get_table_names():
            for row in connection.execute(sa.text(f'SELECT * FROM "{table}"')):
                text = repr(tuple(row))
                assert not any(s in text for s in secrets_used), table
    engine.dispose()
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert not any(s in logged for s in secrets_used)
    files = [p for p in Path(settings.data_dir).rglob("*") if p.is_file()]
    for path in files:
        data = path.read_bytes()
        assert not any(s.encode() in data for s in secrets_used), path


def test_behind_a_listed_proxy_the_forwarded_hop_is_the_address(
    settings: ControlSettings, clock: Clock
) -> None:
    from labgate.control.http.app import create_app

    behind = settings.model_copy(update={"trusted_proxies": ("10.0.0.0/24",)})
    with TestClient(create_app(behind, clock=clock), base_url="https://testserver") as direct:
        proxy = peer(direct, "10.0.0.5")
        agent = FakeAgent(proxy)
        # The client wrote HOME itself; the proxy appended the real peer, ELSEWHERE.
        response = proxy.post(
            "/api/v1/discovery/announce",
            headers={"X-Forwarded-For": f"{HOME}, {ELSEWHERE}"},
            json={
                "instance_id": agent.instance_id,
                "local_address": agent.local,
                "hostname": "h",
                "model": "m",
                "serial": "s",
            },
        )
        assert response.status_code == 201 and response.json()["public_address"] == ELSEWHERE
        # A caller that is not the proxy is its own address, header or not.
        direct_peer = peer(direct, ELSEWHERE)
        again = FakeAgent(direct_peer).announce()
        assert again.json()["public_address"] == ELSEWHERE


@pytest.mark.slow
def test_the_enrolled_device_works_with_its_certificate_and_can_unlink(
    live_server: Any, mtls: Any, make_csr: Any
) -> None:
    with live_server.api() as api:
        person = api.create_user(api.admin(), "olga", "operator")
        agent = FakeAgent(api)
        agent.announce()
        assert link(api, person, agent.instance_id, agent.secret).status_code == 202
        verification = agent.fetch(wait=2).json()
        key_pem, csr = make_csr(verification["device_id"])
        enrolled = agent.complete(verification, csr).json()
    bearer = {"Authorization": f"Bearer {enrolled['access_token']}"}
    with mtls("device", enrolled["chain_pem"], key_pem) as device:
        me = device.get("/api/v1/me", headers=bearer)
        assert me.status_code == 200 and me.json()["identity"] == enrolled["identity"]
        rotated = device.refresh(enrolled["refresh_token"])
        assert rotated.status_code == 200, rotated.text
        bearer = {"Authorization": f"Bearer {rotated.json()['access_token']}"}
        other = device.post("/api/v1/devices/d-0000000000000000/unlink", headers=bearer)
        assert other.status_code == 404
        gone = device.post(f"/api/v1/devices/{enrolled['device_id']}/unlink", headers=bearer)
        assert gone.json() == {"device_id": enrolled["device_id"], "state": "unlinked"}
    # A fresh connection with the revoked certificate and its token is refused.
    with mtls("device2", enrolled["chain_pem"], key_pem) as device:
        assert device.get("/api/v1/me", headers=bearer).status_code == 401


def test_ipv6_matches_by_the_slash_64_and_only_by_it(
    client: TestClient, person: dict[str, str]
) -> None:
    device_side = peer(client, "2001:db8:1:2::17")
    agent = FakeAgent(device_side, local="[fd00::17]:46001")
    assert agent.announce().json()["public_address"] == "2001:db8:1:2::/64"
    same_home = peer(client, "2001:db8:1:2:aaaa::5")
    assert [d["instance_id"] for d in discovered(same_home, person)["devices"]] == [
        agent.instance_id
    ]
    next_door = peer(client, "2001:db8:1:3::5")
    assert discovered(next_door, person)["devices"] == []
    assert link(next_door, person, agent.instance_id, agent.secret).status_code == 404
    assert link(same_home, person, agent.instance_id, agent.secret).status_code == 202


@pytest.mark.slow
def test_parallel_link_requests_queue_exactly_one_verification(live_server: Any) -> None:
    import concurrent.futures

    with live_server.api() as api:
        person = api.create_user(api.admin(), "olga", "operator")
        agent = FakeAgent(api)
        agent.announce()
        guesses = [FakeAgent(api).secret for _ in range(19)] + [agent.secret]

    def one(secret: str) -> tuple[int, str]:
        with live_server.client(timeout=60) as http:
            response = link(http, person, agent.instance_id, secret)
            return response.status_code, response.json().get("code", "")

    with concurrent.futures.ThreadPoolExecutor(max_workers=20) as pool:
        results = list(pool.map(one, guesses))
    assert sorted(status for status, _ in results) == [202] + [409] * 19, results
    assert {code for status, code in results if status == 409} == {"verification_pending"}
