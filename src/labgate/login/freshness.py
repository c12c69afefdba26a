"""`labgate cert get --renew`: keep the certificate file fresh until stopped.

Each certificate is renewed (a new key, a new CSR) at 2/3 of its lifetime, moved by up to a
twentieth of it either way so that a lab's people do not all renew in the same minute; the point
is drawn once per certificate. In between, the login is kept alive: its tokens are refreshed at
2/3 of the refresh token's life, before the server's idle limit ends it.

A user's login has an absolute end too (`user_session_max_seconds`, 12 h by default), after which
only the password opens a new one. When that end comes before the next renewal point, the
certificate is renewed shortly before it instead, and the loop then stops with `LoginEnded`,
saying until when the file stays valid: renewing past that needs `labgate login` again.

A server that is away is retried with capped, jittered backoff (`labgate.pki.renewal.Backoff`);
the retries are bounded by the login itself (once its refresh token's end has passed it cannot
be refreshed, and `LoginEnded` stops the loop) and by `MAX_FAILURES` in a row.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from labgate.login.certificate import Kept, get_certificate
from labgate.login.errors import LoginEnded, ServerAway
from labgate.login.session import Authorised
from labgate.login.store import Tokens
from labgate.pki.renewal import Backoff, refresh_due, renewal_due, seconds_until

# Renew this long before the login's absolute end, when that end comes first: room for a few
# retries should the server be away just then.
LAST_CHANCE = timedelta(minutes=5)
# Consecutive failed attempts before giving up (with the default backoff, over an hour).
MAX_FAILURES = 30
BACKOFF_BASE_S = 1.0
BACKOFF_CAP_S = 300.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Renewal:
    """When to renew the certificate; `last` when the login ends before the one after."""

    at: datetime
    last: bool


def plan_renewal(
    kept: Kept, tokens: Tokens, *, now: datetime, rng: random.Random | None = None
) -> Renewal | None:
    """2/3 of the certificate's life (jittered), or just before the login's end if that comes
    first; None when even that is past (the login ends before any renewal could be made)."""
    due = renewal_due(kept.not_before, kept.not_after, rng=rng)
    end = tokens.session_expires_at
    if end is None or due <= end - LAST_CHANCE:
        return Renewal(at=due, last=False)
    if now >= end - LAST_CHANCE:
        return None
    return Renewal(at=end - LAST_CHANCE, last=True)


def tokens_due(tokens: Tokens) -> datetime:
    """When to refresh to keep the login alive: 2/3 of the refresh token's life (jittered)."""
    return refresh_due(tokens.obtained_at, tokens.refresh_deadline() or tokens.access_expires_at)


def keep_fresh(
    authorised: Authorised,
    kept: Kept,
    *,
    stop: threading.Event,
    say: Callable[[str], None],
    wait: Callable[[float], bool] | None = None,
    rng: random.Random | None = None,
) -> Kept:
    """Renew `kept` until `stop` is set; the certificate in the file when it ends.

    `wait(seconds)` sleeps and returns True when stopped (by default `stop.wait`)."""
    sleep = wait or stop.wait
    now = authorised.now
    backoff = Backoff(base=BACKOFF_BASE_S, cap=BACKOFF_CAP_S, rng=rng)
    renewal = plan_renewal(kept, authorised.login().tokens, now=now(), rng=rng)
    while not stop.is_set():
        login = authorised.store.require()
        if renewal is None:
            raise LoginEnded(_ended(kept, login.server, login.tokens.session_expires_at))
        refresh_at = tokens_due(login.tokens)
        renew = renewal.at <= refresh_at
        if sleep(seconds_until(renewal.at if renew else refresh_at, now())):
            break
        try:
            if renew:
                kept = get_certificate(authorised, kept.path)
                say(f"renewed {kept.path}: serial {kept.serial}, valid until {_at(kept.not_after)}")
                renewal = (
                    None
                    if renewal.last
                    else plan_renewal(kept, authorised.login().tokens, now=now(), rng=rng)
                )
            else:
                authorised.fresh(refused=login.tokens.access_token)
            backoff.reset()
        except ServerAway as away:
            if backoff.failures + 1 >= MAX_FAILURES:
                raise ServerAway(f"gave up after {MAX_FAILURES} failed attempts: {away}") from None
            pause = backoff.next()
            say(f"{away}; trying again in {pause:.1f} s")
            if sleep(pause):
                break
    return kept


def _ended(kept: Kept, server: str, end: datetime | None) -> str:
    when = f" at {_at(end)}" if end is not None else ""
    return (
        f"the login ends{when}, before the certificate's next renewal; {kept.path} stays valid "
        f"until {_at(kept.not_after)}; log in again (labgate login {server}) to keep renewing"
    )


def _at(moment: datetime) -> str:
    return f"{moment:%Y-%m-%d %H:%M}Z"
