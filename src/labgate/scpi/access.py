"""Access levels, and the level each command needs.

The instrument knows five levels, in this order; a session at one level may do everything the
levels below it may.
"""

from dataclasses import dataclass
from enum import IntEnum


class AccessLevel(IntEnum):
    """Guest < Observer < Controller < Administrator < Full."""

    GUEST = 0
    OBSERVER = 1
    CONTROLLER = 2
    ADMINISTRATOR = 3
    FULL = 4

    @classmethod
    def parse(cls, text: str) -> "AccessLevel":
        """`"observer"`, `"OBSERVER"`, `"Observer"` -> OBSERVER; ValueError naming the text."""
        try:
            return cls[text.strip().upper()]
        except KeyError:
            names = ", ".join(level.label for level in cls)
            raise ValueError(f"unknown access level {text!r}; expected one of {names}") from None

    @property
    def label(self) -> str:
        """The instrument's spelling: `Observer`."""
        return self.name.capitalize()


@dataclass(frozen=True, slots=True, kw_only=True)
class Allowed:
    """The command may run; `required` is the highest level any part of it needed."""

    required: AccessLevel


@dataclass(frozen=True, slots=True, kw_only=True)
class Denied:
    """The command may not run: `command` is the part that needed `required`, `reason` says why."""

    required: AccessLevel
    command: str
    reason: str
