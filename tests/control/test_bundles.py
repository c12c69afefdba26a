"""Gateway bundles: only the gateway's own certificate gets one, signed, addressed, growing."""

from __future__ import annotations

import threading
import time
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

from .conftest import tls_identity


def fetch(api: Any, name: str, **params: Any) -> Any:
    params.setdefault("instrument", ["qs5-bench3"])
    return api.get(f"/api/v1/gateways/{name}/bundle", params=params)


def test_gateway_gets_a_signed_bundle_with_growing_versions(
    live_server: Any, mtls: Any, gateway_identity: Any
) -> None:
    with live_server.api() as api:
        admin = api.admin()
        grant = {
            "principal": "labgate:user:alice",
            "instrument": "qs5-bench3",
            "level": "Controller",
        }
        assert api.post("/api/v1/grants", headers=admin, json=grant).status_code == 201
        jwks = api.get("/.well-known/jwks.json").json()
    chain, key, _ = gateway_identity(Profile.GATEWAY, "site-1")
    with mtls("gw", chain, key) as gateway:
        first, second = fetch(gateway, "site-1"), fetch(gateway, "site-1")
    assert first.status_code == 200, first.text
    assert first.headers["content-type"] == "application/jose"
    keys = PublicKeySet.from_jwks(jwks)
    claims = [
        verify_claims(
            r.text,
            keys,
            typ="labgate-bundle+jwt",
            issuer=live_server.settings.issuer,
            audience="labgate:gateway:site-1",
            now=datetime.now(UTC),
        )
        for r in (first, second)
    ]
    assert claims[1]["version"] > claims[0]["version"]
    assert claims[0]["grants"] == [
        {"identity": "labgate:user:alice", "instrument": "qs5-bench3", "level": "Controller"}
    ]
    crl = x509.load_pem_x509_crl(claims[0]["crl_pem"].encode())
    issuing = x509.load_pem_x509_certificate(
        (ca_dir(live_server.settings.data_dir) / "issuing.crt").read_bytes()
    )
    assert crl.is_signature_valid(issuing.public_key())
    assert claims[0]["exp"] > claims[0]["iat"]
    assert datetime.fromisoformat(claims[0]["expires_at"]).timestamp() >= claims[0]["exp"]


def test_bundle_needs_that_gateways_own_certificate(
    live_server: Any, mtls: Any, gateway_identity: Any
) -> None:
    with live_server.api() as anonymous:
        refused = fetch(anonymous, "site-1")
        assert refused.status_code == 401
        assert refused.json()["code"] == "certificate_required"
    chain, key, serial = gateway_identity(Profile.GATEWAY, "site-1")
    with mtls("gw", chain, key) as gateway:
        assert fetch(gateway, "site-2").status_code == 403  # another site's bundle
    user_chain, user_key, _ = gateway_identity(Profile.CLIENT, "alice")
    with mtls("alice", user_chain, user_key) as user:
        assert fetch(user, "site-1").status_code == 403
    settings = live_server.settings
    passphrase = keystore.load_passphrase(settings)
    with CertificateAuthority.open(ca_dir(settings.data_dir), passphrase=passphrase) as ca:
        ca.revoke(serial, reason="keyCompromise")
    with mtls("gw2", chain, key) as gateway:
        revoked = fetch(gateway, "site-1")
        assert revoked.status_code == 403
        assert "revoked" in revoked.json()["message"]


