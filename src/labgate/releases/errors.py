"""The releases core's exceptions: each message names the input at fault and what was expected."""

from __future__ import annotations


class ReleaseError(Exception):
    """Base of every error of labgate.releases."""


class RepositoryExists(ReleaseError):
    pass


class RepositoryNotFound(ReleaseError):
    pass


class KeyFileError(ReleaseError):
    """A key file that is missing, unreadable, too open, or not decrypted by its passphrase."""


class NotEnoughKeys(ReleaseError):
    """Fewer signing keys at hand than the role's threshold."""


class InvalidRelease(ReleaseError, ValueError):
    """A version, model name or artifact the repository refuses to sign."""


class VerificationFailed(ReleaseError):
    """Metadata or a target did not verify: signatures, expiry, versions, hashes or length."""


class Refused(ReleaseError):
    """An install the device refuses although the metadata verified (model, binding, floor)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
