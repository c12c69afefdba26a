"""The CA's exceptions: one tree; each message names the input and what was expected."""

from __future__ import annotations


class PkiError(Exception):
    """Base of every error `labgate.pki` raises on purpose."""


class CaExists(PkiError):
    """`init` found a CA (or part of one) where it was asked to make a new one."""


class CaNotFound(PkiError):
    """`open` found no complete CA in the directory."""


class PassphraseRequired(PkiError):
    """Keys are to be encrypted (or are encrypted) and no passphrase was given."""


class WeakPassphrase(PkiError):
    """A passphrase for new keys that is a placeholder or too short."""


class WrongPassphrase(PkiError):
    """The passphrase does not decrypt a CA key."""


class CorruptKey(PkiError):
    """A key file cannot be read, or does not belong to its certificate."""


class InsecureKeyFile(PkiError):
    """A CA key file that others than its owner may read or write."""


class CorruptCertificate(PkiError):
    """A certificate file cannot be read."""


class CaExpired(PkiError):
    """The issuing (or root) CA is outside its validity period, so it may not sign."""


class InvalidName(PkiError, ValueError):
    """A name, DNS name, IP address or URI that labgate refuses (it never escapes one)."""


class InvalidRequest(PkiError, ValueError):
    """A request that cannot be served as asked: a bad lifetime, a CSR that does not parse, ..."""


class ProfileViolation(PkiError):
    """A request asks for something its profile does not allow (the message names it)."""


class UnknownCertificate(PkiError):
    """A serial or certificate that this CA's inventory does not hold."""


class AlreadyRevoked(PkiError):
    """A revocation (or renewal) of a certificate that is already revoked."""


class SerialTaken(PkiError):
    """The inventory already holds this serial; the authority retries with a fresh one."""


class InventoryError(PkiError):
    """The inventory is unreadable or of a schema this version does not know."""
