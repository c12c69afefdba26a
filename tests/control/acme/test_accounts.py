"""The directory, nonces, accounts with external account binding, and the JWS checks, each
tried from the attacker's side."""

from __future__ import annotations

import json
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from sqlalchemy import func, select

from labgate.control.database import make_engine
from labgate.control.tables import AcmeAccount, AcmeExternalKey, AuditEvent

PROBLEM = "urn:ietf:params:acme:error:"


def problem(response: Any, kind: str, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["type"] == PROBLEM + kind, body
    assert response.headers.get("Replay-Nonce"), "a problem carries a fresh nonce too"
    return body


def test_directory_names_every_resource_and_requires_eab(acme_client: Any) -> None:
    acme = acme_client()
    directory = acme.directory()
    for name in ("newNonce", "newAccount", "newOrder", "revokeCert", "keyChange"):
        assert directory[name].startswith("https://testserver/acme/")
    assert directory["meta"]["externalAccountRequired"] is True


def test_every_nonce_is_fresh_and_carries_the_index_link(acme_client: Any) -> None:
    acme = acme_client()
    head = acme.http.head(acme.url("new-nonce"))
    get = acme.http.get(acme.url("new-nonce"))
    assert head.status_code == 200 and get.status_code == 204
    assert head.headers["Replay-Nonce"] != get.headers["Replay-Nonce"]
    assert 'rel="index"' in get.headers["Link"]
    assert get.headers["Cache-Control"] == "no-store"


def test_account_with_eab_is_created_once_and_found_again(acme_client: Any, make_eab: Any) -> None:
    acme = acme_client()
    eab = make_eab()
    created = acme.register(eab, contact=["mailto:ops@lab.test"])
    assert created.status_code == 201, created.text
    assert created.json()["status"] == "valid"
    assert created.json()["externalAccountBinding"] == {"kid": eab["kid"]}
    assert 'rel="index"' in created.headers["Link"]
    again = acme.post(acme.url("new-account"), {"onlyReturnExisting": True}, kid=None)
    assert again.status_code == 200
    assert again.headers["Location"] == created.headers["Location"]


def test_eddsa_and_es256_and_rs256_account_keys_are_accepted(
    acme_client: Any, make_eab: Any
) -> None:
    keys = [
        ed25519.Ed25519PrivateKey.generate(),
        ec.generate_private_key(ec.SECP256R1()),
        rsa.generate_private_key(public_exponent=65537, key_size=2048),
    ]
    for key in keys:
        acme = acme_client(key=key)
        assert acme.register(make_eab()).status_code == 201
        assert acme.get(acme.account).json()["status"] == "valid"


def test_new_account_without_eab_is_refused(acme_client: Any) -> None:
    acme = acme_client()
    problem(acme.register(None), "externalAccountRequired", 400)


def test_eab_with_a_wrong_hmac_key_is_refused(acme_client: Any, make_eab: Any) -> None:
    acme = acme_client()
    eab = make_eab()
    forged = dict(eab, hmac_key=make_eab()["hmac_key"])
    problem(acme.register(forged), "unauthorized", 403)


def test_eab_binds_one_account_only(acme_client: Any, make_eab: Any) -> None:
    eab = make_eab()
    assert acme_client().register(eab).status_code == 201
    # A second key with the same (valid) credential: the credential is spent.
    problem(acme_client().register(eab), "unauthorized", 403)


def test_eab_made_for_another_key_does_not_bind_this_one(acme_client: Any, make_eab: Any) -> None:
    """The MAC covers the account key: a binding lifted from another client's request (for its
    own key) is refused on a new key."""
    from .conftest import eab_binding

    victim, thief = acme_client(), acme_client()
    eab = make_eab()
    lifted = eab_binding(
        victim.key, kid=eab["kid"], hmac_key=eab["hmac_key"], url=thief.url("new-account")
    )
    response = thief.post(thief.url("new-account"), {"externalAccountBinding": lifted}, kid=None)
    problem(response, "unauthorized", 403)


def test_revoked_eab_binds_nothing_and_stops_its_account(
    acme_client: Any, make_eab: Any, api: Any
) -> None:
    admin = api.admin()
    first, spare = make_eab(), make_eab()
    acme = acme_client()
    assert acme.register(first).status_code == 201
    for kid in (first["kid"], spare["kid"]):
        assert api.post(f"/api/v1/acme/eab/{kid}/revoke", headers=admin).status_code == 200
    problem(acme.order("a.lab.test"), "unauthorized", 403)
    problem(acme_client().register(spare), "unauthorized", 403)


def test_replayed_nonce_is_bad_nonce(acme_client: Any, make_eab: Any) -> None:
    acme = acme_client()
    acme.register(make_eab())
    nonce = acme.fresh_nonce()
    assert acme.post(acme.account, None, nonce=nonce).status_code == 200
    body = problem(acme.post(acme.account, None, nonce=nonce), "badNonce", 400)
    assert "already used" in body["detail"]


def test_made_up_nonce_is_bad_nonce(acme_client: Any, make_eab: Any) -> None:
    acme = acme_client()
    acme.register(make_eab())
    problem(acme.post(acme.account, None, nonce="not-one-of-ours"), "badNonce", 400)


def test_bad_signature_is_refused(acme_client: Any, make_eab: Any) -> None:
    from .conftest import jws

    acme = acme_client()
    acme.register(make_eab())
    body = jws(
        acme.key, {"contact": []}, url=acme.account, nonce=acme.fresh_nonce(), kid=acme.account
    )
    tampered = dict(
        body, payload=jws(acme.key, {"status": "deactivated"}, url="x", nonce="x")["payload"]
    )
    problem(acme.post(acme.account, None, body=tampered), "unauthorized", 403)
    assert acme.get(acme.account).json()["status"] == "valid"


def test_another_key_signing_with_this_accounts_kid_is_refused(
    acme_client: Any, make_eab: Any
) -> None:
    acme = acme_client()
    acme.register(make_eab())
    intruder = ec.generate_private_key(ec.SECP256R1())
    response = acme.post(acme.account, {"status": "deactivated"}, key=intruder)
    problem(response, "unauthorized", 403)
    assert acme.get(acme.account).json()["status"] == "valid"


def test_url_in_the_protected_header_must_be_where_it_was_sent(
    acme_client: Any, make_eab: Any
) -> None:
    acme = acme_client()
    acme.register(make_eab())
    response = acme.post(acme.account, {"status": "deactivated"}, signed_url=acme.url("new-order"))
    problem(response, "unauthorized", 403)


def test_algorithm_that_does_not_fit_the_key_is_refused(acme_client: Any, make_eab: Any) -> None:
    acme = acme_client()
    acme.register(make_eab())
    problem(acme.post(acme.account, None, alg="EdDSA"), "unauthorized", 403)
    body = problem(acme.post(acme.account, None, alg="none"), "badSignatureAlgorithm", 400)
    assert "ES256" in body["algorithms"]
    problem(acme.post(acme.account, None, alg="HS256"), "badSignatureAlgorithm", 400)


def test_small_rsa_account_key_is_refused(acme_client: Any, make_eab: Any) -> None:
    acme = acme_client(key=rsa.generate_private_key(public_exponent=65537, key_size=1024))
    problem(acme.register(make_eab()), "badPublicKey", 400)


def test_wrong_media_type_is_refused(acme_client: Any) -> None:
    acme = acme_client()
    response = acme.http.post(acme.url("new-account"), json={})
    problem(response, "malformed", 415)


def test_resources_answer_post_as_get_only(acme_client: Any, make_eab: Any) -> None:
    acme = acme_client()
    acme.register(make_eab())
    problem(acme.http.get(acme.account), "malformed", 405)


def test_unknown_account_kid_is_account_does_not_exist(acme_client: Any) -> None:
    acme = acme_client()
    response = acme.post(acme.url("new-order"), {"identifiers": []}, kid=acme.url("account/nope"))
    problem(response, "accountDoesNotExist", 400)


def test_deactivated_account_can_do_nothing_more(acme_client: Any, make_eab: Any) -> None:
    acme = acme_client()
    acme.register(make_eab())
    assert acme.post(acme.account, {"status": "deactivated"}).json()["status"] == "deactivated"
    problem(acme.order("a.lab.test"), "unauthorized", 403)
    problem(acme.post(acme.url("new-account"), {}, kid=None), "unauthorized", 403)


def test_key_rollover_moves_the_account_to_the_new_key(acme_client: Any, make_eab: Any) -> None:
    from .conftest import jwk_of, jws

    acme = acme_client()
    acme.register(make_eab())
    new_key = ed25519.Ed25519PrivateKey.generate()
    url = acme.url("key-change")
    inner = jws(new_key, {"account": acme.account, "oldKey": jwk_of(acme.key)}, url=url, nonce=None)
    assert acme.post(url, inner).status_code == 200
    problem(acme.get(acme.account), "unauthorized", 403)  # the old key no longer signs
    acme.key = new_key
    assert acme.get(acme.account).json()["status"] == "valid"


def test_key_rollover_to_another_accounts_key_is_a_conflict(
    acme_client: Any, make_eab: Any
) -> None:
    from .conftest import jwk_of, jws

    acme, other = acme_client(), acme_client()
    acme.register(make_eab())
    other.register(make_eab())
    url = acme.url("key-change")
    inner = jws(
        other.key, {"account": acme.account, "oldKey": jwk_of(acme.key)}, url=url, nonce=None
    )
    response = acme.post(url, inner)
    problem(response, "malformed", 409)
    assert response.headers["Location"] == other.account


def test_eab_keys_are_listed_without_their_hmac_and_sealed_in_the_database(
    api: Any, make_eab: Any, settings: Any
) -> None:
    eab = make_eab(dns_suffixes=["lab.test"], ip_ranges=["127.0.0.0/8"])
    listed = api.get("/api/v1/acme/eab", headers=api.admin()).json()
    assert [k["kid"] for k in listed] == [eab["kid"]]
    assert "hmac_key" not in json.dumps(listed) and eab["hmac_key"] not in json.dumps(listed)
    engine = make_engine(settings.resolved_database_url)
    with engine.connect() as connection:
        sealed = connection.scalar(select(AcmeExternalKey.sealed_key))
        events = connection.scalar(select(func.count()).select_from(AuditEvent))
    engine.dispose()
    import base64

    raw = base64.urlsafe_b64decode(eab["hmac_key"] + "=" * (-len(eab["hmac_key"]) % 4))
    assert raw not in sealed and eab["hmac_key"].encode() not in sealed
    assert events and events >= 1


def test_eab_creation_needs_an_administrator_and_a_policy(api: Any) -> None:
    admin = api.admin()
    viewer = api.create_user(admin, "viewer1", "viewer")
    body = {"label": "x", "dns_suffixes": ["lab.test"]}
    assert api.post("/api/v1/acme/eab", headers=viewer, json=body).status_code == 403
    assert api.post("/api/v1/acme/eab", json=body).status_code == 401
    empty = api.post("/api/v1/acme/eab", headers=admin, json={"label": "x"})
    assert empty.status_code == 422 and "at least one" in empty.json()["message"]
    bad = api.post("/api/v1/acme/eab", headers=admin, json={"label": "x", "ip_ranges": ["nope"]})
    assert bad.status_code == 422


def test_accounts_are_stored_by_key_thumbprint(
    acme_client: Any, make_eab: Any, settings: Any
) -> None:
    from .conftest import thumbprint

    acme = acme_client()
    acme.register(make_eab())
    engine = make_engine(settings.resolved_database_url)
    with engine.connect() as connection:
        stored = connection.scalar(select(AcmeAccount.thumbprint))
    engine.dispose()
    assert stored == thumbprint(acme.key)
