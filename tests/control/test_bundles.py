"""Gateway bundles: only the gateway's own certificate gets one, signed, addressed, growing."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from cryptography import x509

from labgate.auth.keyring import PublicKeySet
from labgate.auth.tokens import verify_claims
from labgate.control import keystore
from labgate.control.layout import ca_dir
from labgate.pki.authority import CertificateAuthority
from labgate.pki.profiles import Profile


@pytest.fixture
def gateway_identity(live_server: Any) -> Any:
    """Issue a certificate with the CA on disk, as `labgate ca issue` would."""
    settings = live_server.settings
    passphrase = keystore.load_passphrase(settings)

    def issue(profile: Profile, name: str) -> tuple[bytes, bytes, int]:
        with CertificateAuthority.open(ca_dir(settings.data_dir), passphrase=passphrase) as ca:
            issued = ca.issue(
                profile, name, dns=["localhost"] if profile is Profile.GATEWAY else []
            )
        assert issued.key_pem is not None
        return issued.chain_pem, issued.key_pem, issued.serial

    return issue


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
