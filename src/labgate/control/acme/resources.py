"""What an ACME operation answers: a JSON object, where it lives, and its links; the edge turns
it into a response (201 when `created`, `Location`, `Link: rel="up"`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass(frozen=True, slots=True, kw_only=True)
class Resource:
    body: dict[str, Any]
    location: str | None = None
    created: bool = False
    up: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class CertificateChain:
    """A certificate download: PEM, leaf first (`application/pem-certificate-chain`)."""

    pem: bytes
    up: str


def timestamp(when: datetime) -> str:
    """RFC 3339 in UTC with a Z, as ACME objects carry times."""
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")
