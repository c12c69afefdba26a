"""Who may do what now, from the attacker's side: a disabled person, a revoked device or a revoked
certificate gets nothing more from any replica, and a bound token family has no unbound token."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from cryptography import x509

from labgate.auth.keyring import PublicKeySet
from labgate.auth.tokens import verify_claims
from labgate.control import keystore
from labgate.control.http.serving import run_in_thread
from labgate.control.layout import ca_dir
from labgate.pki.authority import CertificateAuthority
from labgate.pki.profiles import Profile

from .conftest import LiveServer

INSTRUMENT = "qs5-bench3"


@pytest.fixture
def ca(live_server: LiveServer) -> Iterator[CertificateAuthority]:
    """The CA on disk, as `labgate ca` opens it beside the running server."""
    settings = live_server.settings
    passphrase = keystore.load_passphrase(settings)
    with CertificateAuthority.open(ca_dir(settings.data_dir), passphrase=passphrase) as opened:
        yield opened


@pytest.fixture
def gateway(ca: CertificateAuthority, mtls: Any) -> Any:
    """An Api presenting gateway site-1's certificate, and a reader of its bundles."""
    issued = ca.issue(Profile.GATEWAY, "site-1", dns=["localhost"])
    assert issued.key_pem is not None
    return mtls("site-1", issued.chain_pem, issued.key_pem)


def bundle_claims(gateway: Any, live_server: LiveServer, **params: Any) -> dict[str, Any]:
    params.setdefault("instrument", [INSTRUMENT])
    answer = gateway.get("/api/v1/gateways/site-1/bundle", params=params)
    assert answer.status_code == 200, answer.text
    keys = PublicKeySet.from_jwks(gateway.get("/.well-known/jwks.json").json())
    claims: dict[str, Any] = verify_claims(
        answer.text,
        keys,
        typ="labgate-bundle+jwt",
        issuer=live_server.settings.issuer,
        audience="labgate:gateway:site-1",
        now=datetime.now(UTC),
    )
    return claims


def crl_serials(claims: dict[str, Any]) -> set[int]:
    crl = x509.load_pem_x509_crl(claims["crl_pem"].encode())
    return {entry.serial_number for entry in crl}


def certificate_for(api: Any, headers: dict[str, str], name: str, make_csr: Any) -> Any:
    key, csr = make_csr(name)
    answer = api.post("/api/v1/certificates", headers=headers, json={"csr_pem": csr})
    assert answer.status_code == 201, answer.text
    return key, answer.json()


def grant(api: Any, admin: dict[str, str], who: str, instrument: str = INSTRUMENT) -> None:
    body = {"principal": who, "instrument": instrument, "level": "Controller"}
    assert api.post("/api/v1/grants", headers=admin, json=body).status_code == 201


def user_id(api: Any, admin: dict[str, str], name: str) -> int:
    (found,) = [u for u in api.get("/api/v1/users", headers=admin).json() if u["username"] == name]
    return int(found["id"])


def new_user(api: Any, admin: dict[str, str], name: str) -> dict[str, Any]:
    """A user with a full session: its token pair."""
    made = api.post("/api/v1/users", headers=admin, json={"username": name, "role": "operator"})
    assert made.status_code == 201, made.text
    tokens: dict[str, Any] = api.login_fully(name, made.json()["one_time_password"])
    return tokens


# ------------------------------------------------------------------------- a person leaves


def test_a_disabled_user_loses_grants_certificates_and_tokens(
    live_server: LiveServer, gateway: Any, ca: CertificateAuthority, make_csr: Any, mtls: Any
) -> None:
    with live_server.api() as api:
        admin = api.admin()
        tokens = new_user(api, admin, "alice")
        alice = api.bearer(tokens["access_token"])
        key, issued = certificate_for(api, alice, "alice", make_csr)
        # A second certificate, from the CA on disk (`labgate ca issue client alice`).
        by_hand = ca.issue(Profile.CLIENT, "alice")
        grant(api, admin, "labgate:user:alice")
        grant(api, admin, "labgate:user:bob")  # someone who stays
        before = bundle_claims(gateway, live_server)
        assert {g["identity"] for g in before["grants"]} == {
            "labgate:user:alice",
            "labgate:user:bob",
        }

        disabled = api.post(f"/api/v1/users/{user_id(api, admin, 'alice')}/disable", headers=admin)
        assert disabled.status_code == 200, disabled.text

        after = bundle_claims(gateway, live_server)
        assert [g["identity"] for g in after["grants"]] == ["labgate:user:bob"]
        assert {int(issued["serial"], 16), by_hand.serial} <= crl_serials(after)
        assert after["changes"] > before["changes"]
        assert api.get("/api/v1/me", headers=alice).status_code == 401
        assert api.refresh(tokens["refresh_token"]).status_code == 401
        assert (
            api.post(
                "/api/v1/auth/login", json={"username": "alice", "password": api.STRONG_PASSWORD}
            ).status_code
            == 401
        )
        listed = api.get(
            "/api/v1/certificates",
            headers=admin,
            params={"identity": "labgate:user:alice"},
        ).json()
        assert {c["serial"] for c in listed} == {issued["serial"], format(by_hand.serial, "x")}
        assert {c["status"] for c in listed} == {"revoked"}
        assert {c["revocation_reason"] for c in listed} == {"privilegeWithdrawn"}
    # The CA's own inventory has the revocations too (`labgate ca list` shows them).
    entry = ca.inventory.get(int(issued["serial"], 16))
    assert entry is not None and entry.revocation_reason == "privilegeWithdrawn"
    # Her certificate gets her nothing over TLS either, token or not.
    with mtls("alice-tls", issued["chain_pem"], key) as theirs:
        assert theirs.get("/api/v1/me", headers=alice).status_code == 401


