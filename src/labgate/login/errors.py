"""The login's exception tree: each names what was refused and what to do next.

No message ever carries a password or a token: the server's own error bodies carry none, and
every message here is built from names, codes and times only.
"""

from __future__ import annotations


class LoginError(Exception):
    """Base of every refusal `labgate login`, `logout` and `cert get` report."""


class InvalidServer(LoginError):
    """The server URL or its CA file cannot be used."""


class NotLoggedIn(LoginError):
    """A command that needs a login found none in the configuration directory."""


class LoginEnded(LoginError):
    """The server no longer takes this login's tokens (logged out, rotated elsewhere, reused,
    expired, account disabled); only a new `labgate login` helps."""


class UnsafeFile(LoginError):
    """The token file is not one this user alone owns and reads."""


class CorruptLogin(LoginError):
    """The token file does not parse as `labgate login` writes it."""


class WrongPassword(LoginError):
    """The server refused the user name and password."""


class PasswordRefused(LoginError):
    """A new password was refused (by the server's policy, or the two entries differ)."""


class UntrustedServer(LoginError):
    """The server's TLS certificate does not chain to the CA this login trusts."""


class ServerRefused(LoginError):
    """The control server answered with an error `{code, message}`."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"the server refused ({status} {code}): {message}")
        self.status = status
        self.code = code
        self.message = message


class ServerAway(LoginError):
    """The control server could not be reached or answered 5xx; try again later."""
