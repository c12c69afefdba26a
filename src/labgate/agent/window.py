"""The discovery window, counted in announcements rather than seconds.

Before NTP a device's clock can be off by years, so "ten minutes" is kept as a number of
announcements made at the announcement interval: the window closes after the last one whatever
the clock says. It also closes for good on a wrong proof (one try) or once the device is linked.
"""

from __future__ import annotations

from dataclasses import dataclass

from labgate.agent.reasons import Reason

ANNOUNCE_INTERVAL_SECONDS = 5.0
# Ten minutes' worth of announcements at the interval above.
DEFAULT_ANNOUNCEMENTS = 120


@dataclass(slots=True)
class Window:
    announcements: int = DEFAULT_ANNOUNCEMENTS
    made: int = 0
    ended: Reason | None = None

    def __post_init__(self) -> None:
        if self.announcements < 1:
            raise ValueError(f"a window needs at least one announcement, not {self.announcements}")

    @property
    def is_open(self) -> bool:
        return self.ended is None and self.made < self.announcements

    def count(self) -> None:
        """One announcement made; the window closes after the last one."""
        self.made += 1
        if self.made >= self.announcements and self.ended is None:
            self.ended = Reason.WINDOW_CLOSED

    def close(self, reason: Reason) -> None:
        if self.ended is None:
            self.ended = reason