def test_a_disabled_users_cli_certificate_is_refused_by_the_api_even_before_the_inventory_knows(
    live_server: LiveServer, ca: CertificateAuthority, make_csr: Any, mtls: Any
) -> None:
    """The database is the record every replica reads: a revocation there is enough."""
    with live_server.api() as api:
        admin = api.admin()
        tokens = new_user(api, admin, "carl")
        carl = api.bearer(tokens["access_token"])
        key, issued = certificate_for(api, carl, "carl", make_csr)
        revoked = api.post(
            f"/api/v1/certificates/{issued['serial']}/revoke",
            headers=carl,
            json={"reason": "keyCompromise"},
        )
        assert revoked.status_code == 200, revoked.text
        assert revoked.json()["status"] == "revoked"
    with mtls("carl-tls", issued["chain_pem"], key) as theirs:
        # The token itself is fine (a user's is not bound); the revoked certificate is not.
        assert theirs.get("/api/v1/me", headers=carl).status_code == 401
    with live_server.api() as plain:
        assert plain.get("/api/v1/me", headers=carl).status_code == 200


# ------------------------------------------------------------------------- a device is stolen


def linked_device(api: Any, mtls: Any, make_csr: Any) -> dict[str, Any]:
    """A device that holds its certificate and a token family bound to it."""
    admin = api.admin()
    owner = api.bearer(new_user(api, admin, "olga")["access_token"])
    created = api.create_device(owner, "bench-1")
    device_id = created["device"]["id"]
    first = api.bearer(created["credentials"]["access_token"])
    key, issued = certificate_for(api, first, device_id, make_csr)
    holder = mtls(device_id, issued["chain_pem"], key)
    bound = holder.refresh(created["credentials"]["refresh_token"])
    assert bound.status_code == 200, bound.text
    return {
        "id": device_id,
        "owner": owner,
        "admin": admin,
        "first": first,
        "holder": holder,
        "issued": issued,
        "key": key,
        "tokens": bound.json(),
    }


def test_a_revoked_device_certificate_authenticates_nothing(
    live_server: LiveServer, mtls: Any, make_csr: Any
) -> None:
    with live_server.api() as api:
        device = linked_device(api, mtls, make_csr)
        holder, tokens = device["holder"], device["tokens"]
        headers = api.bearer(tokens["access_token"])
        assert holder.get("/api/v1/me", headers=headers).status_code == 200
        serial = device["issued"]["serial"]
        revoked = api.post(
            f"/api/v1/certificates/{serial}/revoke",
            headers=device["owner"],
            json={"reason": "keyCompromise"},
        )
        # Not the owner's own certificate: an owner revokes the device, an admin any certificate.
        assert revoked.status_code == 404
        revoked = api.post(
            f"/api/v1/certificates/{serial}/revoke",
            headers=device["admin"],
            json={"reason": "keyCompromise"},
        )
        assert revoked.status_code == 200, revoked.text
        assert holder.get("/api/v1/me", headers=headers).status_code == 401
        assert holder.refresh(tokens["refresh_token"]).status_code == 401
        _, csr = make_csr(device["id"])
        again = holder.post("/api/v1/certificates", headers=headers, json={"csr_pem": csr})
        assert again.status_code == 401
        # Without the certificate the bound tokens are no better.
        assert api.get("/api/v1/me", headers=headers).status_code == 401
        assert api.refresh(tokens["refresh_token"]).status_code == 401
        holder.close()


