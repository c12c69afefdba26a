"""Access tokens: compact JWS signed with Ed25519, and their verification.

An access token's header is ``{"alg": "EdDSA", "kid": <key id>, "typ": "at+jwt"}`` (RFC 9068's
media type, so an access token cannot pass where another signed document is expected, nor the
other way round). Its claims: ``iss``, ``aud``, ``sub``, ``typ`` ("user" or "device"), ``role``,
``jti``, ``iat``, ``nbf``, ``exp``, and for a certificate-bound token ``cnf: {"x5t#S256": ...}``
(RFC 8705).

Verification order, each step with its own TokenError subclass: the header parses
(MalformedToken); ``alg`` is exactly EdDSA, so ``none`` and an HMAC keyed with the public key
are refused before any key is touched (AlgorithmNotAllowed); ``kid`` names a key the verifier
holds now (UnknownKey, RetiredKeyExpired); the signature verifies (BadSignature); then the claims:
header and claim ``typ`` (WrongTokenType), ``iss`` (WrongIssuer), ``aud`` (WrongAudience),
``exp`` (TokenExpired), ``nbf``/``iat`` (TokenNotYetValid), required claims present with the
right types (MissingClaim), a lifetime no longer than MAX_ACCESS_TTL (ExcessiveLifetime), and
the certificate binding (CertificateMismatch).

The clock is the caller's `now`. `leeway` (default 5 s) absorbs clock differences between
server replicas; it applies to ``exp``, ``nbf`` and ``iat`` alike.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
from jwt.api_jws import PyJWS

from labgate.auth.clock import require_aware
from labgate.auth.decisions import Allowed, Denied
from labgate.auth.errors import (
    AlgorithmNotAllowed,
    BadSignature,
    CertificateMismatch,
    ExcessiveLifetime,
    MalformedToken,
    MissingClaim,
    TokenExpired,
    TokenNotYetValid,
    UnknownKey,
    WrongAudience,
    WrongIssuer,
    WrongTokenType,
)
from labgate.auth.keyring import KeyRing, PublicKeySet, VerificationKeys, b64url
from labgate.auth.keyring import b64url_decode as _b64url_decode
from labgate.auth.lifetimes import MAX_ACCESS_TTL

__all__ = [
    "ACCESS_TOKEN_MEDIA_TYPE",
    "AccessClaims",
    "KeyRing",
    "PublicKeySet",
    "VerificationKeys",
    "certificate_thumbprint",
    "check_certificate_binding",
    "mint_access_token",
    "sign_claims",
    "verify_access_token",
    "verify_claims",
]

ACCESS_TOKEN_MEDIA_TYPE = "at+jwt"  # noqa: S105 (RFC 9068 media type, not a secret)
ALGORITHM = "EdDSA"
DEFAULT_LEEWAY = timedelta(seconds=5)
# A token larger than this is refused unparsed; ours are a few hundred bytes.
MAX_TOKEN_BYTES = 8192
# The header parameters we understand; anything else (crit, jku, x5u, jwk, ...) is refused
# rather than ignored, so no one can steer verification through the header.
_ALLOWED_HEADER = frozenset({"alg", "kid", "typ"})
_CNF_MEMBER = "x5t#S256"


@dataclass(frozen=True, slots=True, kw_only=True)
class AccessClaims:
    """The verified contents of an access token."""

    issuer: str
    audience: str
    subject: str
    role: str
    typ: str
    jti: str
    issued_at: datetime
    not_before: datetime
    expires_at: datetime
    key_id: str
    cnf_x5t_s256: str | None = None


def certificate_thumbprint(certificate_der: bytes) -> str:
    """RFC 8705 ``x5t#S256``: base64url (no padding) of the SHA-256 of the DER certificate."""
    if not isinstance(certificate_der, bytes) or not certificate_der:
        raise ValueError("certificate_der must be the non-empty DER bytes of a certificate")
    return b64url(hashlib.sha256(certificate_der).digest())


def check_certificate_binding(
    claims: AccessClaims, certificate_der: bytes | None
) -> Allowed | Denied:
    """Whether the presented certificate satisfies the token's binding (if it has one)."""
    if claims.cnf_x5t_s256 is None:
        return Allowed()
    if certificate_der is None:
        return Denied(
            reason="certificate_required",
            detail=f"token for {claims.subject!r} is bound to a certificate and none was presented",
        )
    presented = certificate_thumbprint(certificate_der)
    if not hmac.compare_digest(presented.encode(), claims.cnf_x5t_s256.encode()):
        return Denied(
            reason="certificate_mismatch",
            detail=f"token for {claims.subject!r} is bound to certificate "
            f"{claims.cnf_x5t_s256}, presented {presented}",
        )
    return Allowed()


def _is_thumbprint(value: str) -> bool:
    try:
        return len(_b64url_decode(value)) == hashlib.sha256().digest_size and len(value) == 43
    except ValueError:
        return False


