"""The control server's exception tree.

Domain code raises these; one handler at the HTTP edge (`labgate.control.http.errors`) turns each
into a status code and a JSON body `{code, message}`. Messages name the offending input and what
was expected, and never carry a password, token or key.
"""

from __future__ import annotations


class ControlError(Exception):
    """Base of every control-server error. `code` is a stable identifier for clients."""

    code = "control_error"

    def __init__(self, *args: object, code: str | None = None) -> None:
        super().__init__(*args)
        if code is not None:
            self.code = code  # a more specific stable code than the class's (a reason)


class ConfigurationError(ControlError):
    """A setting, data directory or file on disk is not usable as it stands."""

    code = "configuration_error"


class AlreadyInitialised(ConfigurationError):
    """`init` found an existing server in the data directory and refuses to overwrite it."""

    code = "already_initialised"


class NotInitialised(ConfigurationError):
    """The data directory holds no initialised server."""

    code = "not_initialised"


class NotFound(ControlError):
    code = "not_found"


class Conflict(ControlError):
    code = "conflict"


class InvalidInput(ControlError):
    code = "invalid_input"


class PasswordRejected(InvalidInput):
    """A new password fails the policy in force; `reason` is the policy's stable reason code."""

    code = "password_rejected"

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class AuthenticationFailed(ControlError):
    """Credentials or a token were not accepted. The message never says which part was wrong."""

    code = "authentication_failed"


class RefreshTokenReused(AuthenticationFailed):
    """A refresh token that was already used came back: its whole family is now revoked."""

    code = "refresh_token_reused"


class CertificateRequired(AuthenticationFailed):
    """The endpoint or token needs a client certificate that the connection did not present."""

    code = "certificate_required"


class Throttled(ControlError):
    """Too many failed attempts from this account or address; try again after `retry_after`."""

    code = "throttled"

    def __init__(self, message: str, *, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class AccountLocked(ControlError):
    """The account reached the failed-login threshold; the lock ends after `retry_after`."""

    code = "account_locked"

    def __init__(self, message: str, *, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Forbidden(ControlError):
    """Authenticated, but this principal may not do this."""

    code = "forbidden"


class PasswordChangeRequired(Forbidden):
    """The session may only change its password (one-time password, or one the policy refuses)."""

    code = "password_change_required"


class Gone(ControlError):
    """What was asked for is over for good: a discovery that ended, an expired verification."""

    code = "gone"


class DeviceGrantRefused(ControlError):
    """An RFC 8628 token poll that gets no token; `code` is the RFC's `error` value."""

    code = "invalid_grant"

    def __init__(self, message: str, *, code: str, interval: int | None = None) -> None:
        super().__init__(message, code=code)
        self.interval = interval


class ChainRefused(Conflict):
    """A gateway's audit batch does not continue the chain this server holds for it (a gap, a
    fork, another log). `where` says at which seq, with the hashes held and sent."""

    code = "audit_chain_refused"

    def __init__(self, message: str, *, code: str, where: dict[str, object]) -> None:
        super().__init__(message, code=code)
        self.where = where


class RecordInvalid(InvalidInput):
    """A line of a gateway's audit batch is not a record its log could have written."""

    code = "audit_record_invalid"

    def __init__(self, message: str, *, where: dict[str, object]) -> None:
        super().__init__(message)
        self.where = where
