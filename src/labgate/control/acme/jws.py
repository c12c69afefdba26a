"""JWS as ACME uses it (RFC 8555 section 6.2, RFC 7515 flattened JSON serialization).

Every POST is one JWS whose protected header names the algorithm, a fresh nonce, the URL it was
sent to, and either the account (`kid`, an account URL) or, for new accounts and revocation by
certificate key, the public key itself (`jwk`). Nothing is taken from an unprotected header.

Algorithms: ES256 (P-256) and EdDSA (Ed25519), as the design asks of account keys; ES384; and
RS256 with at least 2048-bit keys, because certbot makes every account key RSA. The algorithm
must fit the key: an `alg` of one family over a key of another is refused before any signature
is checked (no "none", no HMAC over a public key).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from labgate.auth.keyring import b64url, b64url_decode
from labgate.control.acme.errors import (
    BadNonce,
    BadPublicKey,
    BadSignatureAlgorithm,
    Malformed,
    Unauthorized,
)
from labgate.pki.keys import MIN_RSA_BITS

AccountKey = ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | rsa.RSAPublicKey

# ECDSA alg -> (curve, hash, bytes of each of r and s in the JWS signature)
_CURVES: dict[str, tuple[type[ec.EllipticCurve], hashes.HashAlgorithm, int]] = {
    "ES256": (ec.SECP256R1, hashes.SHA256(), 32),
    "ES384": (ec.SECP384R1, hashes.SHA384(), 48),
}
_CRV = {"P-256": ec.SECP256R1, "P-384": ec.SECP384R1}
ALGORITHMS = ("ES256", "ES384", "EdDSA", "RS256")
# RSA moduli above this are no stronger in practice and cost the server more per check.
MAX_RSA_BITS = 8192
EAB_ALGORITHMS = {"HS256": "sha256", "HS384": "sha384", "HS512": "sha512"}


@dataclass(frozen=True, slots=True, kw_only=True)
class SignedRequest:
    """A parsed, not yet verified JWS. `payload` is None for POST-as-GET (empty payload)."""

    alg: str
    nonce: str | None
    url: str
    kid: str | None
    jwk: dict[str, Any] | None
    protected: dict[str, Any] = field(repr=False)
    signing_input: bytes = field(repr=False)
    signature: bytes = field(repr=False)
    payload_bytes: bytes = field(repr=False)

    @property
    def payload(self) -> dict[str, Any] | None:
        """The payload as a JSON object; None for POST-as-GET."""
        if self.payload_bytes == b"":
            return None
        try:
            value = json.loads(self.payload_bytes)
        except (ValueError, UnicodeDecodeError):
            raise Malformed("the JWS payload is not JSON") from None
        if not isinstance(value, dict):
            raise Malformed("the JWS payload is not a JSON object")
        return value

    def require_payload(self) -> dict[str, Any]:
        payload = self.payload
        if payload is None:
            raise Malformed("this resource needs a JSON payload, not POST-as-GET")
        return payload


def parse(body: bytes, *, inner: bool = False) -> SignedRequest:
    """The flattened JWS in `body`; Malformed names what is wrong with it.

    `inner`: the inner JWS of a key rollover, which carries no nonce (RFC 8555 7.3.5).
    """
    document = _json_object(body, "the request body")
    return parse_object(document, inner=inner)


def parse_object(document: dict[str, Any], *, inner: bool = False) -> SignedRequest:
    if set(document) - {"protected", "payload", "signature", "header"}:
        raise Malformed("the JWS has members other than protected, payload and signature")
    if "header" in document:
        raise Malformed("the JWS has an unprotected header; ACME allows only a protected one")
    parts = []
    for name in ("protected", "payload", "signature"):
        value = document.get(name)
        if not isinstance(value, str):
            raise Malformed(f"the JWS has no {name} string (flattened JSON serialization)")
        parts.append(value)
    protected_b64, payload_b64, signature_b64 = parts
    protected = _json_object(_decode(protected_b64, "protected"), "the protected header")
    payload = _decode(payload_b64, "payload")
    signature = _decode(signature_b64, "signature")
    alg = protected.get("alg")
    if not isinstance(alg, str):
        raise Malformed("the protected header has no alg")
    url = protected.get("url")
    if not isinstance(url, str):
        raise Malformed("the protected header has no url")
    nonce = protected.get("nonce")
    if not inner and not isinstance(nonce, str):
        raise BadNonce("the protected header has no nonce")
    if inner and "nonce" in protected:
        raise Malformed("the inner JWS of a key change must not carry a nonce")
    kid, jwk = protected.get("kid"), protected.get("jwk")
    if (kid is None) == (jwk is None):
        raise Malformed("the protected header must hold exactly one of kid and jwk")
    if kid is not None and not isinstance(kid, str):
        raise Malformed("kid is not a string")
    if jwk is not None and not isinstance(jwk, dict):
        raise Malformed("jwk is not a JSON object")
    return SignedRequest(
        alg=alg,
        nonce=nonce if isinstance(nonce, str) else None,
        url=url,
        kid=kid,
        jwk=jwk,
        protected=protected,
        signing_input=f"{protected_b64}.{payload_b64}".encode("ascii"),
        signature=signature,
        payload_bytes=payload,
    )


def verify(request: SignedRequest, key: AccountKey) -> None:
    """Raise Unauthorized unless `request`'s signature verifies under `key` with its `alg`."""
    check_algorithm(request.alg, key)
    try:
        if isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(request.signature, request.signing_input)
        elif isinstance(key, ec.EllipticCurvePublicKey):
            _, digest, size = _CURVES[request.alg]
            if len(request.signature) != 2 * size:
                raise Unauthorized(
                    f"the {request.alg} signature is {len(request.signature)} bytes, "
                    f"expected {2 * size}"
                )
            r = int.from_bytes(request.signature[:size], "big")
            s = int.from_bytes(request.signature[size:], "big")
            key.verify(encode_dss_signature(r, s), request.signing_input, ec.ECDSA(digest))
        else:
            key.verify(
                request.signature, request.signing_input, padding.PKCS1v15(), hashes.SHA256()
            )
    except InvalidSignature:
        raise Unauthorized("the JWS signature does not verify with the account key") from None