def test_a_device_revokes_its_own_certificate_and_no_other(
    live_server: LiveServer, mtls: Any, make_csr: Any
) -> None:
    with live_server.api() as api:
        device = linked_device(api, mtls, make_csr)
        holder, tokens = device["holder"], device["tokens"]
        headers = api.bearer(tokens["access_token"])
        mine = holder.get("/api/v1/certificates", headers=headers).json()
        assert [c["serial"] for c in mine] == [device["issued"]["serial"]]
        everyone = holder.get(
            "/api/v1/certificates", headers=headers, params={"identity": "labgate:user:admin"}
        )
        assert everyone.json() == []
        admins = api.get("/api/v1/certificates", headers=device["admin"]).json()
        others = [c for c in admins if c["identity"] != f"labgate:device:{device['id']}"]
        for certificate in others:
            attempt = holder.post(
                f"/api/v1/certificates/{certificate['serial']}/revoke",
                headers=headers,
                json={"reason": "keyCompromise"},
            )
            assert attempt.status_code == 404
        bad = holder.post(
            f"/api/v1/certificates/{device['issued']['serial']}/revoke",
            headers=headers,
            json={"reason": "certificateHold"},
        )
        assert bad.status_code == 422
        own = holder.post(
            f"/api/v1/certificates/{device['issued']['serial']}/revoke",
            headers=headers,
            json={"reason": "keyCompromise"},
        )
        assert own.status_code == 200, own.text
        assert holder.get("/api/v1/me", headers=headers).status_code == 401
        twice = api.post(
            f"/api/v1/certificates/{device['issued']['serial']}/revoke",
            headers=device["admin"],
            json={},
        )
        assert twice.status_code == 409
        holder.close()


def test_revoking_a_device_revokes_its_certificate_for_every_request(
    live_server: LiveServer, gateway: Any, mtls: Any, make_csr: Any
) -> None:
    with live_server.api() as api:
        device = linked_device(api, mtls, make_csr)
        grant(api, device["admin"], f"labgate:device:{device['id']}")
        assert bundle_claims(gateway, live_server)["grants"]
        revoked = api.post(f"/api/v1/devices/{device['id']}/revoke", headers=device["owner"])
        assert revoked.status_code == 200, revoked.text
        claims = bundle_claims(gateway, live_server)
        assert claims["grants"] == []
        assert int(device["issued"]["serial"], 16) in crl_serials(claims)
        headers = api.bearer(device["tokens"]["access_token"])
        assert device["holder"].get("/api/v1/me", headers=headers).status_code == 401
        listed = api.get(
            "/api/v1/certificates",
            headers=device["admin"],
            params={"identity": f"labgate:device:{device['id']}", "status": "revoked"},
        ).json()
        assert [c["revocation_reason"] for c in listed] == ["cessationOfOperation"]
        device["holder"].close()


def test_once_a_family_is_bound_its_first_unbound_access_token_is_refused(
    live_server: LiveServer, mtls: Any, make_csr: Any
) -> None:
    with live_server.api() as api:
        device = linked_device(api, mtls, make_csr)
        # The access token handed out at creation, used without the certificate.
        assert api.get("/api/v1/me", headers=device["first"]).status_code == 401
        # ... or with it: the family is bound now, and this token was not.
        assert device["holder"].get("/api/v1/me", headers=device["first"]).status_code == 401
        bound = api.bearer(device["tokens"]["access_token"])
        assert api.get("/api/v1/me", headers=bound).status_code == 401  # needs the certificate
        assert device["holder"].get("/api/v1/me", headers=bound).status_code == 200
        device["holder"].close()


# ------------------------------------------------------------------------- every replica


def test_a_revocation_on_one_replica_is_refused_by_another_at_once(
    live_server: LiveServer, mtls: Any, make_csr: Any, tmp_path: Any
) -> None:
    import ssl

    from .conftest import tls_identity

    with live_server.api() as api, run_in_thread(live_server.settings) as other:
        device = linked_device(api, mtls, make_csr)
        chain, key = tls_identity(
            tmp_path, "replica-b", device["issued"]["chain_pem"], device["key"]
        )
        context = ssl.create_default_context(cafile=live_server.root)
        context.load_cert_chain(chain, key)
        replica_b = LiveServer(url=other.url, settings=live_server.settings).api(verify=context)
        headers = api.bearer(device["tokens"]["access_token"])
        assert replica_b.get("/api/v1/me", headers=headers).status_code == 200
        revoked = api.post(
            f"/api/v1/certificates/{device['issued']['serial']}/revoke",
            headers=device["admin"],
            json={"reason": "keyCompromise"},
        )
        assert revoked.status_code == 200
        assert replica_b.get("/api/v1/me", headers=headers).status_code == 401
        assert replica_b.refresh(device["tokens"]["refresh_token"]).status_code == 401
        replica_b.close()
        device["holder"].close()


def test_a_device_certificate_revoked_with_the_ca_command_authenticates_nothing(
    live_server: LiveServer, ca: CertificateAuthority, mtls: Any, make_csr: Any
) -> None:
    """`labgate ca revoke` writes only the CA's inventory: that is checked too."""
    with live_server.api() as api:
        device = linked_device(api, mtls, make_csr)
        holder, tokens = device["holder"], device["tokens"]
        headers = api.bearer(tokens["access_token"])
        ca.revoke(int(device["issued"]["serial"], 16), reason="keyCompromise")
        assert holder.get("/api/v1/me", headers=headers).status_code == 401
        assert holder.refresh(tokens["refresh_token"]).status_code == 401
        _, csr = make_csr(device["id"])
        again = holder.post("/api/v1/certificates", headers=headers, json={"csr_pem": csr})
        assert again.status_code == 401
        holder.close()
