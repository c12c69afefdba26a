"""The instrument's `RAND?` key: a 6-digit password that `AUTH` turns into Administrator.

As qslib documents the machine (`Machine.generate_random_key`): a Controller asks for a key; it is
valid for 10 minutes and grants Administrator when used as the password in `CHAL?`/`AUTH`. Only one
key is active at a time: asking again before it expires gives the same key. Nothing says a key is
used up by one login, so it is not. This is a hole (Controller mints Administrator), simulated as
the machine has it; labgate's gateway refuses `RAND?` below Full.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

# The machine's validity, real seconds (not scaled: it is a credential, not a run).
VALID_SECONDS = 600.0
DIGITS = 6


@dataclass(frozen=True, slots=True, kw_only=True)
class IssuedKey:
    key: str
    expires: float  # on the issuer's clock


class RandomKeys:
    """Mints the one active key and says whether a key is still valid."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._issued: IssuedKey | None = None

    def current(self) -> str:
        """The active key, or a new one if none is active (`RAND?`)."""
        active = self.active()
        if active is not None:
            return active
        key = f"{secrets.randbelow(10**DIGITS):0{DIGITS}d}"
        self._issued = IssuedKey(key=key, expires=self._clock() + VALID_SECONDS)
        return key

    def active(self) -> str | None:
        """The key `AUTH` accepts right now, if any."""
        issued = self._issued
        if issued is None or self._clock() >= issued.expires:
            self._issued = None
            return None
        return issued.key
