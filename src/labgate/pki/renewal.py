"""When to renew and when to retry: 2/3 of a lifetime with jitter, and capped backoff.

One rule for every certificate labgate renews by itself (a device's, a gateway's server and
control client certificates, the control server's own) and for a device's access tokens.

A fleet whose certificates were issued in the same minute must not renew in the same minute, so
the renewal point is 2/3 of the lifetime moved by up to a twentieth of the lifetime either way.
A holder that knows its certificate draws that shift from the certificate's serial
(`certificate_due`): the point is the same after a restart and in every replica reading the same
file, so replicas sharing a certificate agree on when it is due (one renews, under a lock, and
the others find it renewed), while certificates issued together still spread.

A server that is away is retried with "full jitter" exponential backoff (AWS's analysis: a random
wait in [0, min(cap, base * 2^n)]) so that returning servers are not hit by the whole fleet at once.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta

RENEW_AT = 2 / 3
JITTER = 1 / 20


def renewal_due(
    not_before: datetime, not_after: datetime, *, rng: random.Random | None = None
) -> datetime:
    lifetime = not_after - not_before
    shift = (rng or random).uniform(-JITTER, JITTER)
    return not_before + lifetime * (RENEW_AT + shift)


def renewal_window(not_before: datetime, not_after: datetime) -> tuple[datetime, datetime]:
    """The earliest and latest moment `renewal_due` may name for this lifetime."""
    lifetime = not_after - not_before
    return (
        not_before + lifetime * (RENEW_AT - JITTER),
        not_before + lifetime * (RENEW_AT + JITTER),
    )


def certificate_due(not_before: datetime, not_after: datetime, serial: int) -> datetime:
    """`renewal_due` with the shift drawn from the certificate's serial (see the module doc).
    Serials are random (159 bits), so the shifts of a fleet are spread as a fresh draw's."""
    return renewal_due(not_before, not_after, rng=random.Random(serial))  # noqa: S311 (timing)


def refresh_due(
    issued_at: datetime, expires_at: datetime, *, rng: random.Random | None = None
) -> datetime:
    """Access tokens are refreshed by the same rule as certificates."""
    return renewal_due(issued_at, expires_at, rng=rng)


class Backoff:
    """`next()` is the wait before the next attempt; `reset()` after a success."""

    def __init__(
        self, *, base: float = 1.0, cap: float = 300.0, rng: random.Random | None = None
    ) -> None:
        if base <= 0 or cap < base:
            raise ValueError(f"backoff needs 0 < base <= cap, not base={base} cap={cap}")
        self.base = base
        self.cap = cap
        self.failures = 0
        self._rng = rng or random.Random()  # noqa: S311 (timing jitter, not a secret)

    def next(self) -> float:
        ceiling = min(self.cap, self.base * 2 ** min(self.failures, 32))
        self.failures += 1
        # Never zero: a tight retry loop is what backoff exists to prevent.
        return max(self.base / 2, self._rng.uniform(0, ceiling))

    def reset(self) -> None:
        self.failures = 0


def seconds_until(moment: datetime, now: datetime) -> float:
    return max(0.0, (moment - now) / timedelta(seconds=1))
