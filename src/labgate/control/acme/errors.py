"""ACME problems (RFC 8555 section 6.7): each names its `urn:ietf:params:acme:error:` type.

Domain code raises these; the HTTP edge picks the status code from the type and writes the
problem document. A message names what was wrong and never carries a key or an HMAC.
"""

from __future__ import annotations

from dataclasses import dataclass

NAMESPACE = "urn:ietf:params:acme:error:"


@dataclass(frozen=True, slots=True, kw_only=True)
class Subproblem:
    """One identifier's own problem inside a compound one (RFC 8555 section 6.7.1)."""

    kind: str
    detail: str
    identifier: dict[str, str]


class AcmeProblem(Exception):
    """Base of every ACME problem; `kind` is the RFC's error type without its namespace."""

    kind = "serverInternal"

    def __init__(
        self, detail: str, *, subproblems: tuple[Subproblem, ...] = (), location: str | None = None
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.subproblems = subproblems
        # A resource the client should look at (the existing account of a key, RFC 8555 7.3.5).
        self.location = location

    @property
    def type(self) -> str:
        return NAMESPACE + self.kind


class Malformed(AcmeProblem):
    kind = "malformed"


class NotFound(Malformed):
    """No such resource (for this account): the RFC has no type of its own for it."""


class MethodNotAllowed(Malformed):
    """A resource fetched with GET that only answers POST-as-GET."""


class UnsupportedMediaType(Malformed):
    """A POST whose Content-Type is not application/jose+json."""


class Conflict(Malformed):
    """The new key of a rollover belongs to another account already."""


class BadNonce(AcmeProblem):
    kind = "badNonce"


class BadSignatureAlgorithm(AcmeProblem):
    kind = "badSignatureAlgorithm"


class BadPublicKey(AcmeProblem):
    kind = "badPublicKey"


class Unauthorized(AcmeProblem):
    kind = "unauthorized"


class AccountDoesNotExist(AcmeProblem):
    kind = "accountDoesNotExist"


class ExternalAccountRequired(AcmeProblem):
    kind = "externalAccountRequired"


class RejectedIdentifier(AcmeProblem):
    kind = "rejectedIdentifier"


class UnsupportedIdentifier(AcmeProblem):
    kind = "unsupportedIdentifier"


class OrderNotReady(AcmeProblem):
    kind = "orderNotReady"


class BadCsr(AcmeProblem):
    kind = "badCSR"


class BadRevocationReason(AcmeProblem):
    kind = "badRevocationReason"


class AlreadyRevoked(AcmeProblem):
    kind = "alreadyRevoked"


class RateLimited(AcmeProblem):
    kind = "rateLimited"

    def __init__(self, detail: str, *, retry_after: float) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


class IncorrectResponse(AcmeProblem):
    """A challenge's answer was reached but was not the key authorization."""

    kind = "incorrectResponse"


class Connection(AcmeProblem):
    """The server could not reach the client to validate a challenge."""

    kind = "connection"


class Tls(AcmeProblem):
    """The TLS handshake of a tls-alpn-01 validation failed or showed the wrong certificate."""

    kind = "tls"