def check_algorithm(alg: str, key: AccountKey) -> None:
    if alg not in ALGORITHMS:
        raise BadSignatureAlgorithm(f"alg {alg!r} is not one of {', '.join(ALGORITHMS)}")
    fits = (
        (alg == "EdDSA" and isinstance(key, ed25519.Ed25519PublicKey))
        or (alg == "RS256" and isinstance(key, rsa.RSAPublicKey))
        or (
            alg in _CURVES
            and isinstance(key, ec.EllipticCurvePublicKey)
            and isinstance(key.curve, _CURVES[alg][0])
        )
    )
    if not fits:
        # A supported algorithm over a key of another family: not the key's holder signing.
        raise Unauthorized(f"alg {alg!r} does not fit the signing key ({key_kind(key)})")


def key_kind(key: AccountKey) -> str:
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "Ed25519"
    if isinstance(key, ec.EllipticCurvePublicKey):
        return f"EC {key.curve.name}"
    return f"RSA {key.key_size}"


def public_key(jwk: dict[str, Any]) -> AccountKey:
    """The public key a JWK describes; BadPublicKey when it is none that ACME accepts here."""
    kty = jwk.get("kty")
    if "d" in jwk or "p" in jwk:
        raise BadPublicKey("the JWK holds private key material; send the public key only")
    try:
        if kty == "EC":
            curve = _CRV.get(str(jwk.get("crv")))
            if curve is None:
                raise BadPublicKey(f"EC curve {jwk.get('crv')!r} is not P-256 or P-384")
            x, y = _member(jwk, "x"), _member(jwk, "y")
            size = (curve().key_size + 7) // 8
            if len(x) != size or len(y) != size:
                raise BadPublicKey(f"EC coordinates must be {size} bytes each")
            numbers = ec.EllipticCurvePublicNumbers(
                int.from_bytes(x, "big"), int.from_bytes(y, "big"), curve()
            )
            return numbers.public_key()
        if kty == "OKP":
            if jwk.get("crv") != "Ed25519":
                raise BadPublicKey(f"OKP curve {jwk.get('crv')!r} is not Ed25519")
            return ed25519.Ed25519PublicKey.from_public_bytes(_member(jwk, "x"))
        if kty == "RSA":
            n = int.from_bytes(_member(jwk, "n"), "big")
            e = int.from_bytes(_member(jwk, "e"), "big")
            if not MIN_RSA_BITS <= n.bit_length() <= MAX_RSA_BITS:
                raise BadPublicKey(
                    f"RSA key of {n.bit_length()} bits (expected {MIN_RSA_BITS} to {MAX_RSA_BITS})"
                )
            return rsa.RSAPublicNumbers(e, n).public_key()
    except ValueError as error:
        raise BadPublicKey(f"the JWK is not a valid public key: {error}") from None
    raise BadPublicKey(f"key type {kty!r} is not EC, OKP or RSA")


