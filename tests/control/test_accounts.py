"""User names from the attacker's side: no second account under another case or width."""

from __future__ import annotations

from typing import Any

import pytest

FULLWIDTH_ADMIN = "\uff21\uff44\uff4d\uff49\uff4e"  # "Ａｄｍｉｎ"


@pytest.mark.parametrize("twin", ["Admin", "ADMIN", FULLWIDTH_ADMIN, "admin"])
def test_a_name_differing_only_by_case_or_width_is_a_conflict(api: Any, twin: str) -> None:
    admin = api.admin()
    response = api.post("/api/v1/users", headers=admin, json={"username": twin, "role": "admin"})
    assert response.status_code == 409, response.text
    assert response.json()["code"] == "conflict"
    names = [u["username"] for u in api.get("/api/v1/users", headers=admin).json()]
    assert names == ["admin"]


def test_names_are_stored_and_certified_in_canonical_form(api: Any, make_csr: Any) -> None:
    admin = api.admin()
    created = api.post("/api/v1/users", headers=admin, json={"username": "Alice", "role": "viewer"})
    assert created.status_code == 201, created.text
    assert created.json()["user"]["username"] == "alice"
    # Any spelling logs in as the one account.
    tokens = api.login_fully("ALICE", created.json()["one_time_password"])
    headers = api.bearer(tokens["access_token"])
    me = api.get("/api/v1/me", headers=headers).json()
    assert me["identity"] == "labgate:user:alice"
    _, csr = make_csr("alice")
    issued = api.post("/api/v1/certificates", headers=headers, json={"csr_pem": csr})
    assert issued.status_code == 201, issued.text
    assert issued.json()["identity"] == "labgate:user:alice"
    from cryptography import x509

    certificate = x509.load_pem_x509_certificate(issued.json()["certificate_pem"].encode())
    uris = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert uris.get_values_for_type(x509.UniformResourceIdentifier) == ["labgate:user:alice"]


def test_a_grant_for_another_spelling_names_the_canonical_user(api: Any) -> None:
    admin = api.admin()
    api.post("/api/v1/users", headers=admin, json={"username": "bob", "role": "viewer"})
    grant = api.post(
        "/api/v1/grants",
        headers=admin,
        json={"principal": "labgate:user:BOB", "instrument": "qs1", "level": "observer"},
    )
    assert grant.status_code == 201, grant.text
    assert grant.json()["principal"] == "labgate:user:bob"
    assert grant.json()["level"] == "Observer"  # levels in any case, as in gateway.toml
    again = api.post(
        "/api/v1/grants",
        headers=admin,
        json={"principal": "labgate:user:Bob", "instrument": "qs1", "level": "FULL"},
    )
    assert again.status_code == 409


@pytest.mark.parametrize("name", ["al ice", "\u0430dmin", "-admin", "a" * 65, "x\u0000y"])
def test_names_outside_the_canonical_alphabet_are_refused(api: Any, name: str) -> None:
    # Cyrillic "а" looks like "a" but is no letter of the alphabet: refused, not confused.
    response = api.post(
        "/api/v1/users", headers=api.admin(), json={"username": name, "role": "viewer"}
    )
    assert response.status_code == 422, response.text
    assert response.json()["code"] == "invalid_request"


@pytest.mark.parametrize("level", ["observer", "OBSERVER", " Observer "])
def test_levels_are_case_insensitive(api: Any, level: str) -> None:
    response = api.post(
        "/api/v1/grants",
        headers=api.admin(),
        json={
            "principal": "labgate:device:d-0011223344556677",
            "instrument": "qs1",
            "level": level,
        },
    )
    assert response.status_code == 201, response.text
    assert response.json()["level"] == "Observer"


def test_an_unknown_level_is_refused_with_its_name(api: Any) -> None:
    response = api.post(
        "/api/v1/grants",
        headers=api.admin(),
        json={"principal": "labgate:user:admin", "instrument": "qs1", "level": "root"},
    )
    assert response.status_code == 422
    assert "level" in response.json()["message"]
