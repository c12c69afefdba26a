"""The signing key ring: storage round trips, and stored or published keys that must not load."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from labgate.auth.errors import KeyRingError, RetiredKeyExpired, UnknownKey
from labgate.auth.keyring import KeyRing, PublicKeySet, SigningKey, key_id
from labgate.auth.lifetimes import MAX_ACCESS_TTL

PASSPHRASE = b"correct horse battery staple"


def test_round_trip_keeps_current_and_retired_keys(keyring: KeyRing, now: datetime) -> None:
    ring = keyring.rotate(now=now).rotate(now=now + timedelta(hours=1))
    loaded = KeyRing.from_json(ring.to_json(passphrase=PASSPHRASE), passphrase=PASSPHRASE)
    assert loaded.kids() == ring.kids()
    assert [k.verify_until for k in loaded.retired] == [k.verify_until for k in ring.retired]
    message = b"signed before storage"
    signature = ring.current.private_key.sign(message)
    loaded.current.public_key.verify(signature, message)


def test_stored_document_holds_no_clear_key_when_encrypted(keyring: KeyRing) -> None:
    text = keyring.to_json(passphrase=PASSPHRASE)
    assert "ENCRYPTED PRIVATE KEY" in text
    assert "BEGIN PRIVATE KEY" not in text
    assert "BEGIN PRIVATE KEY" in keyring.to_json()


def test_wrong_or_missing_passphrase_is_a_key_ring_error(keyring: KeyRing) -> None:
    text = keyring.to_json(passphrase=PASSPHRASE)
    with pytest.raises(KeyRingError, match="wrong passphrase"):
        KeyRing.from_json(text, passphrase=b"not it")
    with pytest.raises(KeyRingError, match="no passphrase"):
        KeyRing.from_json(text)


def test_swapped_key_under_a_kept_kid_is_refused(keyring: KeyRing) -> None:
    document = json.loads(keyring.to_json())
    other = json.loads(KeyRing.generate(now=keyring.current.created_at).to_json())
    document["current"]["private_key_pem"] = other["current"]["private_key_pem"]
    with pytest.raises(KeyRingError, match="thumbprint"):
        KeyRing.from_json(json.dumps(document))


def test_malformed_documents_name_the_problem(keyring: KeyRing) -> None:
    good = json.loads(keyring.to_json())
    cases = [
        ("not json", "not valid JSON"),
        (json.dumps({"format": "other"}), "format"),
        (json.dumps({**good, "version": 99}), "version 99"),
        (json.dumps({**good, "retired": "x"}), "must be a list"),
        (json.dumps({**good, "current": {**good["current"], "private_key_pem": 5}}), "no private"),
        (json.dumps({**good, "current": {**good["current"], "created_at": "soon"}}), "bad dates"),
        (json.dumps({**good, "retired": [good["current"]]}), "verify_until"),
    ]
    for text, expected in cases:
        with pytest.raises(KeyRingError, match=expected):
            KeyRing.from_json(text)


def test_kid_is_the_rfc7638_thumbprint(keyring: KeyRing) -> None:
    # RFC 8037 appendix A.3 gives the thumbprint of its example Ed25519 key.
    example = Ed25519PrivateKey.from_private_bytes(
        bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
    )
    assert key_id(example.public_key()) == "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
    assert keyring.current.kid == key_id(keyring.current.public_key)


def test_jwks_has_only_public_material(keyring: KeyRing, now: datetime) -> None:
    jwks = keyring.jwks(now=now)
    (entry,) = jwks["keys"]
    assert entry == {**entry, "kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "use": "sig"}
    assert "d" not in entry
    assert set(entry) == {"kty", "crv", "x", "kid", "alg", "use"}


def test_jwks_lists_retired_keys_only_inside_their_window(keyring: KeyRing, now: datetime) -> None:
    rotated = keyring.rotate(now=now)
    inside = {
        k["kid"] for k in rotated.jwks(now=now + MAX_ACCESS_TTL - timedelta(seconds=1))["keys"]
    }
    after = {k["kid"] for k in rotated.jwks(now=now + MAX_ACCESS_TTL)["keys"]}
    assert inside == {keyring.current.kid, rotated.current.kid}
    assert after == {rotated.current.kid}


def test_public_key_set_refuses_other_key_types_and_lying_kids(
    keyring: KeyRing, now: datetime
) -> None:
    (entry,) = keyring.jwks(now=now)["keys"]
    bad_sets: list[tuple[dict[str, Any], str]] = [
        ({"keys": [{**entry, "kty": "RSA"}]}, "expected OKP Ed25519"),
        ({"keys": [{**entry, "crv": "X25519"}]}, "expected OKP Ed25519"),
        ({"keys": [{**entry, "alg": "HS256"}]}, "alg"),
        ({"keys": [{**entry, "kid": "someone-else"}]}, "thumbprint"),
        ({"keys": [{**entry, "x": "AAAA"}]}, "malformed"),
        ({"keys": [{**entry, "x": "!!"}]}, "malformed"),
        ({"keys": "all of them"}, "no 'keys'"),
    ]
    for jwks, expected in bad_sets:
        with pytest.raises(KeyRingError, match=expected):
            PublicKeySet.from_jwks(jwks)


def test_public_key_set_from_a_ring_keeps_retirement(keyring: KeyRing, now: datetime) -> None:
    rotated = keyring.rotate(now=now)
    public = rotated.public_keys(now=now)
    assert public.verification_key(keyring.current.kid, now=now) is not None
    with pytest.raises(RetiredKeyExpired):
        public.verification_key(keyring.current.kid, now=now + MAX_ACCESS_TTL)
    with pytest.raises(UnknownKey):
        public.verification_key("nope", now=now)


def test_rotation_needs_a_positive_window(keyring: KeyRing, now: datetime) -> None:
    with pytest.raises(ValueError, match="positive"):
        keyring.rotate(now=now, keep_verifying_for=timedelta(0))


def test_signing_key_repr_shows_no_private_key(keyring: KeyRing) -> None:
    assert "private" not in repr(keyring.current)
    assert isinstance(keyring.current, SigningKey)


def test_empty_passphrase_is_refused_rather_than_storing_in_clear(keyring: KeyRing) -> None:
    with pytest.raises(KeyRingError, match="empty passphrase"):
        keyring.to_json(passphrase=b"")
