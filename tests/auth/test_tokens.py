"""Access tokens from the attacker's side: each forgery or misuse is refused with its own error."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import datetime, timedelta
from typing import Any

import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.x509.oid import NameOID
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from labgate.auth.errors import (
    AlgorithmNotAllowed,
    BadSignature,
    CertificateMismatch,
    ExcessiveLifetime,
    MalformedToken,
    MissingClaim,
    RetiredKeyExpired,
    TokenError,
    TokenExpired,
    TokenNotYetValid,
    UnknownKey,
    WrongAudience,
    WrongIssuer,
    WrongTokenType,
)
from labgate.auth.keyring import KeyRing, PublicKeySet
from labgate.auth.lifetimes import DEVICE_ACCESS_TTL, MAX_ACCESS_TTL, USER_ACCESS_TTL
from labgate.auth.tokens import (
    AccessClaims,
    certificate_thumbprint,
    mint_access_token,
    sign_claims,
    verify_access_token,
    verify_claims,
)

_B64_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
ISSUER = "https://control.lab.example"
AUDIENCE = "labgate-api"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _segment(document: dict[str, Any]) -> str:
    return _b64(json.dumps(document).encode())


def _mint(keyring: KeyRing, now: datetime, **overrides: Any) -> tuple[str, AccessClaims]:
    arguments: dict[str, Any] = {
        "issuer": ISSUER,
        "audience": AUDIENCE,
        "subject": "labgate:user:alice",
        "role": "viewer",
        "typ": "user",
        "ttl": USER_ACCESS_TTL,
        "now": now,
    }
    arguments.update(overrides)
    return mint_access_token(keyring, **arguments)


def _verify(token: str, keys: Any, now: datetime, **overrides: Any) -> AccessClaims:
    arguments: dict[str, Any] = {
        "issuer": ISSUER,
        "audience": AUDIENCE,
        "now": now,
        "expected_typ": "user",
    }
    arguments.update(overrides)
    return verify_access_token(token, keys, **arguments)


def _parts(token: str) -> tuple[dict[str, Any], dict[str, Any], str]:
    header, payload, signature = token.split(".")
    decode = base64.urlsafe_b64decode
    return (
        json.loads(decode(header + "==")),
        json.loads(decode(payload + "==")),
        signature,
    )


def test_genuine_token_verifies_with_every_claim(keyring: KeyRing, now: datetime) -> None:
    token, minted = _mint(keyring, now, role="operator")
    claims = _verify(token, keyring, now + timedelta(minutes=4))
    assert claims == minted
    header, payload, _ = _parts(token)
    assert header == {"alg": "EdDSA", "kid": keyring.current.kid, "typ": "at+jwt"}
    assert set(payload) == {"iss", "aud", "sub", "typ", "role", "jti", "iat", "nbf", "exp"}
    assert payload["exp"] - payload["iat"] == 300


def test_each_token_has_a_fresh_jti(keyring: KeyRing, now: datetime) -> None:
    assert _mint(keyring, now)[1].jti != _mint(keyring, now)[1].jti


def test_alg_none_is_refused(keyring: KeyRing, now: datetime) -> None:
    token, _ = _mint(keyring, now)
    _, payload, _ = _parts(token)
    for alg in ("none", "None", "NONE"):
        header = {"alg": alg, "kid": keyring.current.kid, "typ": "at+jwt"}
        forged = f"{_segment(header)}.{_segment(payload)}."
        with pytest.raises(AlgorithmNotAllowed):
            _verify(forged, keyring, now)


def test_hs256_signed_with_the_public_key_is_refused(keyring: KeyRing, now: datetime) -> None:
    # Algorithm confusion: the attacker knows the public key (it is published in the JWKS) and
    # uses it as an HMAC secret, hoping the verifier feeds its "key" to HMAC.
    public = keyring.current.public_key
    pem, raw, spki = (
        serialization.Encoding.PEM,
        serialization.Encoding.Raw,
        serialization.PublicFormat,
    )
    secrets_to_try = [
        public.public_bytes(pem, spki.SubjectPublicKeyInfo),
        public.public_bytes(raw, spki.Raw),
        json.dumps(keyring.jwks(now=now)["keys"][0]).encode(),
    ]  # fmt: skip
    _, payload, _ = _parts(_mint(keyring, now)[0])
    payload["role"] = "admin"
    for secret in secrets_to_try:
        for alg, digest in (("HS256", hashlib.sha256), ("HS512", hashlib.sha512)):
            header = {"alg": alg, "kid": keyring.current.kid, "typ": "at+jwt"}
            signing_input = f"{_segment(header)}.{_segment(payload)}"
            mac = hmac.new(secret, signing_input.encode(), digest).digest()
            with pytest.raises(AlgorithmNotAllowed):
                _verify(f"{signing_input}.{_b64(mac)}", keyring, now)


def test_other_asymmetric_algorithms_are_refused(keyring: KeyRing, now: datetime) -> None:
    token = jwt.encode(
        {"iss": ISSUER}, _es256_key(), algorithm="ES256",
        headers={"kid": keyring.current.kid, "typ": "at+jwt"},
    )  # fmt: skip
    with pytest.raises(AlgorithmNotAllowed):
        _verify(token, keyring, now)


def _es256_key() -> Any:
    from cryptography.hazmat.primitives.asymmetric import ec

    return ec.generate_private_key(ec.SECP256R1())


def test_tampered_payload_is_refused(keyring: KeyRing, now: datetime) -> None:
    token, _ = _mint(keyring, now)
    header_segment, _, signature = token.split(".")
    _, payload, _ = _parts(token)
    for change in ({"role": "admin"}, {"sub": "labgate:user:root"}, {"exp": payload["exp"] + 1}):
        tampered = f"{header_segment}.{_segment({**payload, **change})}.{signature}"
        with pytest.raises(BadSignature):
            _verify(tampered, keyring, now)


def test_signature_from_another_key_under_our_kid_is_refused(
    keyring: KeyRing, now: datetime
) -> None:
    token, _ = _mint(keyring, now)
    _, payload, _ = _parts(token)
    forged = jwt.encode(
        {**payload, "role": "admin"}, Ed25519PrivateKey.generate(), algorithm="EdDSA",
        headers={"kid": keyring.current.kid, "typ": "at+jwt"},
    )  # fmt: skip
    with pytest.raises(BadSignature):
        _verify(forged, keyring, now)


def test_token_from_another_key_ring_names_an_unknown_kid(keyring: KeyRing, now: datetime) -> None:
    other = KeyRing.generate(now=now)
    token, _ = _mint(other, now)
    with pytest.raises(UnknownKey):
        _verify(token, keyring, now)


def test_missing_kid_is_refused(keyring: KeyRing, now: datetime) -> None:
    token = jwt.encode(
        {"iss": ISSUER}, keyring.current.private_key, algorithm="EdDSA", headers={"typ": "at+jwt"}
    )
    with pytest.raises(UnknownKey):
        _verify(token, keyring, now)


def test_header_parameters_that_could_steer_verification_are_refused(
    keyring: KeyRing, now: datetime
) -> None:
    _, payload, _ = _parts(_mint(keyring, now)[0])
    for extra in ({"jku": "https://attacker.example/jwks"}, {"x5u": "https://a.example/c"},
                  {"jwk": {"kty": "OKP"}}, {"crit": ["exp"], "exp": 1}):  # fmt: skip
        header = {"alg": "EdDSA", "kid": keyring.current.kid, "typ": "at+jwt", **extra}
        signing_input = f"{_segment(header)}.{_segment(payload)}"
        signature = keyring.current.private_key.sign(signing_input.encode())
        token = f"{signing_input}.{_b64(signature)}"
        with pytest.raises(MalformedToken):
            _verify(token, keyring, now)


def test_wrong_audience_issuer_and_type_are_refused(keyring: KeyRing, now: datetime) -> None:
    token, _ = _mint(keyring, now)
    with pytest.raises(WrongAudience):
        _verify(token, keyring, now, audience="labgate-gateway")
    with pytest.raises(WrongIssuer):
        _verify(token, keyring, now, issuer="https://evil.example")
    with pytest.raises(WrongTokenType):
        _verify(token, keyring, now, expected_typ="device")


def test_user_token_cannot_pass_as_device_token(keyring: KeyRing, now: datetime) -> None:
    device_token, _ = _mint(keyring, now, typ="device", ttl=DEVICE_ACCESS_TTL)
    with pytest.raises(WrongTokenType):
        _verify(device_token, keyring, now, expected_typ="user")


def test_other_signed_documents_cannot_pass_as_access_tokens(
    keyring: KeyRing, now: datetime
) -> None:
    # A gateway bundle is signed with the same key; its header typ keeps it apart.
    _, payload, _ = _parts(_mint(keyring, now)[0])
    bundle = sign_claims(keyring, payload, typ="labgate-bundle+jwt")
    with pytest.raises(WrongTokenType):
        _verify(bundle, keyring, now)
    access, _ = _mint(keyring, now)
    with pytest.raises(WrongTokenType):
        verify_claims(access, keyring, typ="labgate-bundle+jwt", issuer=ISSUER,
                      audience=AUDIENCE, now=now)  # fmt: skip


def test_expired_token_is_refused(keyring: KeyRing, now: datetime) -> None:
    token, claims = _mint(keyring, now)
    assert _verify(token, keyring, claims.expires_at - timedelta(seconds=1)) == claims
    with pytest.raises(TokenExpired):
        _verify(token, keyring, claims.expires_at + timedelta(seconds=5))
    with pytest.raises(TokenExpired):
        _verify(token, keyring, now + timedelta(days=1))


def test_token_from_the_future_is_refused(keyring: KeyRing, now: datetime) -> None:
    token, _ = _mint(keyring, now + timedelta(minutes=2))
    with pytest.raises(TokenNotYetValid):
        _verify(token, keyring, now)
    _, payload, _ = _parts(_mint(keyring, now)[0])
    later_nbf = sign_claims(keyring, {**payload, "nbf": payload["iat"] + 60}, typ="at+jwt")
    with pytest.raises(TokenNotYetValid):
        _verify(later_nbf, keyring, now)
    assert _verify(later_nbf, keyring, now + timedelta(seconds=61)).subject


def test_missing_or_mistyped_claims_are_refused(keyring: KeyRing, now: datetime) -> None:
    _, payload, _ = _parts(_mint(keyring, now)[0])
    for name in ("sub", "role", "jti", "exp", "iss", "typ"):
        stripped = {k: v for k, v in payload.items() if k != name}
        with pytest.raises(MissingClaim):
            _verify(sign_claims(keyring, stripped, typ="at+jwt"), keyring, now)
    for name, bad in (("exp", "tomorrow"), ("exp", True), ("sub", 42), ("cnf", "abc")):
        with pytest.raises(MissingClaim):
            _verify(sign_claims(keyring, {**payload, name: bad}, typ="at+jwt"), keyring, now)


def test_garbage_is_malformed(keyring: KeyRing, now: datetime) -> None:
    for garbage in ("", "abc", "a.b", "a.b.c.d", "!!!.???.###", "x" * 10_000 + ".a.b"):
        with pytest.raises(MalformedToken):
            _verify(garbage, keyring, now)


def test_retired_key_verifies_until_its_tokens_expire_then_not(
    keyring: KeyRing, now: datetime
) -> None:
    token, claims = _mint(keyring, now, typ="device", ttl=DEVICE_ACCESS_TTL)
    rotated_at = now + timedelta(minutes=1)
    rotated = keyring.rotate(now=rotated_at)
    assert rotated.current.kid != keyring.current.kid
    assert keyring.current.kid in rotated.kids()
    # The last token the old key signed is still good right up to its expiry.
    last = claims.expires_at - timedelta(seconds=1)
    assert _verify(token, rotated, last, expected_typ="device") == claims
    # After the window the key itself is gone: a token it signed with a forged far-away exp
    # is refused even though its signature is genuine.
    _, payload, _ = _parts(token)
    long_lived = sign_claims(keyring, {**payload, "exp": payload["exp"] + 10**6}, typ="at+jwt")
    after_window = rotated_at + MAX_ACCESS_TTL
    with pytest.raises(RetiredKeyExpired):
        _verify(long_lived, rotated, after_window, expected_typ="device")
    assert keyring.current.kid not in {k["kid"] for k in rotated.jwks(now=after_window)["keys"]}


def test_retired_key_no_longer_signs(keyring: KeyRing, now: datetime) -> None:
    rotated = keyring.rotate(now=now)
    _, claims = _mint(rotated, now)
    assert claims.key_id == rotated.current.kid != keyring.current.kid


def test_rotation_drops_keys_past_their_window(keyring: KeyRing, now: datetime) -> None:
    once = keyring.rotate(now=now)
    twice = once.rotate(now=now + MAX_ACCESS_TTL + timedelta(seconds=1))
    assert keyring.current.kid not in twice.kids()
    assert once.current.kid in twice.kids()


def test_ttl_longer_than_the_key_window_is_refused(keyring: KeyRing, now: datetime) -> None:
    with pytest.raises(ValueError, match="ttl"):
        _mint(keyring, now, ttl=MAX_ACCESS_TTL + timedelta(seconds=1))
    with pytest.raises(ValueError, match="ttl"):
        _mint(keyring, now, ttl=timedelta(0))


def test_naive_now_is_refused(keyring: KeyRing, now: datetime) -> None:
    with pytest.raises(ValueError, match="timezone"):
        _mint(keyring, now.replace(tzinfo=None))


def test_verifies_against_published_jwks(keyring: KeyRing, now: datetime) -> None:
    token, claims = _mint(keyring, now)
    published = json.loads(json.dumps(keyring.jwks(now=now)))
    assert _verify(token, PublicKeySet.from_jwks(published), now) == claims


def test_certificate_bound_token_requires_that_certificate(keyring: KeyRing, now: datetime) -> None:
    # Two real certificates for the same device name with different keys: what an attacker
    # who copied the token would present with a key of their own.
    device_cert = _device_certificate_der(now)
    other_cert = _device_certificate_der(now)
    thumbprint = certificate_thumbprint(device_cert)
    token, _ = _mint(keyring, now, typ="device", ttl=DEVICE_ACCESS_TTL, cnf_x5t_s256=thumbprint)
    claims = _verify(token, keyring, now, expected_typ="device", certificate_der=device_cert)
    assert claims.cnf_x5t_s256 == thumbprint
    with pytest.raises(CertificateMismatch):
        _verify(token, keyring, now, expected_typ="device", certificate_der=other_cert)
    with pytest.raises(CertificateMismatch):
        _verify(token, keyring, now, expected_typ="device")
    _, payload, _ = _parts(token)
    assert payload["cnf"] == {"x5t#S256": thumbprint}


def _device_certificate_der(now: datetime) -> bytes:
    key = Ed25519PrivateKey.generate()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "device-7")])
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier("labgate:device:7")]),
            critical=False,
        )
        .sign(key, None)
    )
    return certificate.public_bytes(serialization.Encoding.DER)


def test_thumbprint_is_rfc8705_base64url_sha256() -> None:
    der = b"some der bytes"
    expected = base64.urlsafe_b64encode(hashlib.sha256(der).digest()).rstrip(b"=").decode()
    assert certificate_thumbprint(der) == expected
    assert "=" not in expected


def test_every_refusal_is_a_token_error() -> None:
    for error in (AlgorithmNotAllowed, BadSignature, CertificateMismatch, ExcessiveLifetime,
                  MalformedToken, MissingClaim, RetiredKeyExpired, TokenExpired, TokenNotYetValid,
                  UnknownKey, WrongAudience, WrongIssuer, WrongTokenType):  # fmt: skip
        assert issubclass(error, TokenError)


def test_endpoint_open_to_several_types_still_refuses_others(
    keyring: KeyRing, now: datetime
) -> None:
    user_token, _ = _mint(keyring, now)
    device_token, _ = _mint(keyring, now, typ="device", ttl=DEVICE_ACCESS_TTL)
    assert _verify(user_token, keyring, now, expected_typ=("user", "device")).typ == "user"
    assert _verify(device_token, keyring, now, expected_typ=("user", "device")).typ == "device"
    gateway_token, _ = _mint(keyring, now, typ="gateway")
    with pytest.raises(WrongTokenType):
        _verify(gateway_token, keyring, now, expected_typ=("user", "device"))


def test_refusal_messages_do_not_repeat_the_token(keyring: KeyRing, now: datetime) -> None:
    token, _ = _mint(keyring, now)
    header_segment, payload_segment, signature = token.split(".")
    attempts = [
        (f"{header_segment}.{payload_segment}.{signature[:-4]}AAAA", BadSignature),
        (token, WrongAudience),
        (f"{header_segment}.!!{payload_segment}.{signature}", MalformedToken),
    ]
    for attempt, error in attempts:
        with pytest.raises(error) as caught:
            _verify(attempt, keyring, now, audience="elsewhere")
        message = str(caught.value)
        assert signature[:20] not in message and payload_segment[:20] not in message


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(position=st.integers(min_value=0), replacement=st.sampled_from(_B64_CHARS + "."))
def test_any_single_character_change_is_refused(
    keyring: KeyRing, now: datetime, position: int, replacement: str
) -> None:
    token, _ = _mint(keyring, now, role="viewer")
    index = position % len(token)
    assume(token[index] != replacement)
    forged = token[:index] + replacement + token[index + 1 :]
    with pytest.raises(TokenError):
        _verify(forged, keyring, now)


def test_non_canonical_base64_spelling_is_refused(keyring: KeyRing, now: datetime) -> None:
    # The signature's last character carries 4 spare bits: flipping them leaves the decoded
    # bytes the same, so a lax verifier would accept a second spelling of the same token.
    token, _ = _mint(keyring, now)
    last = token[-1]
    spare = _B64_CHARS[_B64_CHARS.index(last) ^ 1]
    with pytest.raises(MalformedToken, match="canonical"):
        _verify(token[:-1] + spare, keyring, now)


def test_signed_token_with_an_excessive_lifetime_is_refused(
    keyring: KeyRing, now: datetime
) -> None:
    _, payload, _ = _parts(_mint(keyring, now)[0])
    too_long = int(MAX_ACCESS_TTL.total_seconds()) + 1
    forged = sign_claims(keyring, {**payload, "exp": payload["iat"] + too_long}, typ="at+jwt")
    with pytest.raises(ExcessiveLifetime):
        _verify(forged, keyring, now)


def test_gateway_bundle_verifies_against_published_jwks_and_nowhere_else(
    keyring: KeyRing, now: datetime
) -> None:
    bundle_claims = {
        "iss": ISSUER, "aud": "labgate:gateway:bench3", "iat": int(now.timestamp()),
        "exp": int((now + timedelta(hours=1)).timestamp()), "version": 7,
        "grants": [{"identity": "labgate:user:alice", "instrument": "*", "level": "Observer"}],
    }  # fmt: skip
    bundle = sign_claims(keyring, bundle_claims, typ="labgate-bundle+jwt")
    published = PublicKeySet.from_jwks(json.loads(json.dumps(keyring.jwks(now=now))))

    def verify(audience: str, at: datetime) -> dict[str, Any]:
        return verify_claims(bundle, published, typ="labgate-bundle+jwt", issuer=ISSUER,
                             audience=audience, now=at)  # fmt: skip

    assert verify("labgate:gateway:bench3", now)["version"] == 7
    with pytest.raises(WrongAudience):
        verify("labgate:gateway:bench4", now)
    with pytest.raises(TokenExpired):
        verify("labgate:gateway:bench3", now + timedelta(hours=2))
    with pytest.raises(UnknownKey):
        verify_claims(bundle, KeyRing.generate(now=now), typ="labgate-bundle+jwt",
                      issuer=ISSUER, audience="labgate:gateway:bench3", now=now)  # fmt: skip


def test_binding_to_something_that_is_not_a_thumbprint_is_refused_at_minting(
    keyring: KeyRing, now: datetime
) -> None:
    for bad in ("", "abc", "x" * 43 + "=", "!" * 43):
        with pytest.raises(ValueError, match="cnf_x5t_s256"):
            _mint(keyring, now, cnf_x5t_s256=bad)