def sign_claims(keyring: KeyRing, claims: Mapping[str, Any], *, typ: str) -> str:
    """Sign `claims` with the ring's current key; header ``alg``=EdDSA, ``kid``, ``typ``."""
    key = keyring.current
    return jwt.encode(
        dict(claims), key.private_key, algorithm=ALGORITHM, headers={"kid": key.kid, "typ": typ}
    )


def mint_access_token(
    keyring: KeyRing,
    *,
    issuer: str,
    audience: str,
    subject: str,
    role: str,
    typ: str,
    ttl: timedelta,
    now: datetime,
    cnf_x5t_s256: str | None = None,
) -> tuple[str, AccessClaims]:
    """A signed access token and the claims it carries (the server keeps ``jti`` for revocation)."""
    require_aware(now)
    if not timedelta(0) < ttl <= MAX_ACCESS_TTL:
        # A longer token would outlive its signing key's verification window after rotation.
        raise ValueError(f"ttl must be positive and at most {MAX_ACCESS_TTL}, got {ttl}")
    for name, value in (("issuer", issuer), ("audience", audience), ("subject", subject),
                        ("role", role), ("typ", typ)):  # fmt: skip
        if not isinstance(value, str) or not value:
            raise ValueError(f"{name} must be a non-empty string, got {value!r}")
    if cnf_x5t_s256 is not None and not _is_thumbprint(cnf_x5t_s256):
        raise ValueError(
            f"cnf_x5t_s256 must be a base64url SHA-256 (43 characters), got {cnf_x5t_s256!r}"
        )
    issued = datetime.fromtimestamp(int(now.timestamp()), tz=UTC)
    claims = AccessClaims(
        issuer=issuer,
        audience=audience,
        subject=subject,
        role=role,
        typ=typ,
        jti=secrets.token_urlsafe(16),
        issued_at=issued,
        not_before=issued,
        expires_at=issued + ttl,
        key_id=keyring.current.kid,
        cnf_x5t_s256=cnf_x5t_s256,
    )
    return sign_claims(keyring, _claims_json(claims), typ=ACCESS_TOKEN_MEDIA_TYPE), claims


def verify_access_token(
    token: str,
    keys: VerificationKeys,
    *,
    issuer: str,
    audience: str,
    now: datetime,
    expected_typ: str | tuple[str, ...],
    certificate_der: bytes | None = None,
    leeway: timedelta = DEFAULT_LEEWAY,
) -> AccessClaims:
    """Verify `token` completely or raise the TokenError subclass that names the failure.

    `expected_typ` is the one ``typ`` claim accepted here, or a tuple of them (an endpoint open
    to users and devices alike); the caller then reads `AccessClaims.typ`.
    `certificate_der` is the client certificate of the connection (None when there is none).
    A certificate-bound token is refused without it: the binding fails closed.
    """
    header, payload = _verify_signature(token, keys, typ=ACCESS_TOKEN_MEDIA_TYPE, now=now)
    _check_registered_claims(payload, issuer=issuer, audience=audience, now=now, leeway=leeway)
    claim_typ = _string_claim(payload, "typ")
    accepted = (expected_typ,) if isinstance(expected_typ, str) else expected_typ
    if claim_typ not in accepted:
        raise WrongTokenType(
            f"token typ claim is {claim_typ!r}; expected {' or '.join(map(repr, accepted))}"
        )
    issued_at, expires_at = _time_claim(payload, "iat"), _time_claim(payload, "exp")
    if expires_at - issued_at > MAX_ACCESS_TTL:
        # Our own minting never does this; a token that does would outlive its key's window.
        raise ExcessiveLifetime(
            f"token lives {expires_at - issued_at} from iat to exp; at most {MAX_ACCESS_TTL}"
        )
    claims = AccessClaims(
        issuer=_string_claim(payload, "iss"),
        audience=audience,
        subject=_string_claim(payload, "sub"),
        role=_string_claim(payload, "role"),
        typ=claim_typ,
        jti=_string_claim(payload, "jti"),
        issued_at=issued_at,
        not_before=_time_claim(payload, "nbf"),
        expires_at=expires_at,
        key_id=header["kid"],
        cnf_x5t_s256=_cnf_claim(payload),
    )
    decision = check_certificate_binding(claims, certificate_der)
    if isinstance(decision, Denied):
        raise CertificateMismatch(decision.detail)
    return claims


def verify_claims(
    token: str,
    keys: VerificationKeys,
    *,
    typ: str,
    issuer: str,
    audience: str,
    now: datetime,
    leeway: timedelta = DEFAULT_LEEWAY,
) -> dict[str, Any]:
    """Verify any labgate-signed document (a gateway bundle, ...) and return its claims.

    Checks header ``typ``, signature, ``iss``, ``aud``, ``exp``, and ``nbf``/``iat`` when present.
    """
    _, payload = _verify_signature(token, keys, typ=typ, now=now)
    _check_registered_claims(payload, issuer=issuer, audience=audience, now=now, leeway=leeway)
    return payload


