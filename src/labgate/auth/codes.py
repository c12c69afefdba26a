"""Linking codes (RFC 8628 section 6.1): short codes a person reads on one screen and types on
another, plus the long device code the device polls with.

A user code is 8 characters from the 20 consonants BCDFGHJKLMNPQRSTVWXZ: no vowels, so no words
form by accident, and no digits or letters that look alike (0/O, 1/I/L, 5/S are all avoided by
leaving out digits and vowels; L and S stay because without their look-alikes they are clear).
20^8 is about 2.6e10 codes (34.6 bits). That is only safe with the limits below: valid for
10 minutes, single use, at most 5 wrong tries per pending link, and the server's rate limits
keyed on the socket's peer address. Codes come from `secrets`; people may type them in any
case, with a dash or spaces; comparison is constant-time on the normalised form.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import datetime, timedelta

from labgate.auth.clock import require_aware
from labgate.auth.decisions import Allowed, Denied
from labgate.auth.errors import MalformedCode

USER_CODE_ALPHABET = "BCDFGHJKLMNPQRSTVWXZ"
USER_CODE_LENGTH = 8
CODE_TTL = timedelta(minutes=10)
MAX_CODE_ATTEMPTS = 5
DEVICE_CODE_BYTES = 32
_SEPARATORS = frozenset("- \t")


def new_user_code(length: int = USER_CODE_LENGTH) -> str:
    """A fresh user code in its canonical form (upper case, no separator)."""
    if length < USER_CODE_LENGTH:
        raise ValueError(f"user codes need at least {USER_CODE_LENGTH} characters, got {length}")
    return "".join(secrets.choice(USER_CODE_ALPHABET) for _ in range(length))


def format_user_code(code: str) -> str:
    """The code as shown to a person: ``BCDF-GHJK`` (groups of four)."""
    canonical = normalise_user_code(code)
    return "-".join(canonical[i : i + 4] for i in range(0, len(canonical), 4))


def normalise_user_code(typed: str) -> str:
    """Upper-case, drop dashes and spaces; MalformedCode if anything else is off-alphabet."""
    if len(typed) > 4 * USER_CODE_LENGTH:
        raise MalformedCode(f"user code is {len(typed)} characters; far too long to be one")
    canonical = "".join(char for char in typed.upper() if char not in _SEPARATORS)
    stray = sorted({char for char in canonical if char not in USER_CODE_ALPHABET})
    if stray:
        raise MalformedCode(
            f"user code contains {''.join(stray)!r}; only {USER_CODE_ALPHABET} are used"
        )
    if len(canonical) < USER_CODE_LENGTH:
        raise MalformedCode(
            f"user code has {len(canonical)} letters; at least {USER_CODE_LENGTH} expected"
        )
    return canonical


def codes_match(expected: str, typed: str) -> bool:
    """Constant-time comparison of a stored code with what a person typed (normalised first).

    A typed value that cannot be a code is simply not a match.
    """
    try:
        presented = normalise_user_code(typed)
    except MalformedCode:
        return False
    return hmac.compare_digest(normalise_user_code(expected).encode(), presented.encode())


def token_digest(token: str) -> str:
    """Hex SHA-256 of a high-entropy token (a device code, an announce token): what is stored and
    looked up instead of the token. A fast unsalted hash is right for 128+ random bits."""
    return hashlib.sha256(token.encode("ascii", "replace")).hexdigest()


def code_lookup_key(code: str) -> str:
    """Hex SHA-256 of the canonical code, to index pending links without storing the code.

    With 34.6 bits a stolen table could be brute-forced offline; that is acceptable only
    because a code lives 10 minutes and is single use.
    """
    return hashlib.sha256(normalise_user_code(code).encode("ascii")).hexdigest()


def new_device_code() -> str:
    """The device's secret for polling (RFC 8628 device_code): 256 bits, base64url."""
    return secrets.token_urlsafe(DEVICE_CODE_BYTES)


def check_code_attempt(
    *,
    issued_at: datetime,
    wrong_attempts: int,
    used: bool,
    now: datetime,
    ttl: timedelta = CODE_TTL,
    max_attempts: int = MAX_CODE_ATTEMPTS,
) -> Allowed | Denied:
    """Whether a pending link may still be tried; call before comparing the code.

    After `max_attempts` wrong tries the link is dead even for the right code: the server
    must then start a new link with a new code.
    """
    require_aware(now)
    if used:
        return Denied(reason="code_used", detail="this code was already used")
    if now >= issued_at + ttl:
        return Denied(
            reason="code_expired", detail=f"this code expired at {(issued_at + ttl).isoformat()}"
        )
    if wrong_attempts >= max_attempts:
        return Denied(
            reason="code_attempts_exhausted",
            detail=f"{wrong_attempts} wrong tries; at most {max_attempts} are allowed per code",
        )
    return Allowed()
