"""Renewal at 2/3 of a lifetime with jitter; full-jitter backoff with a cap (the one rule the
agent, the gateway and the control server share)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from labgate.pki.renewal import Backoff, certificate_due, renewal_due, renewal_window

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


# ---------------------------------------------------------------- shared by gateway and server


@given(
    lifetime=st.integers(min_value=1, max_value=825 * 86400),
    serial=st.integers(min_value=1, max_value=2**159),
)
def test_a_certificates_renewal_point_stays_within_its_window(lifetime: int, serial: int) -> None:
    end = START + timedelta(seconds=lifetime)
    earliest, latest = renewal_window(START, end)
    due = certificate_due(START, end, serial)
    assert earliest <= due <= latest
    # The window is 2/3 of the lifetime, give or take a twentieth: never past 72%, never at 0.
    assert (latest - START) <= timedelta(seconds=lifetime) * 0.72
    assert (earliest - START) >= timedelta(seconds=lifetime) * 0.61


def test_a_certificates_renewal_point_is_stable_for_its_serial_and_spreads_across_serials() -> None:
    end = START + timedelta(days=90)
    assert certificate_due(START, end, 12345) == certificate_due(START, end, 12345)
    dues = {certificate_due(START, end, serial) for serial in range(1000, 1200)}
    assert max(dues) - min(dues) > timedelta(days=7)  # 200 certificates spread over > a week


@given(
    base=st.floats(min_value=0.01, max_value=10),
    cap=st.floats(min_value=10, max_value=3600),
    attempts=st.integers(min_value=1, max_value=200),
)
def test_backoff_never_exceeds_its_cap_and_never_spins(
    base: float, cap: float, attempts: int
) -> None:
    backoff = Backoff(base=base, cap=cap, rng=random.Random(attempts))
    waits = [backoff.next() for _ in range(attempts)]
    assert all(base / 2 <= w <= cap for w in waits)
