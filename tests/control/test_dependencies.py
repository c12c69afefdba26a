"""Access tokens from the attacker's side: forged, altered, misaddressed, expired, revoked."""

from __future__ import annotations

import base64
import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from labgate.auth.keyring import KeyRing
from labgate.auth.tokens import mint_access_token
from labgate.control import keystore


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def claims(api: Any, **overrides: Any) -> dict[str, Any]:
    now = int(datetime.now(UTC).timestamp())
    base = {
        "iss": api.settings.issuer,
        "aud": api.settings.audience,
        "sub": "labgate:user:admin",
        "typ": "user",
        "role": "admin",
        "jti": "forged-1",
        "iat": now,
        "nbf": now,
        "exp": now + 300,
    }
    base.update(overrides)
    return base


def ring(api: Any) -> KeyRing:
    settings = api.settings
    return keystore.read_keyring(
        keystore.keyring_path(settings), keystore.load_passphrase(settings)
    )


def assert_refused(api: Any, token: str) -> None:
    response = api.get("/api/v1/me", headers=api.bearer(token))
    assert response.status_code == 401, response.text
    assert response.json()["code"] == "authentication_failed"


def test_alg_none_is_refused(api: Any) -> None:
    api.admin_tokens()
    header = {"alg": "none", "typ": "at+jwt", "kid": ring(api).current.kid}
    token = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims(api)).encode())}."
    assert_refused(api, token)


def test_hs256_keyed_with_the_public_key_is_refused(api: Any) -> None:
    key = ring(api).current
    public = key.public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    token = jwt.encode(
        claims(api), public, algorithm="HS256", headers={"kid": key.kid, "typ": "at+jwt"}
    )
    assert_refused(api, token)


def test_token_signed_by_another_key_is_refused(api: Any) -> None:
    stranger = KeyRing.generate(now=datetime.now(UTC))
    token, _ = mint_access_token(
        stranger,
        issuer=api.settings.issuer,
        audience=api.settings.audience,
        subject="labgate:user:admin",
        role="admin",
        typ="user",
        ttl=timedelta(minutes=5),
        now=datetime.now(UTC),
    )
    assert_refused(api, token)


@pytest.mark.parametrize(
    "field, value",
    [("aud", "labgate:elsewhere"), ("iss", "someone-else"), ("typ", "robot")],
)
def test_wrong_audience_issuer_or_type_is_refused(api: Any, field: str, value: str) -> None:
    key = ring(api).current
    forged = claims(api, **{field: value})
    token = jwt.encode(
        forged, key.private_key, algorithm="EdDSA", headers={"kid": key.kid, "typ": "at+jwt"}
    )
    assert_refused(api, token)


def test_expired_and_not_yet_valid_tokens_are_refused(api: Any, clock: Any) -> None:
    key = ring(api).current
    later = int((datetime.now(UTC) + timedelta(hours=1)).timestamp())
    future = jwt.encode(
        claims(api, iat=later, nbf=later, exp=later + 300),
        key.private_key,
        algorithm="EdDSA",
        headers={"kid": key.kid, "typ": "at+jwt"},
    )
    assert_refused(api, future)
    tokens = api.admin_tokens()
    assert api.get("/api/v1/me", headers=api.bearer(tokens["access_token"])).status_code == 200
    clock.advance(5 * 60 + 10)
    assert_refused(api, tokens["access_token"])


def test_altered_payload_is_refused(api: Any) -> None:
    tokens = api.admin_tokens()
    header, payload, signature = tokens["access_token"].split(".")
    body = json.loads(base64.urlsafe_b64decode(payload + "=="))
    body["role"] = "admin"
    body["sub"] = "labgate:user:someone"
    assert_refused(api, f"{header}.{b64(json.dumps(body).encode())}.{signature}")


def test_missing_or_malformed_authorization_is_refused(api: Any) -> None:
    assert api.get("/api/v1/me").status_code == 401
    assert api.get("/api/v1/me", headers={"Authorization": "Basic YTpi"}).status_code == 401
    assert_refused(api, "not.a.token")


def test_rotated_key_keeps_verifying_old_tokens_and_signs_new_ones(api: Any) -> None:
    old = api.admin_tokens()
    settings = api.settings
    rotated = keystore.rotate(
        keystore.keyring_path(settings),
        keystore.load_passphrase(settings),
        now=datetime.now(UTC),
    )
    time.sleep(keystore.RELOAD_INTERVAL_SECONDS + 0.1)  # the app re-reads the ring this often
    assert api.get("/api/v1/me", headers=api.bearer(old["access_token"])).status_code == 200
    fresh = api.refresh(old["refresh_token"]).json()
    assert jwt.get_unverified_header(fresh["access_token"])["kid"] == rotated.current.kid
    keys = api.get("/.well-known/jwks.json").json()["keys"]
    token_kids = {k["kid"] for k in keys if k["use"] == "sig"}
    assert token_kids == {rotated.current.kid, rotated.retired[0].kid}
    # The jobs key is not a token key and did not rotate with them.
    assert [k["use"] for k in keys].count("labgate-jobs") == 1
