"""Throttling from the attacker's side: guessing gets slower, then stops; edges are exact."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from labgate.auth.decisions import Allowed, Denied
from labgate.auth.throttle import (
    ACCOUNT_RULE,
    ADDRESS_RULE,
    FailureCounter,
    ThrottleRule,
    check_login,
)

CLEAN = FailureCounter()


def _failures(count: int, at: datetime) -> FailureCounter:
    return FailureCounter(failures=count, last_failure_at=at) if count else CLEAN


def test_first_failures_are_free(now: datetime) -> None:
    for count in range(ACCOUNT_RULE.free_failures + 1):
        assert check_login(_failures(count, now), CLEAN, now=now) == Allowed()


def test_delay_starts_after_the_free_failures_and_doubles(now: datetime) -> None:
    free = ACCOUNT_RULE.free_failures
    delays = [ACCOUNT_RULE.delay(free + n) for n in range(1, 6)]
    assert delays == [timedelta(seconds=s) for s in (1, 2, 4, 8, 16)]
    assert ACCOUNT_RULE.delay(99) == ACCOUNT_RULE.max_delay == timedelta(minutes=1)


def test_guess_inside_the_delay_is_throttled_and_edge_is_exact(now: datetime) -> None:
    counter = _failures(ACCOUNT_RULE.free_failures + 3, now)  # delay 4 s
    early = check_login(counter, CLEAN, now=now + timedelta(seconds=3))
    assert isinstance(early, Denied) and early.reason == "throttled"
    assert early.retry_after == timedelta(seconds=1)
    just_before = check_login(counter, CLEAN, now=now + timedelta(seconds=4, microseconds=-1))
    assert isinstance(just_before, Denied)
    assert check_login(counter, CLEAN, now=now + timedelta(seconds=4)) == Allowed()


def test_account_locks_at_one_hundred_and_waiting_does_not_help(now: datetime) -> None:
    assert ACCOUNT_RULE.lock_after == 100
    almost = _failures(99, now - timedelta(days=1))
    assert check_login(almost, CLEAN, now=now) == Allowed()
    locked = _failures(100, now - timedelta(days=365))
    decision = check_login(locked, CLEAN, now=now)
    assert isinstance(decision, Denied) and decision.reason == "locked"
    assert decision.retry_after is None


def test_spreading_guesses_over_accounts_hits_the_address_limit(now: datetime) -> None:
    # Password spraying: one failure per account, many accounts, one source.
    address = _failures(ADDRESS_RULE.free_failures + 10, now)
    decision = check_login(CLEAN, address, now=now + timedelta(seconds=1))
    assert isinstance(decision, Denied) and decision.reason == "throttled"
    assert decision.retry_after is not None and decision.retry_after > timedelta(minutes=8)


def test_an_address_never_locks_only_waits(now: datetime) -> None:
    address = _failures(1_000_000, now)
    decision = check_login(CLEAN, address, now=now)
    assert isinstance(decision, Denied) and decision.reason == "throttled"
    assert decision.retry_after == ADDRESS_RULE.max_delay
    assert check_login(CLEAN, address, now=now + ADDRESS_RULE.max_delay) == Allowed()


def test_address_counter_is_forgotten_after_a_quiet_day(now: datetime) -> None:
    stale = _failures(500, now - timedelta(hours=24))
    assert ADDRESS_RULE.current(stale, now=now) == CLEAN
    assert ADDRESS_RULE.after_failure(stale, now=now) == _failures(1, now)
    fresh = _failures(500, now - timedelta(hours=23))
    assert ADDRESS_RULE.after_failure(fresh, now=now) == _failures(501, now)


def test_account_counter_is_never_forgotten(now: datetime) -> None:
    old = _failures(100, now - timedelta(days=3650))
    assert ACCOUNT_RULE.current(old, now=now) == old
    assert ACCOUNT_RULE.after_failure(old, now=now).failures == 101


def test_lock_wins_over_a_longer_wait(now: datetime) -> None:
    decision = check_login(_failures(100, now), _failures(10_000, now), now=now)
    assert isinstance(decision, Denied) and decision.reason == "locked"


def test_the_longer_wait_wins(now: datetime) -> None:
    account = _failures(ACCOUNT_RULE.free_failures + 1, now)  # 1 s
    address = _failures(ADDRESS_RULE.free_failures + 5, now)  # 16 s
    decision = check_login(account, address, now=now)
    assert isinstance(decision, Denied) and decision.retry_after == timedelta(seconds=16)


def test_huge_counts_do_not_overflow(now: datetime) -> None:
    rule = ThrottleRule(free_failures=0, base_delay=timedelta(seconds=1),
                        max_delay=timedelta(days=1), lock_after=None)  # fmt: skip
    assert rule.delay(10**9) == timedelta(days=1)


def test_inconsistent_rules_and_counters_are_refused() -> None:
    with pytest.raises(ValueError, match="lock_after"):
        ThrottleRule(free_failures=10, base_delay=timedelta(seconds=1),
                     max_delay=timedelta(seconds=5), lock_after=5)  # fmt: skip
    with pytest.raises(ValueError, match="max_delay"):
        ThrottleRule(free_failures=1, base_delay=timedelta(seconds=10),
                     max_delay=timedelta(seconds=5), lock_after=None)  # fmt: skip
    with pytest.raises(ValueError, match="failures"):
        FailureCounter(failures=-1)
    with pytest.raises(ValueError, match="last_failure_at"):
        FailureCounter(failures=3)
