"""Renewal at 2/3 of a lifetime with jitter; full-jitter backoff with a cap."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from labgate.pki.renewal import Backoff, renewal_due

START = datetime(2026, 12, 1, tzinfo=UTC)


def test_renewal_falls_near_two_thirds_of_the_lifetime_and_spreads() -> None:
    rng = random.Random(7)
    end = START + timedelta(days=1)
    dues = [renewal_due(START, end, rng=rng) for _ in range(500)]
    earliest, latest = START + timedelta(hours=16 - 1.2), START + timedelta(hours=16 + 1.2)
    assert all(earliest <= due <= latest for due in dues)
    # A fleet issued in one minute does not renew in one minute: spread over > an hour.
    assert max(dues) - min(dues) > timedelta(hours=1)


def test_backoff_grows_then_stays_under_its_cap() -> None:
    backoff = Backoff(base=1.0, cap=60.0, rng=random.Random(1))
    waits = [backoff.next() for _ in range(40)]
    assert all(0.5 <= w <= 60.0 for w in waits)
    assert max(waits[:3]) <= 4.0
    assert max(waits[10:]) > 20.0  # it does grow


def test_backoff_reset_starts_again_small() -> None:
    backoff = Backoff(base=1.0, cap=300.0, rng=random.Random(2))
    for _ in range(20):
        backoff.next()
    backoff.reset()
    assert backoff.next() <= 1.0


@pytest.mark.parametrize(("base", "cap"), [(0, 10), (-1, 10), (10, 5)])
def test_a_nonsense_backoff_is_refused(base: float, cap: float) -> None:
    with pytest.raises(ValueError, match="backoff"):
        Backoff(base=base, cap=cap)