def test_the_gateways_own_reader_accepts_the_bundle(
    live_server: Any, gateway_identity: Any, tmp_path: Any
) -> None:
    """End to end with the consumer: the gateway's fetch and verification, unchanged."""
    import asyncio

    from labgate.control.layout import ca_root_path
    from labgate.gateway.bundles import fetch, read_bundle
    from labgate.gateway.config import ControlConfig

    with live_server.api() as api:
        grant = {"principal": "labgate:device:d-1", "instrument": "*", "level": "Observer"}
        assert api.post("/api/v1/grants", headers=api.admin(), json=grant).status_code == 201
    chain, key, _ = gateway_identity(Profile.GATEWAY, "site-1")
    (tmp_path / "gw.crt").write_bytes(chain)
    (tmp_path / "gw.key").write_bytes(key)
    control = ControlConfig(
        url=live_server.url,
        gateway_name="site-1",
        server_ca=ca_root_path(live_server.settings.data_dir),
    )
    fetched = asyncio.run(
        fetch(control, cert=tmp_path / "gw.crt", key=tmp_path / "gw.key", instruments=("qs1",))
    )
    assert fetched is not None
    token, jwks = fetched
    bundle = read_bundle(token, jwks, control=control, now=datetime.now(UTC), above_version=0)
    assert [(g.identity, g.instrument) for g in bundle.grants] == [("labgate:device:d-1", "*")]
    assert bundle.version >= 1


# ------------------------------------------------------------- what each gateway gets, and when


def bundle_of(answer: Any, live_server: Any) -> dict[str, Any]:
    assert answer.status_code == 200, answer.text
    claims: dict[str, Any] = jwt_claims(answer.text)
    return claims


def jwt_claims(token: str) -> dict[str, Any]:
    """The claims of a bundle (its signature is checked in the tests above)."""
    import base64
    import json

    payload = token.split(".")[1]
    decoded: dict[str, Any] = json.loads(
        base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    )
    return decoded


def test_a_bundle_carries_only_the_grants_for_that_gateways_instruments(
    live_server: Any, mtls: Any, gateway_identity: Any
) -> None:
    with live_server.api() as api:
        admin = api.admin()
        for who, instrument in (
            ("labgate:user:alice", "qs5-bench3"),
            ("labgate:user:bob", "qs7-other-site"),
            ("labgate:user:carol", "*"),
        ):
            body = {"principal": who, "instrument": instrument, "level": "Observer"}
            assert api.post("/api/v1/grants", headers=admin, json=body).status_code == 201
    chain, key, _ = gateway_identity(Profile.GATEWAY, "site-1")
    with mtls("gw", chain, key) as gateway:
        claims = bundle_of(fetch(gateway, "site-1"), live_server)
        assert {g["identity"] for g in claims["grants"]} == {
            "labgate:user:alice",
            "labgate:user:carol",
        }
        assert claims["instruments"] == ["qs5-bench3"]
        for bad in (["../etc"], ["a b"], [""]):
            assert fetch(gateway, "site-1", instrument=bad).status_code == 422
        assert fetch(gateway, "site-1", instrument=[]).status_code == 422


def test_configured_instruments_bound_what_a_gateway_may_ask_for(
    settings: Any, gateway_identity: Any, tmp_path: Any
) -> None:
    """A gateway (or a thief with its certificate) naming other instruments learns nothing more."""
    from labgate.control.settings import ControlSettings

    from .conftest import FAST_ARGON2, LiveServer, tls_identity

    fixed = ControlSettings.load(
        settings.data_dir,
        database_url=settings.database_url,
        gateway_instruments={"site-1": ["qs5-bench3"]},
        **FAST_ARGON2,
    )
    with run_in_thread(fixed) as running:
        server = LiveServer(url=running.url, settings=fixed)
        with server.api() as api:
            admin = api.admin()
            for who, instrument in (("labgate:user:a", "qs5-bench3"), ("labgate:user:b", "qs7")):
                body = {"principal": who, "instrument": instrument, "level": "Observer"}
                assert api.post("/api/v1/grants", headers=admin, json=body).status_code == 201
        chain, key, _ = gateway_identity(Profile.GATEWAY, "site-1")
        with server.api(verify=_context(server, tls_identity(tmp_path, "gw", chain, key))) as gw:
            asked_more = bundle_of(fetch(gw, "site-1", instrument=["qs5-bench3", "qs7"]), server)
            assert [g["identity"] for g in asked_more["grants"]] == ["labgate:user:a"]
            asked_nothing = bundle_of(fetch(gw, "site-1", instrument=[]), server)
            assert [g["identity"] for g in asked_nothing["grants"]] == ["labgate:user:a"]
            only_other = bundle_of(fetch(gw, "site-1", instrument=["qs7"]), server)
            assert only_other["grants"] == []


