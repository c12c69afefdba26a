"""The agent's exception tree: each names the input refused and what was expected."""

from __future__ import annotations


class AgentError(Exception):
    """Base of every refusal the agent reports (the command line prints it as one line)."""


class InvalidOption(AgentError):
    """A command-line value the agent cannot use (a network, an address, a URL)."""


class NotLinked(AgentError):
    """A command that needs a linked agent found none in the data directory."""


class CorruptState(AgentError):
    """A file in the data directory does not parse as the agent wrote it."""


class ServerRefused(AgentError):
    """The control server answered with an error `{code, message}`."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"server refused ({status} {code}): {message}")
        self.status = status
        self.code = code


class ServerAway(AgentError):
    """The control server could not be reached or answered 5xx; try again later."""


class ReasonedError(AgentError):
    """A refusal or failure with a stable reason code beside its message, for reports."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
