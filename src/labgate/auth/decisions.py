"""Decisions returned by the auth checks: allowed, or denied with a stable reason code."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta


@dataclass(frozen=True, slots=True, kw_only=True)
class Allowed:
    """The check passed."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Denied:
    """The check failed.

    `reason` is a short stable code (``"too_short"``) fit for an API error code, an audit record
    and a metric label; `detail` is a sentence for a person and never contains the secret checked.
    `retry_after` is set when waiting is what would change the answer (throttling).
    """

    reason: str
    detail: str = ""
    retry_after: timedelta | None = None


Decision = Allowed | Denied