def _context(server: Any, files: tuple[Any, Any]) -> Any:
    import ssl

    context = ssl.create_default_context(cafile=server.root)
    context.load_cert_chain(*files)
    return context


@pytest.fixture
def two_replicas(settings: Any) -> Iterator[tuple[Any, Any]]:
    """Two servers on one database and data directory, with a short long-poll bound."""
    from labgate.control.settings import ControlSettings

    from .conftest import FAST_ARGON2, LiveServer

    short = ControlSettings.load(
        settings.data_dir,
        database_url=settings.database_url,
        bundle_wait_seconds=2,
        bundle_waiters_per_gateway=1,
        **FAST_ARGON2,
    )
    with run_in_thread(short) as first, run_in_thread(short) as second:
        yield (
            LiveServer(url=first.url, settings=short),
            LiveServer(url=second.url, settings=short),
        )


def test_a_long_poll_with_nothing_new_ends_within_its_bound(
    two_replicas: tuple[Any, Any], gateway_identity: Any, tmp_path: Any
) -> None:
    server, _ = two_replicas
    chain, key, _ = gateway_identity(Profile.GATEWAY, "site-1")
    files = tls_identity(tmp_path, "gw", chain, key)
    with server.api(verify=_context(server, files), timeout=30) as gw:
        changes = bundle_of(fetch(gw, "site-1"), server)["changes"]
        started = time.monotonic()
        # The gateway asks for an hour; the server's bound (2 s here) wins.
        quiet = fetch(gw, "site-1", after=changes, wait=3600)
        waited = time.monotonic() - started
        assert quiet.status_code == 204
        assert quiet.content == b""
        assert 1.5 <= waited < 15
        assert fetch(gw, "site-1", after=changes, wait=3601).status_code == 422
        # Once something changed, asking after the old number is answered at once.
        with server.api() as api:
            grant = {"principal": "labgate:user:erin", "instrument": "*", "level": "Observer"}
            assert api.post("/api/v1/grants", headers=api.admin(), json=grant).status_code == 201
        started = time.monotonic()
        assert fetch(gw, "site-1", after=changes, wait=60).status_code == 200
        assert time.monotonic() - started < 10


def test_a_change_on_one_replica_wakes_a_gateway_waiting_on_another(
    two_replicas: tuple[Any, Any], gateway_identity: Any, tmp_path: Any
) -> None:
    first, second = two_replicas
    chain, key, _ = gateway_identity(Profile.GATEWAY, "site-1")
    files = tls_identity(tmp_path, "gw", chain, key)
    with first.api() as api, second.api(verify=_context(second, files), timeout=30) as gw:
        admin = api.admin()
        changes = bundle_of(fetch(gw, "site-1"), second)["changes"]
        answers: list[Any] = []
        waiter = threading.Thread(
            target=lambda: answers.append(fetch(gw, "site-1", after=changes, wait=60))
        )
        waiter.start()
        time.sleep(0.5)  # the gateway is waiting on the second replica
        started = time.monotonic()
        grant = {"principal": "labgate:user:dora", "instrument": "*", "level": "Observer"}
        assert api.post("/api/v1/grants", headers=admin, json=grant).status_code == 201
        waiter.join(timeout=30)
        elapsed = time.monotonic() - started
        claims = bundle_of(answers[0], second)
        assert claims["changes"] > changes
        assert "labgate:user:dora" in {g["identity"] for g in claims["grants"]}
        assert elapsed < 2.0 + 5  # the bound of the wait, plus slack for a loaded machine


