"""Decisions of the CA's checks: allowed, or denied with a reason that names the problem."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True, kw_only=True)
class Allowed:
    """The request passes the check."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Denied:
    """The request fails the check; `reason` says which part of it and why."""

    reason: str


Decision = Allowed | Denied