def thumbprint(jwk: dict[str, Any]) -> str:
    """RFC 7638: SHA-256 over the JWK's required members in lexicographic order."""
    required = {
        "EC": ("crv", "kty", "x", "y"),
        "OKP": ("crv", "kty", "x"),
        "RSA": ("e", "kty", "n"),
    }
    names = required.get(str(jwk.get("kty")))
    if names is None:
        raise BadPublicKey(f"key type {jwk.get('kty')!r} is not EC, OKP or RSA")
    members = {}
    for name in names:
        value = jwk.get(name)
        if not isinstance(value, str):
            raise BadPublicKey(f"the JWK has no {name} string")
        members[name] = value
    canonical = json.dumps(members, separators=(",", ":"), sort_keys=True)
    return b64url(hashlib.sha256(canonical.encode("ascii")).digest())


def canonical_jwk(jwk: dict[str, Any]) -> dict[str, str]:
    """The JWK's required members only: what is stored and compared."""
    required = {
        "EC": ("crv", "kty", "x", "y"),
        "OKP": ("crv", "kty", "x"),
        "RSA": ("e", "kty", "n"),
    }
    thumbprint(jwk)  # raises for anything else
    return {name: str(jwk[name]) for name in required[str(jwk["kty"])]}


def verify_external_binding(
    binding: object, *, kid: str, hmac_key: bytes, url: str, account_jwk: dict[str, Any]
) -> None:
    """RFC 8555 7.3.4: a JWS by the EAB key over the account key, for this URL; Unauthorized
    when it is not exactly that."""
    if not isinstance(binding, dict):
        raise Malformed("externalAccountBinding is not a JWS object")
    parts = [binding.get(name) for name in ("protected", "payload", "signature")]
    if not all(isinstance(part, str) for part in parts) or set(binding) - {
        "protected",
        "payload",
        "signature",
    }:
        raise Malformed("externalAccountBinding is not a flattened JWS")
    protected_b64, payload_b64, signature_b64 = (str(part) for part in parts)
    protected = _json_object(_decode(protected_b64, "EAB protected"), "the EAB protected header")
    alg = protected.get("alg")
    if alg not in EAB_ALGORITHMS:
        raise BadSignatureAlgorithm(f"EAB alg {alg!r} is not one of {', '.join(EAB_ALGORITHMS)}")
    if "nonce" in protected:
        raise Malformed("the EAB JWS must not carry a nonce")
    if protected.get("kid") != kid:
        raise Unauthorized("the EAB JWS names another key id than it was checked for")
    if protected.get("url") != url:
        raise Unauthorized("the EAB JWS was made for another URL than new-account")
    payload = _json_object(_decode(payload_b64, "EAB payload"), "the EAB payload")
    if thumbprint(payload) != thumbprint(account_jwk):
        raise Unauthorized("the EAB JWS binds another key than the one signing this request")
    signing_input = f"{protected_b64}.{payload_b64}".encode("ascii")
    expected = hmac.new(hmac_key, signing_input, EAB_ALGORITHMS[str(alg)]).digest()
    if not hmac.compare_digest(expected, _decode(signature_b64, "EAB signature")):
        raise Unauthorized("the EAB JWS's MAC does not verify with that key id's HMAC key")


def spki(key: object) -> bytes:
    """The DER SubjectPublicKeyInfo of a public key (b"" for anything else), to compare keys."""
    public_bytes = getattr(key, "public_bytes", None)
    if public_bytes is None:
        return b""
    return bytes(public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo))


def binding_kid(binding: object) -> str:
    """The key id an external account binding names (not yet verified)."""
    if not isinstance(binding, dict) or not isinstance(binding.get("protected"), str):
        raise Malformed("externalAccountBinding is not a flattened JWS")
    header = _json_object(_decode(binding["protected"], "EAB protected"), "the EAB header")
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise Unauthorized("the external account binding names no key id")
    return kid


def _member(jwk: dict[str, Any], name: str) -> bytes:
    value = jwk.get(name)
    if not isinstance(value, str):
        raise BadPublicKey(f"the JWK has no {name} string")
    return _decode(value, f"jwk.{name}")


def _decode(text: str, what: str) -> bytes:
    try:
        return b64url_decode(text)
    except ValueError:
        raise Malformed(f"the JWS {what} is not base64url") from None


def _json_object(data: bytes, what: str) -> dict[str, Any]:
    try:
        value = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise Malformed(f"{what} is not JSON") from None
    if not isinstance(value, dict):
        raise Malformed(f"{what} is not a JSON object")
    return value
