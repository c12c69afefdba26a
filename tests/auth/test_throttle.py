"""Throttling from the attacker's side: guessing gets slower, a lock ends, edges are exact."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from labgate.auth.decisions import Allowed, Denied
from labgate.auth.throttle import (
    ACCOUNT_RULE,
    ADDRESS_RULE,
    PAIR_RULE,
    FailureCounter,
    LoginCounters,
    ThrottleRule,
    account_rule,
    check_login,
)

CLEAN = FailureCounter()


def _failures(count: int, at: datetime) -> FailureCounter:
    return FailureCounter(failures=count, last_failure_at=at) if count else CLEAN


def test_first_failures_are_free(now: datetime) -> None:
    for count in range(PAIR_RULE.free_failures + 1):
        assert check_login(LoginCounters(pair=_failures(count, now)), now=now) == Allowed()


def test_delay_starts_after_the_free_failures_and_doubles(now: datetime) -> None:
    free = PAIR_RULE.free_failures
    delays = [PAIR_RULE.delay(free + n) for n in range(1, 6)]
    assert delays == [timedelta(seconds=s) for s in (1, 2, 4, 8, 16)]
    assert PAIR_RULE.delay(99) == PAIR_RULE.max_delay == timedelta(minutes=15)


def test_guess_inside_the_delay_is_throttled_and_edge_is_exact(now: datetime) -> None:
    counters = LoginCounters(pair=_failures(PAIR_RULE.free_failures + 3, now))  # delay 4 s
    early = check_login(counters, now=now + timedelta(seconds=3))
    assert isinstance(early, Denied) and early.reason == "throttled"
    assert early.retry_after == timedelta(seconds=1)
    just_before = check_login(counters, now=now + timedelta(seconds=4, microseconds=-1))
    assert isinstance(just_before, Denied)
    assert check_login(counters, now=now + timedelta(seconds=4)) == Allowed()


def test_the_account_counter_never_delays_only_locks(now: datetime) -> None:
    # One attacker's guesses must not make the owner wait: no delay below the threshold.
    assert ACCOUNT_RULE.lock_after == 100
    almost = LoginCounters(account=_failures(99, now))
    assert check_login(almost, now=now) == Allowed()
    locked = check_login(LoginCounters(account=_failures(100, now)), now=now)
    assert isinstance(locked, Denied) and locked.reason == "locked"
    assert locked.retry_after == ACCOUNT_RULE.lock_for


def test_a_lock_ends_by_itself_and_the_count_starts_again(now: datetime) -> None:
    rule = account_rule(lock_after=10, lock_for=timedelta(minutes=15))
    counter = _failures(10, now)
    inside = rule.check(counter, now=now + timedelta(minutes=15, microseconds=-1), what="a")
    assert isinstance(inside, Denied) and inside.reason == "locked"
    later = now + timedelta(minutes=15)
    assert rule.check(counter, now=later, what="a") == Allowed()
    assert rule.current(counter, now=later) == CLEAN
    assert rule.after_failure(counter, now=later) == _failures(1, later)


def test_a_lock_that_never_ends_cannot_be_configured() -> None:
    with pytest.raises(ValueError, match="lock_for"):
        ThrottleRule(free_failures=3, base_delay=timedelta(seconds=1),
                     max_delay=timedelta(seconds=5), lock_after=5)  # fmt: skip


def test_one_source_reaching_the_lowest_threshold_again_takes_longer_than_the_lock() -> None:
    """After a lock at the lowest threshold (10) ends, the same source needs 10 more failures
    on its own pair counter, whose delays have grown: far longer than the 15-minute lock."""
    waits = sum((PAIR_RULE.delay(n) for n in range(10, 20)), timedelta(0))
    assert waits > 5 * ACCOUNT_RULE.lock_for


def test_spreading_guesses_over_accounts_hits_the_address_limit(now: datetime) -> None:
    # Password spraying: one failure per account, many accounts, one source.
    address = _failures(ADDRESS_RULE.free_failures + 10, now)
    decision = check_login(LoginCounters(address=address), now=now + timedelta(seconds=1))
    assert isinstance(decision, Denied) and decision.reason == "throttled"
    assert decision.retry_after is not None and decision.retry_after > timedelta(minutes=8)


def test_an_address_never_locks_only_waits(now: datetime) -> None:
    address = LoginCounters(address=_failures(1_000_000, now))
    decision = check_login(address, now=now)
    assert isinstance(decision, Denied) and decision.reason == "throttled"
    assert decision.retry_after == ADDRESS_RULE.max_delay
    assert check_login(address, now=now + ADDRESS_RULE.max_delay) == Allowed()


def test_address_counter_is_forgotten_after_a_quiet_day(now: datetime) -> None:
    stale = _failures(500, now - timedelta(hours=24))
    assert ADDRESS_RULE.current(stale, now=now) == CLEAN
    assert ADDRESS_RULE.after_failure(stale, now=now) == _failures(1, now)
    fresh = _failures(500, now - timedelta(hours=23))
    assert ADDRESS_RULE.after_failure(fresh, now=now) == _failures(501, now)


def test_lock_wins_over_a_longer_wait(now: datetime) -> None:
    counters = LoginCounters(account=_failures(100, now), address=_failures(10_000, now))
    decision = check_login(counters, now=now)
    assert isinstance(decision, Denied) and decision.reason == "locked"


def test_the_longer_wait_wins(now: datetime) -> None:
    counters = LoginCounters(
        pair=_failures(PAIR_RULE.free_failures + 1, now),  # 1 s
        address=_failures(ADDRESS_RULE.free_failures + 5, now),  # 16 s
    )
    decision = check_login(counters, now=now)
    assert isinstance(decision, Denied) and decision.retry_after == timedelta(seconds=16)


def test_huge_counts_do_not_overflow(now: datetime) -> None:
    rule = ThrottleRule(free_failures=0, base_delay=timedelta(seconds=1),
                        max_delay=timedelta(days=1))  # fmt: skip
    assert rule.delay(10**9) == timedelta(days=1)


def test_inconsistent_rules_and_counters_are_refused() -> None:
    with pytest.raises(ValueError, match="lock_after"):
        ThrottleRule(free_failures=10, base_delay=timedelta(seconds=1),
                     max_delay=timedelta(seconds=5), lock_after=5,
                     lock_for=timedelta(seconds=1))  # fmt: skip
    with pytest.raises(ValueError, match="max_delay"):
        ThrottleRule(free_failures=1, base_delay=timedelta(seconds=10),
                     max_delay=timedelta(seconds=5))  # fmt: skip
    with pytest.raises(ValueError, match="failures"):
        FailureCounter(failures=-1)
    with pytest.raises(ValueError, match="last_failure_at"):
        FailureCounter(failures=3)
