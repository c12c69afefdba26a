"""Signed job documents: what the server hands a device, and what the device checks.

A job is a compact JWS signed with the *jobs* key (Ed25519, its own key ring, published in the
JWKS with `use` = JOBS_KEY_USE and never used for tokens), header
``{"alg": "EdDSA", "kid": ..., "typ": "labgate-job+jwt"}``. Claims:

    iss     "labgate:jobs"
    aud     the device's identity, ``labgate:device:<id>``: the job is for that device only
    sub     the same identity
    jti     the job id; ``attempt`` the retry it is (1, 2, ...)
    type    the job type's exact name; ``params`` its parameters (a JSON object)
    iat, nbf, exp   exp is the job's ``not_after``

The header ``typ`` keeps a job and an access token apart even if both keys were confused; the
agent verifies with the jobs keys only, so a document signed with a token key names a ``kid``
it does not hold and is refused.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from labgate.auth.clock import require_aware
from labgate.auth.errors import MalformedToken, MissingClaim
from labgate.auth.keyring import KeyRing, VerificationKeys
from labgate.auth.tokens import DEFAULT_LEEWAY, sign_claims, verify_claims

JOB_DOCUMENT_TYPE = "labgate-job+jwt"
JOBS_ISSUER = "labgate:jobs"
JOBS_KEY_USE = "labgate-jobs"
DEVICE_PREFIX = "labgate:device:"


@dataclass(frozen=True, slots=True, kw_only=True)
class JobClaims:
    device_id: str
    job_id: str
    attempt: int
    type: str
    params: Mapping[str, Any]
    not_after: datetime
    key_id: str


def sign_job(
    ring: KeyRing,
    *,
    device_id: str,
    job_id: str,
    attempt: int,
    type: str,
    params: Mapping[str, Any],
    not_after: datetime,
    now: datetime,
) -> str:
    require_aware(now)
    require_aware(not_after, name="not_after")
    identity = DEVICE_PREFIX + device_id
    issued = int(now.timestamp())
    claims = {
        "iss": JOBS_ISSUER,
        "aud": identity,
        "sub": identity,
        "jti": job_id,
        "attempt": attempt,
        "type": type,
        "params": dict(params),
        "iat": issued,
        "nbf": issued,
        "exp": int(not_after.timestamp()),
    }
    return sign_claims(ring, claims, typ=JOB_DOCUMENT_TYPE)


def verify_job(
    document: str,
    keys: VerificationKeys,
    *,
    device_id: str,
    now: datetime,
    leeway: timedelta = DEFAULT_LEEWAY,
) -> JobClaims:
    """The claims of a job for `device_id`, or the TokenError subclass naming what failed:
    signature and key (BadSignature, UnknownKey), type (WrongTokenType), the device it is for
    (WrongAudience), its deadline (TokenExpired), its shape (MissingClaim)."""
    identity = DEVICE_PREFIX + device_id
    payload = verify_claims(
        document,
        keys,
        typ=JOB_DOCUMENT_TYPE,
        issuer=JOBS_ISSUER,
        audience=identity,
        now=now,
        leeway=leeway,
    )
    if payload.get("sub") != identity:
        raise MalformedToken(f"job subject {payload.get('sub')!r} is not {identity!r}")
    job_id, kind = payload.get("jti"), payload.get("type")
    attempt, params, exp = payload.get("attempt"), payload.get("params"), payload.get("exp")
    if not isinstance(job_id, str) or not job_id:
        raise MissingClaim("job has no jti (job id)")
    if not isinstance(kind, str) or not kind:
        raise MissingClaim("job has no type")
    if not isinstance(attempt, int) or isinstance(attempt, bool) or attempt < 1:
        raise MissingClaim("job has no attempt number")
    if not isinstance(params, dict):
        raise MissingClaim("job params are not a JSON object")
    if not isinstance(exp, int) or isinstance(exp, bool):
        raise MissingClaim("job has no exp (not_after)")
    return JobClaims(
        device_id=device_id,
        job_id=job_id,
        attempt=attempt,
        type=kind,
        params=params,
        not_after=datetime.fromtimestamp(exp, tz=UTC),
        key_id=_kid(document),
    )


def _kid(document: str) -> str:
    import json

    from labgate.auth.keyring import b64url_decode

    header = json.loads(b64url_decode(document.split(".", 1)[0]))
    return str(header.get("kid", ""))
