"""Ed25519 signing keys with key ids: the current key, and retired keys that still verify.

Rotation (`KeyRing.rotate`) makes a new current key and retires the old one. A retired key no
longer signs, but keeps verifying until every token it could have signed has expired
(`verify_until` = retirement time + the longest token lifetime), then drops out. The ``kid`` of
a key is its RFC 7638 JWK thumbprint, so it is derived from the key and checked on load.

Storage is the server's business: `to_json` gives a JSON document holding PKCS#8 PEM private
keys (encrypted when a passphrase is given), and the server writes it atomically, mode 0600.
`jwks` gives the public half for ``/.well-known/jwks.json``; `PublicKeySet.from_jwks` reads it
back on the verifying side (a gateway).
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Protocol

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from labgate.auth.clock import require_aware
from labgate.auth.errors import KeyRingError, RetiredKeyExpired, UnknownKey
from labgate.auth.lifetimes import MAX_ACCESS_TTL

_FORMAT = "labgate-keyring"
_B64URL_ALPHABET = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
_VERSION = 1


def b64url(data: bytes) -> str:
    """Base64url without padding (RFC 7515 section 2)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """Inverse of b64url; ValueError (binascii.Error) on anything that is not base64url."""
    if not text.isascii() or not set(text) <= _B64URL_ALPHABET:
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _raw_public(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id(public_key: Ed25519PublicKey) -> str:
    """RFC 7638 thumbprint of the key's JWK: members in lexicographic order, no whitespace."""
    canonical = json.dumps(
        {"crv": "Ed25519", "kty": "OKP", "x": b64url(_raw_public(public_key))},
        separators=(",", ":"),
        sort_keys=True,
    )
    return b64url(hashlib.sha256(canonical.encode("ascii")).digest())


class VerificationKeys(Protocol):
    """What a verifier needs: the public key for a ``kid`` at a given time."""

    def verification_key(self, kid: str, *, now: datetime) -> Ed25519PublicKey: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class SigningKey:
    """One Ed25519 key. `verify_until` is None for the current key."""

    private_key: Ed25519PrivateKey = field(repr=False)
    created_at: datetime
    verify_until: datetime | None = None
    kid: str = field(init=False)

    def __post_init__(self) -> None:
        require_aware(self.created_at, name="created_at")
        object.__setattr__(self, "kid", key_id(self.private_key.public_key()))

    @property
    def public_key(self) -> Ed25519PublicKey:
        return self.private_key.public_key()

    def jwk(self, *, use: str = "sig") -> dict[str, str]:
        return {
            "kty": "OKP",
            "crv": "Ed25519",
            "x": b64url(_raw_public(self.public_key)),
            "kid": self.kid,
            "alg": "EdDSA",
            "use": use,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class KeyRing:
    """The current signing key and the retired keys still inside their verification window."""

    current: SigningKey
    retired: tuple[SigningKey, ...] = ()

    @classmethod
    def generate(cls, *, now: datetime) -> KeyRing:
        """A key ring with one fresh key."""
        return cls(current=SigningKey(private_key=Ed25519PrivateKey.generate(), created_at=now))

    def rotate(self, *, now: datetime, keep_verifying_for: timedelta = MAX_ACCESS_TTL) -> KeyRing:
        """A new ring: a fresh current key; the old one verifies for `keep_verifying_for` more.

        `keep_verifying_for` must be at least the longest lifetime of anything the old key
        signed (access tokens: MAX_ACCESS_TTL; pass more if longer-lived documents are signed).
        """
        require_aware(now)
        if keep_verifying_for <= timedelta(0):
            raise ValueError(f"keep_verifying_for must be positive, got {keep_verifying_for}")
        old = replace(self.current, verify_until=now + keep_verifying_for)
        still_valid = tuple(k for k in self.retired if _verifies_at(k, now))
        fresh = SigningKey(private_key=Ed25519PrivateKey.generate(), created_at=now)
        return KeyRing(current=fresh, retired=(old, *still_valid))

    def verification_key(self, kid: str, *, now: datetime) -> Ed25519PublicKey:
        """The public key for `kid`; UnknownKey or RetiredKeyExpired when there is none now."""
        require_aware(now)
        for key in (self.current, *self.retired):
            if key.kid == kid:
                if not _verifies_at(key, now):
                    raise RetiredKeyExpired(
                        f"key {kid!r} was retired and stopped verifying at {_iso(key.verify_until)}"
                    )
                return key.public_key
        raise UnknownKey(f"no key with kid {kid!r}; known: {', '.join(self.kids())}")

    def kids(self) -> tuple[str, ...]:
        return (self.current.kid, *(k.kid for k in self.retired))

    def public_keys(self, *, now: datetime) -> PublicKeySet:
        """The public keys that verify at `now`, with their windows."""
        require_aware(now)
        return PublicKeySet(
            keys={
                k.kid: (k.public_key, k.verify_until)
                for k in (self.current, *self.retired)
                if _verifies_at(k, now)
            }
        )

    def jwks(self, *, now: datetime, use: str = "sig") -> dict[str, list[dict[str, str]]]:
        """The JWK Set to publish: the current key and the retired keys that still verify."""
        require_aware(now)
        keys = [k.jwk(use=use) for k in (self.current, *self.retired) if _verifies_at(k, now)]
        return {"keys": keys}

    def to_json(self, *, passphrase: bytes | None = None) -> str:
        """Serialise for storage; private keys are encrypted under `passphrase` when given."""
        document = {
            "format": _FORMAT,
            "version": _VERSION,
            "current": _dump_key(self.current, passphrase),
            "retired": [_dump_key(k, passphrase) for k in self.retired],
        }
        return json.dumps(document, indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes, *, passphrase: bytes | None = None) -> KeyRing:
        """Load what `to_json` wrote; KeyRingError names what is wrong (never the key)."""
        try:
            document = json.loads(text)
        except (ValueError, UnicodeDecodeError) as error:
            raise KeyRingError(f"key ring is not valid JSON: {error}") from None
        if not isinstance(document, dict) or document.get("format") != _FORMAT:
            raise KeyRingError(f"key ring document lacks format {_FORMAT!r}")
        if document.get("version") != _VERSION:
            raise KeyRingError(
                f"key ring version {document.get('version')!r} is not supported; "
                f"expected {_VERSION}"
            )
        retired = document.get("retired", [])
        if not isinstance(retired, list):
            raise KeyRingError("key ring 'retired' must be a list")
        current = _load_key(document.get("current"), passphrase, retired=False)
        return cls(
            current=current,
            retired=tuple(_load_key(entry, passphrase, retired=True) for entry in retired),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class PublicKeySet:
    """Public keys by ``kid``, each with the time it stops verifying (None: no end known)."""

    keys: Mapping[str, tuple[Ed25519PublicKey, datetime | None]]

    @classmethod
    def from_jwks(cls, jwks: Mapping[str, Any], *, use: str = "sig") -> PublicKeySet:
        """Read a JWK Set's keys for `use` ("sig": token signing keys; the jobs keys have their
        own use, so a verifier of one never holds the other); only Ed25519 OKP keys are taken,
        anything else is refused."""
        entries = jwks.get("keys")
        if not isinstance(entries, list):
            raise KeyRingError("JWKS has no 'keys' list")
        keys: dict[str, tuple[Ed25519PublicKey, datetime | None]] = {}
        for entry in entries:
            if isinstance(entry, dict) and entry.get("use", "sig") != use:
                continue
            public_key = _public_from_jwk(entry)
            kid = entry.get("kid")
            if kid != key_id(public_key):
                raise KeyRingError(
                    f"JWKS entry kid {kid!r} is not the RFC 7638 thumbprint of its key"
                )
            keys[kid] = (public_key, None)
        return cls(keys=keys)

    def verification_key(self, kid: str, *, now: datetime) -> Ed25519PublicKey:
        require_aware(now)
        if kid not in self.keys:
            raise UnknownKey(f"no key with kid {kid!r}; known: {', '.join(self.keys)}")
        public_key, verify_until = self.keys[kid]
        if verify_until is not None and now >= verify_until:
            raise RetiredKeyExpired(
                f"key {kid!r} was retired and stopped verifying at {_iso(verify_until)}"
            )
        return public_key


def _public_from_jwk(entry: Any) -> Ed25519PublicKey:
    if not isinstance(entry, dict):
        raise KeyRingError("JWKS entry is not an object")
    if entry.get("kty") != "OKP" or entry.get("crv") != "Ed25519":
        raise KeyRingError(
            f"JWKS entry {entry.get('kid')!r} is kty={entry.get('kty')!r} "
            f"crv={entry.get('crv')!r}; expected OKP Ed25519"
        )
    if entry.get("alg", "EdDSA") != "EdDSA":
        raise KeyRingError(f"JWKS entry {entry.get('kid')!r} is for alg {entry.get('alg')!r}")
    try:
        return Ed25519PublicKey.from_public_bytes(b64url_decode(str(entry.get("x", ""))))
    except ValueError:
        raise KeyRingError(f"JWKS entry {entry.get('kid')!r} has a malformed 'x'") from None


def _verifies_at(key: SigningKey, now: datetime) -> bool:
    return key.verify_until is None or now < key.verify_until


def _iso(moment: datetime | None) -> str:
    return moment.isoformat() if moment is not None else "never"


def _dump_key(key: SigningKey, passphrase: bytes | None) -> dict[str, str | None]:
    if passphrase is not None and not passphrase:
        raise KeyRingError("an empty passphrase would store the key ring unprotected")
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase)
        if passphrase is not None
        else serialization.NoEncryption()
    )
    pem = key.private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )
    return {
        "kid": key.kid,
        "created_at": key.created_at.isoformat(),
        "verify_until": _iso(key.verify_until) if key.verify_until else None,
        "private_key_pem": pem.decode("ascii"),
    }


