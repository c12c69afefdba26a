"""Checks on the `now` values the server passes in (the auth core never reads a clock)."""

from __future__ import annotations

from datetime import datetime


def require_aware(value: datetime, *, name: str = "now") -> datetime:
    """Return `value`, or raise ValueError when it has no time zone (naive times are ambiguous)."""
    if not isinstance(value, datetime):
        raise TypeError(f"{name} must be a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware (UTC), got naive {value.isoformat()}")
    return value
