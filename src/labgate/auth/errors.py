"""The exceptions of labgate.auth.

Messages name the offending input and what was expected, but never contain a secret: no
password, hash, token or key material appears in any message.
"""

from __future__ import annotations


class AuthError(Exception):
    """Base of every error raised by labgate.auth."""


class PasswordHashError(AuthError):
    """A stored password hash cannot be used."""


class CorruptPasswordHash(PasswordHashError):
    """The stored value is not an argon2 hash (the value itself is never shown)."""


class PasswordTooLong(AuthError, ValueError):
    """A password is longer than any policy admits, so it is not hashed at all."""


class MalformedCode(AuthError, ValueError):
    """Typed text that cannot be a linking code (letters outside the alphabet, wrong length)."""


class KeyRingError(AuthError):
    """A stored key ring cannot be loaded or an operation on it is not possible."""


class RefreshTokenError(AuthError):
    """A refresh token, or what the server stored about it, cannot be used."""


class MalformedRefreshToken(RefreshTokenError, ValueError):
    """The presented value cannot be a refresh token we issued (empty or far too long)."""


class SealError(RefreshTokenError):
    """A sealed successor does not open with the presented token (another token, or tampered)."""


class TokenError(AuthError):
    """An access token (or other signed claim set) was refused."""


class MalformedToken(TokenError):
    """Not a compact JWS, or its header or payload is not valid JSON of the expected shape."""


class AlgorithmNotAllowed(TokenError):
    """The header names an algorithm other than EdDSA (``none``, ``HS256`` and the like)."""


class UnknownKey(TokenError):
    """The header's ``kid`` is missing or names no key this verifier holds."""


class RetiredKeyExpired(UnknownKey):
    """The ``kid`` names a retired key whose verification window has closed."""


class BadSignature(TokenError):
    """The signature does not verify with the key named by ``kid``."""


class MissingClaim(TokenError):
    """A required claim is absent or has the wrong JSON type."""


class WrongIssuer(TokenError):
    """The ``iss`` claim is not the configured issuer."""


class WrongAudience(TokenError):
    """The ``aud`` claim does not contain the expected audience."""


class WrongTokenType(TokenError):
    """The header ``typ`` or the ``typ`` claim is not the one expected here."""


class TokenExpired(TokenError):
    """``exp`` is at or before now."""


class ExcessiveLifetime(TokenError):
    """``exp`` lies further after ``iat`` than any access token may live."""


class TokenNotYetValid(TokenError):
    """``nbf`` or ``iat`` lies in the future."""


class CertificateMismatch(TokenError):
    """The token is bound to a certificate (``cnf.x5t#S256``) other than the one presented."""