def _load_key(entry: Any, passphrase: bytes | None, *, retired: bool) -> SigningKey:
    if not isinstance(entry, dict):
        raise KeyRingError("key ring entry is not an object")
    kid = entry.get("kid")
    private_key = _load_private(entry.get("private_key_pem"), passphrase, kid)
    try:
        created_at = datetime.fromisoformat(entry["created_at"])
        until = entry.get("verify_until")
        verify_until = datetime.fromisoformat(until) if until else None
        key = SigningKey(private_key=private_key, created_at=created_at, verify_until=verify_until)
    except (KeyError, TypeError, ValueError) as error:
        raise KeyRingError(f"key ring entry {kid!r} has bad dates: {error}") from None
    if key.kid != kid:
        raise KeyRingError(f"key ring entry {kid!r} holds a key whose thumbprint is {key.kid!r}")
    if retired != (verify_until is not None):
        expected = "a verify_until" if retired else "no verify_until"
        raise KeyRingError(f"key ring entry {kid!r} must have {expected}")
    return key


def _load_private(pem: Any, passphrase: bytes | None, kid: Any) -> Ed25519PrivateKey:
    if not isinstance(pem, str):
        raise KeyRingError(f"key ring entry {kid!r} has no private_key_pem")
    try:
        key = serialization.load_pem_private_key(pem.encode("ascii"), password=passphrase)
    except TypeError:
        raise KeyRingError(
            f"key ring entry {kid!r}: key is encrypted and no passphrase was given, "
            "or a passphrase was given for an unencrypted key"
        ) from None
    except (ValueError, UnsupportedAlgorithm):
        raise KeyRingError(
            f"key ring entry {kid!r}: private key cannot be read (wrong passphrase or corrupt PEM)"
        ) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyRingError(f"key ring entry {kid!r} is not an Ed25519 key")
    return key
