"""Which identity may use which instrument, and up to which access level."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from labgate.gateway.config import Grant
from labgate.scpi.access import AccessLevel

# Full access over the network is an explicit choice (gateway.unsafe_allow_full); below it,
# Administrator is the most a grant can give, whatever a bundle from the control server says.
HIGHEST_WITHOUT_FULL = AccessLevel.ADMINISTRATOR


@dataclass(frozen=True, slots=True, kw_only=True)
class Granted:
    level: AccessLevel


@dataclass(frozen=True, slots=True, kw_only=True)
class NotGranted:
    reason: str


GrantDecision = Granted | NotGranted


@dataclass(frozen=True, slots=True, kw_only=True)
class GrantTable:
    """Grants indexed for lookup; an identity's level is the highest grant that names the
    instrument or "*"."""

    grants: tuple[Grant, ...]
    allow_full: bool = False

    @classmethod
    def of(cls, grants: Iterable[Grant], *, allow_full: bool) -> GrantTable:
        return cls(grants=tuple(grants), allow_full=allow_full)

    def decide(self, identity: str, instrument: str) -> GrantDecision:
        """The grant alone; whether the certificate names one identity is `admission`'s."""
        levels = [
            g.level
            for g in self.grants
            if g.identity == identity and g.instrument in (instrument, "*")
        ]
        if not levels:
            return NotGranted(reason=f"no grant for {identity} on instrument {instrument!r}")
        level = max(levels)
        if level is AccessLevel.FULL and not self.allow_full:
            level = HIGHEST_WITHOUT_FULL
        return Granted(level=level)