def test_one_gateway_cannot_hold_more_long_polls_than_its_share(
    two_replicas: tuple[Any, Any], gateway_identity: Any, tmp_path: Any
) -> None:
    server, _ = two_replicas
    chain, key, _ = gateway_identity(Profile.GATEWAY, "site-1")
    files = tls_identity(tmp_path, "gw", chain, key)
    with (
        server.api(verify=_context(server, files), timeout=30) as first,
        server.api(verify=_context(server, files), timeout=30) as second,
    ):
        changes = bundle_of(fetch(first, "site-1"), server)["changes"]
        answers: list[Any] = []
        waiter = threading.Thread(
            target=lambda: answers.append(fetch(first, "site-1", after=changes, wait=2))
        )
        waiter.start()
        time.sleep(0.5)
        refused = fetch(second, "site-1", after=changes, wait=2)
        waiter.join(timeout=30)
        assert refused.status_code == 429
        assert refused.json()["code"] == "throttled"
        assert answers[0].status_code == 204


def test_a_gateway_revoked_while_it_waits_gets_no_bundle(
    two_replicas: tuple[Any, Any], gateway_identity: Any, tmp_path: Any
) -> None:
    server, _ = two_replicas
    chain, key, serial = gateway_identity(Profile.GATEWAY, "site-1")
    files = tls_identity(tmp_path, "gw", chain, key)
    with server.api() as api, server.api(verify=_context(server, files), timeout=30) as gw:
        admin = api.admin()
        changes = bundle_of(fetch(gw, "site-1"), server)["changes"]
        answers: list[Any] = []
        waiter = threading.Thread(
            target=lambda: answers.append(fetch(gw, "site-1", after=changes, wait=60))
        )
        waiter.start()
        time.sleep(0.5)
        revoked = api.post(
            f"/api/v1/certificates/{serial:x}/revoke",
            headers=admin,
            json={"reason": "keyCompromise"},
        )
        assert revoked.status_code == 200, revoked.text
        waiter.join(timeout=30)
        assert answers[0].status_code == 403
        assert fetch(gw, "site-1").status_code == 403


def test_after_an_issuing_ca_rotation_a_bundle_carries_both_crls_and_old_gateways_get_it(
    settings: Any, clock: Any, tmp_path: Any
) -> None:
    """Rotated before `run`: a gateway whose certificate the retired issuing CA signed still
    fetches its bundle, and the bundle's CRL file holds one CRL per live issuing CA, the old one
    listing what was revoked of its own after the rotation."""
    import asyncio

    from labgate.control.layout import ca_root_path
    from labgate.gateway.bundles import fetch as gateway_fetch
    from labgate.gateway.bundles import read_bundle
    from labgate.gateway.config import ControlConfig
    from labgate.gateway.revocation import RevocationList

    passphrase = keystore.load_passphrase(settings)
    with CertificateAuthority.open(ca_dir(settings.data_dir), passphrase=passphrase) as ca:
        gateway = ca.issue(Profile.GATEWAY, "site-1", dns=["localhost"])
        ca.handed_out(gateway)
        lost = ca.issue(Profile.CLIENT, "alice")
        ca.handed_out(lost)
        old = ca.issuing
        new = ca.rotate_issuing(passphrase=passphrase)
        ca.revoke(lost.serial, "keyCompromise")
    assert gateway.key_pem is not None
    (tmp_path / "gw.crt").write_bytes(gateway.chain_pem)
    (tmp_path / "gw.key").write_bytes(gateway.key_pem)
    with run_in_thread(settings, clock=clock) as running:
        control = ControlConfig(
            url=running.url, gateway_name="site-1", server_ca=ca_root_path(settings.data_dir)
        )
        fetched = asyncio.run(
            gateway_fetch(
                control, cert=tmp_path / "gw.crt", key=tmp_path / "gw.key", instruments=("qs1",)
            )
        )
    assert fetched is not None
    token, jwks = fetched
    bundle = read_bundle(token, jwks, control=control, now=datetime.now(UTC), above_version=0)
    lists = RevocationList.all_from_pem(bundle.crl_pem, source="bundle")
    assert {r.issuer for r in lists} == {old.subject, new.subject}
    by_issuer = {r.issuer: r.serials for r in lists}
    assert lost.serial in by_issuer[old.subject]
    assert lost.serial not in by_issuer[new.subject]
