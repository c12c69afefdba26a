"""Failed-login throttling: growing delays per source, and an account lock that expires.

The server keeps, in its database (so every replica sees the same), one counter per key, each
holding the number of failures in a row and the time of the last one. Three kinds of key are
judged at every login, all with the canonical user name (`labgate.auth.usernames`), so `ADMIN`
or full-width letters count against `admin`:

- ``pair:<name>@<source>``: one source guessing one account. Growing delays (a few free typos,
  then 1 s, 2 s, 4 s ... at most 15 minutes), no lock. This is what slows a single attacker.
- ``address:<source>``: one source guessing any account (password spraying). More free
  failures (several people share a NAT address), the same growth, no lock, forgotten after a
  quiet day. A success does NOT reset it: logging in with one's own account must not buy
  another round of guesses against everybody else's.
- ``account:<name>``: every source together against one account (a guess spread over many
  addresses). No delays (one attacker's guess must not make the owner wait), but a lock after
  `lock_after` failures that lasts `lock_for` and then ends by itself, counter and all.

A source is the socket peer's address (an IPv6 address counts as its /64, which one host
usually holds whole), never a forwarded header.

Why no anonymous client can lock an account for good: the account's own counter never delays,
so a lone attacker's guesses cost the owner nothing until the lock; that attacker's pair and
address delays reach 15 minutes after ~15 guesses, so reaching even the lowest lock threshold
again after a lock has ended takes one source far longer than the lock lasts (the figures are
worked out in tests/auth/test_throttle.py); and the host's operator can lift a lock at once
(`labgate server unlock`). An attacker with many addresses can still re-lock an account as often
as it can find `lock_after` fresh guesses; that is the price of any lock, and why it expires.

How the server uses it, at each login attempt:
1. `check_login(counters, now=...)`. Denied means refuse at once: do not look at the password
   and do not count the attempt (a throttled attempt that counted would stretch its own delay,
   and checking the password while refusing would leak whether it was right).
2. Otherwise verify the password (`dummy_verify` for an unknown user name, whose counters are
   kept all the same so an unknown name is throttled exactly like a real one).
3. On failure, add one to each counter in one statement each (``UPDATE ... SET failures =
   CASE WHEN <forgotten> THEN 1 ELSE failures + 1 END``, see `ThrottleRule.after_failure`),
   never read-add-write. On success, reset the pair and account counters (the password was
   right), never the address counter.
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
    """How fast delays grow for one kind of key, and when it locks and for how long."""

    free_failures: int
    base_delay: timedelta
    max_delay: timedelta
    # Failures in a row that lock the key, and how long the lock lasts from the last of them.
    lock_after: int | None = None
    lock_for: timedelta | None = None
    # A counter whose last failure is at least this old counts as zero (None: never forgotten).
    forget_after: timedelta | None = None

    def __post_init__(self) -> None:
        if self.free_failures < 0 or self.base_delay <= timedelta(0):
            raise ValueError("free_failures must be >= 0 and base_delay positive")
        if self.max_delay < self.base_delay:
            raise ValueError(f"max_delay {self.max_delay} is below base_delay {self.base_delay}")
        if self.lock_after is not None:
            if self.lock_after < max(1, self.free_failures):
                raise ValueError(
                    f"lock_after ({self.lock_after}) must be at least free_failures "
                    f"({self.free_failures}) and 1"
                )
            # A lock that never ends is what lets anyone shut an account for good.
            if self.lock_for is None or self.lock_for <= timedelta(0):
                raise ValueError("a rule with lock_after needs a positive lock_for")

    def delay(self, failures: int) -> timedelta:
        """The wait imposed after `failures` failures in a row."""
        extra = failures - self.free_failures
        if extra <= 0:
            return timedelta(0)
        # Cap the exponent before computing: 2 ** 10_000 seconds is not a timedelta.
        doublings = min(extra - 1, 40)
        return min(self.base_delay * (1 << doublings), self.max_delay)

    def is_locked(self, counter: FailureCounter) -> bool:
        return self.lock_after is not None and counter.failures >= self.lock_after

    def current(self, counter: FailureCounter, *, now: datetime) -> FailureCounter:
        """The counter as it stands at `now`: a forgotten one, or one whose lock ended, is zero."""
        require_aware(now)
        last = counter.last_failure_at
        if last is None:
            return counter
        if self.forget_after is not None and now - last >= self.forget_after:
            return FailureCounter()
        if self.is_locked(counter) and self.lock_for is not None and now - last >= self.lock_for:
            return FailureCounter()
        return counter

    def after_failure(self, counter: FailureCounter, *, now: datetime) -> FailureCounter:
        """The counter after one more failure at `now`.

        In SQL, one statement: ``SET failures = CASE WHEN last_failure_at <= :now -
        forget_after OR (failures >= lock_after AND last_failure_at <= :now - lock_for)
        THEN 1 ELSE failures + 1 END, last_failure_at = :now``.
        """
        base = self.current(counter, now=now)
        return FailureCounter(failures=base.failures + 1, last_failure_at=now)

    def check(self, counter: FailureCounter, *, now: datetime, what: str) -> Allowed | Denied:
        """Whether an attempt for this key may proceed now."""
        counter = self.current(counter, now=now)
        last = counter.last_failure_at
        if self.is_locked(counter) and self.lock_for is not None and last is not None:
            return Denied(
                reason="locked",
                detail=f"{what} is locked after {counter.failures} failed logins in a row",
                retry_after=last + self.lock_for - now,
            )
        wait = self.delay(counter.failures)
        if wait and last is not None:
            remaining = last + wait - now
            if remaining > timedelta(0):
                return Denied(
                    reason="throttled",
                    detail=f"{what} must wait after {counter.failures} failed logins in a row",
                    retry_after=remaining,
                )
        return Allowed()


# A counter quiet this long counts as zero (every rule forgets by then at the latest).
QUIET_DAY = timedelta(hours=24)

# One source against one account: five free typos, then 1 s, 2 s, 4 s ... at most 15 minutes.
PAIR_RULE = ThrottleRule(
    free_failures=5,
    base_delay=timedelta(seconds=1),
    max_delay=timedelta(minutes=15),
    forget_after=QUIET_DAY,
)
# One source against any account: more free failures (several people behind one address), the
# same growth, no lock, forgotten after a quiet day (addresses change hands; accounts do not).
ADDRESS_RULE = ThrottleRule(
    free_failures=20,
    base_delay=timedelta(seconds=1),
    max_delay=timedelta(minutes=15),
    forget_after=QUIET_DAY,
)
# Every source against one account: no delays, a lock at 100 (NIST SP 800-63B's ceiling for
# consecutive failures) that ends after 15 minutes. The server sets both from its settings.
# Forgotten after a quiet day like the others (or once the lock has ended, if it lasts longer):
# a guesser slower than that is slower than the lock already lets through, and a counter that
# counts as zero can be deleted, so unknown names sprayed once do not stay in the table.
ACCOUNT_LOCK_AFTER = 100
ACCOUNT_LOCK_FOR = timedelta(minutes=15)


def account_rule(
    lock_after: int = ACCOUNT_LOCK_AFTER, lock_for: timedelta = ACCOUNT_LOCK_FOR
) -> ThrottleRule:
    """The account-wide rule: no delay before the lock (free_failures is the threshold)."""
    return ThrottleRule(
        free_failures=lock_after,
        base_delay=timedelta(seconds=1),
        max_delay=timedelta(seconds=1),
        lock_after=lock_after,
        lock_for=lock_for,
        forget_after=max(QUIET_DAY, lock_for),
    )


ACCOUNT_RULE = account_rule()


@dataclass(frozen=True, slots=True, kw_only=True)
class LoginCounters:
    """The three counters of one attempt (a missing one is clean)."""

    pair: FailureCounter = FailureCounter()
    address: FailureCounter = FailureCounter()
    account: FailureCounter = FailureCounter()


def check_login(
    counters: LoginCounters,
    *,
    now: datetime,
    account: ThrottleRule = ACCOUNT_RULE,
    pair: ThrottleRule = PAIR_RULE,
    address: ThrottleRule = ADDRESS_RULE,
) -> Allowed | Denied:
    """Allowed, or the stricter refusal (a lock beats a wait, a longer wait wins)."""
    decisions = [
        account.check(counters.account, now=now, what="account"),
        pair.check(counters.pair, now=now, what="this source, for this account,"),
        address.check(counters.address, now=now, what="source address"),
    ]
    denials = [d for d in decisions if isinstance(d, Denied)]
    if not denials:
        return Allowed()
    locked = [d for d in denials if d.reason == "locked"]
    if locked:
        return locked[0]
    return max(denials, key=lambda d: d.retry_after or timedelta(0))