def _claims_json(claims: AccessClaims) -> dict[str, Any]:
    document: dict[str, Any] = {
        "iss": claims.issuer,
        "aud": claims.audience,
        "sub": claims.subject,
        "typ": claims.typ,
        "role": claims.role,
        "jti": claims.jti,
        "iat": int(claims.issued_at.timestamp()),
        "nbf": int(claims.not_before.timestamp()),
        "exp": int(claims.expires_at.timestamp()),
    }
    if claims.cnf_x5t_s256 is not None:
        document["cnf"] = {_CNF_MEMBER: claims.cnf_x5t_s256}
    return document


def _verify_signature(
    token: str, keys: VerificationKeys, *, typ: str, now: datetime
) -> tuple[dict[str, Any], dict[str, Any]]:
    require_aware(now)
    if not isinstance(token, str) or len(token) > MAX_TOKEN_BYTES or token.count(".") != 2:
        raise MalformedToken(f"token is not a compact JWS of at most {MAX_TOKEN_BYTES} bytes")
    _require_canonical_segments(token)
    header = _header(token)
    alg = header.get("alg")
    if alg != ALGORITHM:
        raise AlgorithmNotAllowed(f"token alg is {alg!r}; only {ALGORITHM!r} is accepted")
    unknown = set(header) - _ALLOWED_HEADER
    if unknown:
        raise MalformedToken(f"token header has unsupported parameters {sorted(unknown)}")
    if header.get("typ") != typ:
        raise WrongTokenType(f"token header typ is {header.get('typ')!r}; expected {typ!r}")
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise UnknownKey("token header has no kid")
    public_key = keys.verification_key(kid, now=now)
    try:
        decoded = PyJWS().decode_complete(token, key=public_key, algorithms=[ALGORITHM])
    except jwt.InvalidSignatureError:
        raise BadSignature(f"token signature does not verify with key {kid!r}") from None
    except jwt.InvalidTokenError as error:
        raise MalformedToken(f"token cannot be decoded: {error}") from None
    return header, _payload(decoded["payload"])


def _require_canonical_segments(token: str) -> None:
    # Base64 leaves spare bits in the last character; decoders ignore them, so without this
    # check one token would have several spellings that all verify. Only the canonical
    # spelling is accepted, so a token string is a stable identity (deny lists, logs, caches).
    for name, segment in zip(("header", "payload", "signature"), token.split("."), strict=True):
        try:
            canonical = b64url(_b64url_decode(segment)) == segment
        except ValueError:
            canonical = False
        if not canonical:
            raise MalformedToken(f"token {name} is not canonical base64url")


def _header(token: str) -> dict[str, Any]:
    # Parsed here rather than by PyJWT so that every header problem, before any key is used,
    # becomes MalformedToken.
    try:
        header = json.loads(_b64url_decode(token.split(".", 1)[0]))
    except (ValueError, UnicodeDecodeError):
        raise MalformedToken("token header is not base64url-encoded JSON") from None
    if not isinstance(header, dict):
        raise MalformedToken("token header is not a JSON object")
    return header


def _payload(raw: bytes) -> dict[str, Any]:
    try:
        payload = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise MalformedToken("token payload is not JSON") from None
    if not isinstance(payload, dict):
        raise MalformedToken("token payload is not a JSON object")
    return payload


def _check_registered_claims(
    payload: Mapping[str, Any], *, issuer: str, audience: str, now: datetime, leeway: timedelta
) -> None:
    token_issuer = _string_claim(payload, "iss")
    if token_issuer != issuer:
        raise WrongIssuer(f"token iss is {token_issuer!r}; expected {issuer!r}")
    aud = payload.get("aud")
    audiences = [aud] if isinstance(aud, str) else aud
    if not isinstance(audiences, list) or audience not in audiences:
        raise WrongAudience(f"token aud is {aud!r}; expected {audience!r}")
    expires = _time_claim(payload, "exp")
    if now >= expires + leeway:
        raise TokenExpired(f"token expired at {expires.isoformat()}; now is {now.isoformat()}")
    for name in ("nbf", "iat"):
        if name in payload:
            moment = _time_claim(payload, name)
            if moment > now + leeway:
                raise TokenNotYetValid(
                    f"token {name} is {moment.isoformat()}, after now {now.isoformat()}"
                )


def _string_claim(payload: Mapping[str, Any], name: str) -> str:
    value = payload.get(name)
    if not isinstance(value, str) or not value:
        raise MissingClaim(f"token claim {name!r} must be a non-empty string, got {value!r}")
    return value


def _time_claim(payload: Mapping[str, Any], name: str) -> datetime:
    value = payload.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise MissingClaim(f"token claim {name!r} must be a NumericDate, got {value!r}")
    try:
        return datetime.fromtimestamp(value, tz=UTC)
    except (OverflowError, OSError, ValueError):
        raise MissingClaim(f"token claim {name!r} is out of range: {value!r}") from None


def _cnf_claim(payload: Mapping[str, Any]) -> str | None:
    if "cnf" not in payload:
        return None
    cnf = payload["cnf"]
    if not isinstance(cnf, dict) or not isinstance(cnf.get(_CNF_MEMBER), str):
        raise MissingClaim(f"token cnf must be an object with a string {_CNF_MEMBER!r}")
    return str(cnf[_CNF_MEMBER])
