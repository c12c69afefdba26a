"""Failed-login throttling: growing delays per account and per source address, and a lock.

The server keeps, in its database (so every replica sees the same), one counter per key:
``account:<user name>`` and ``address:<peer address>`` (the socket's peer, never a header),
each holding the number of failures in a row and the time of the last one. This module only
decides; `labgate.control` stores.

How the server uses it, at each login attempt:
1. `check_login(account_counter, address_counter, now=...)`. Denied means refuse at once:
   do not look at the password and do not count the attempt (a throttled attempt that counted
   would stretch its own delay forever, and checking the password would leak whether it was
   right while locked). "locked" also goes to the audit log.
2. Otherwise verify the password (`dummy_verify` for an unknown user name, whose counter is
   kept all the same so an unknown name is throttled exactly like a real one).
3. On failure, add one to both counters in one statement each
   (``UPDATE ... SET failures = failures + 1, last_failure_at = :now``, or the form in
   `ThrottleRule.after_failure` for a rule that forgets), never read-add-write.
   On success, reset the account counter to zero (the address counter too: the source has
   shown it knows a password).

Delays grow as `base_delay * 2 ** (failures - free_failures - 1)` up to `max_delay`, measured
from the last failure. An account locks after `lock_after` failures in a row (NIST SP 800-63B:
at most 100) until an administrator unlocks it or resets its password; an address never locks
(a shared NAT address would lock out a whole site), it only waits.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from labgate.auth.clock import require_aware
from labgate.auth.decisions import Allowed, Denied


@dataclass(frozen=True, slots=True, kw_only=True)
class FailureCounter:
    """What the server stored for one key: failures in a row and when the last one was."""

    failures: int = 0
    last_failure_at: datetime | None = None

    def __post_init__(self) -> None:
        if self.failures < 0:
            raise ValueError(f"failures must be >= 0, got {self.failures}")
        if self.failures and self.last_failure_at is None:
            raise ValueError(f"{self.failures} failures recorded without last_failure_at")


@dataclass(frozen=True, slots=True, kw_only=True)
class ThrottleRule:
    """How fast delays grow for one kind of key, and when (if ever) it locks."""

    free_failures: int
    base_delay: timedelta
    max_delay: timedelta
    lock_after: int | None
    # A counter whose last failure is at least this old counts as zero (None: never forgotten).
    forget_after: timedelta | None = None

    def __post_init__(self) -> None:
        if self.free_failures < 0 or self.base_delay <= timedelta(0):
            raise ValueError("free_failures must be >= 0 and base_delay positive")
        if self.max_delay < self.base_delay:
            raise ValueError(f"max_delay {self.max_delay} is below base_delay {self.base_delay}")
        if self.lock_after is not None and self.lock_after <= self.free_failures:
            raise ValueError(
                f"lock_after ({self.lock_after}) must be above free_failures ({self.free_failures})"
            )

    def delay(self, failures: int) -> timedelta:
        """The wait imposed after `failures` failures in a row."""
        extra = failures - self.free_failures
        if extra <= 0:
            return timedelta(0)
        # Cap the exponent before computing: 2 ** 10_000 seconds is not a timedelta.
        doublings = min(extra - 1, 40)
        return min(self.base_delay * (1 << doublings), self.max_delay)

    def current(self, counter: FailureCounter, *, now: datetime) -> FailureCounter:
        """The counter as it stands at `now`: a forgotten one is zero."""
        require_aware(now)
        last = counter.last_failure_at
        if self.forget_after is not None and last is not None and now - last >= self.forget_after:
            return FailureCounter()
        return counter

    def after_failure(self, counter: FailureCounter, *, now: datetime) -> FailureCounter:
        """The counter after one more failure at `now`.

        In SQL, one statement: ``SET failures = CASE WHEN last_failure_at <= :now -
        forget_after THEN 1 ELSE failures + 1 END, last_failure_at = :now``.
        """
        base = self.current(counter, now=now)
        return FailureCounter(failures=base.failures + 1, last_failure_at=now)

    def check(self, counter: FailureCounter, *, now: datetime, what: str) -> Allowed | Denied:
        """Whether an attempt for this key may proceed now."""
        counter = self.current(counter, now=now)
        if self.lock_after is not None and counter.failures >= self.lock_after:
            return Denied(
                reason="locked",
                detail=f"{what} is locked after {counter.failures} failed logins in a row",
            )
        wait = self.delay(counter.failures)
        if wait and counter.last_failure_at is not None:
            remaining = counter.last_failure_at + wait - now
            if remaining > timedelta(0):
                return Denied(
                    reason="throttled",
                    detail=f"{what} must wait after {counter.failures} failed logins in a row",
                    retry_after=remaining,
                )
        return Allowed()


# An account: a few free typos, then 1 s, 2 s, 4 s ... at most a minute between guesses, and a
# lock at 100 (so at most ~100 guesses per account ever, and a lock needs ~1.5 h of trying).
ACCOUNT_RULE = ThrottleRule(
    free_failures=5,
    base_delay=timedelta(seconds=1),
    max_delay=timedelta(minutes=1),
    lock_after=100,
)
# A source address: more free failures (several people behind one address), a longer cap,
# no lock, and forgotten after a quiet day (addresses change hands; accounts do not).
ADDRESS_RULE = ThrottleRule(
    free_failures=20,
    base_delay=timedelta(seconds=1),
    max_delay=timedelta(minutes=15),
    lock_after=None,
    forget_after=timedelta(hours=24),
)


def check_login(
    account: FailureCounter,
    address: FailureCounter,
    *,
    now: datetime,
    account_rule: ThrottleRule = ACCOUNT_RULE,
    address_rule: ThrottleRule = ADDRESS_RULE,
) -> Allowed | Denied:
    """Allowed, or the stricter of the two refusals (a lock beats a wait, a longer wait wins)."""
    decisions = [
        account_rule.check(account, now=now, what="account"),
        address_rule.check(address, now=now, what="source address"),
    ]
    denials = [d for d in decisions if isinstance(d, Denied)]
    if not denials:
        return Allowed()
    locked = [d for d in denials if d.reason == "locked"]
    if locked:
        return locked[0]
    return max(denials, key=lambda d: d.retry_after or timedelta(0))
