"""The gateway's exceptions: one tree, each message naming the input and what was expected."""

from __future__ import annotations


class GatewayError(Exception):
    """Base of every error the gateway raises on purpose."""


class ConfigError(GatewayError):
    """The configuration file is missing, malformed, or asks for something unsafe or conflicting."""


class SecretFileError(ConfigError):
    """A password or key file is missing, empty, or readable by others than its owner."""


class ListenError(GatewayError):
    """A listen address could not be bound (taken by another process, say); names the option."""


class UpstreamError(GatewayError):
    """The instrument could not be reached, failed its pin check, or refused the gateway's login."""


class PinMismatch(UpstreamError):
    """The instrument's certificate does not carry the configured public key."""

    def __init__(self, *, instrument: str, expected: str, seen: str) -> None:
        super().__init__(
            f"instrument {instrument!r} presented public key {seen}, expected {expected}"
        )
        self.instrument = instrument
        self.expected = expected
        self.seen = seen


class InstrumentBusy(GatewayError):
    """Every upstream slot stayed taken for the whole wait, or the wait queue was full."""


class BundleError(GatewayError):
    """A grant bundle from the control server failed its signature, audience, expiry or version."""


class RenewalError(GatewayError):
    """A renewal of the gateway's own certificate that did not happen; `reason` is stable (the
    audit log's and the metric's): unreachable, refused, server_error, bad_response, unreadable,
    expired, write_failed."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
