"""Password hashing with argon2id.

Parameters (RFC 9106 section 4, the "second recommended option", which is also argon2-cffi's
low-memory profile): argon2id, 3 passes over 64 MiB (65536 KiB), 4 lanes, 16-byte random salt,
32-byte tag. Measured on the project's 2-core machine with argon2-cffi 25.1: hash and verify
each take 112-116 ms when the machine is otherwise idle (load average 0.2); with the machine
shared by other work (load average 5 to 7 on 2 cores) medians of 200-480 ms were seen. Four lanes on
two cores share the cores, so parallel logins queue: size the server's login concurrency to
the cores. `needs_rehash` lets the server upgrade stored hashes when these parameters change.

Normalisation: every password is NFKC-normalised before it is hashed or verified (NIST SP
800-63B recommends NFKC or NFKD), so the same password typed on keyboards that produce different
code points for it (a full-width digit, a composed or decomposed accent) is the same password.
`labgate.auth.policy` counts length on the same normalised form.

Unknown users: a login for a user that does not exist must cost the same as one with a wrong
password, or the response time tells an attacker which names exist. `dummy_verify` runs a full
verification against a fixed hash made with the same parameters.
"""

from __future__ import annotations

import functools
import unicodedata
from dataclasses import dataclass

import argon2
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from labgate.auth.errors import CorruptPasswordHash, PasswordTooLong

# A password longer than this (in UTF-8 bytes, after normalisation) is never hashed: no policy
# admits it (see policy.MAX_LENGTH), and refusing it early bounds the work one request can cause.
MAX_PASSWORD_BYTES = 4096

# Made once with the default parameters from a random password nobody knows, which was then
# thrown away: verifying any candidate against it fails after doing the full work.
_DUMMY_HASH_DEFAULT = (
    "$argon2id$v=19$m=65536,t=3,p=4$cAKOFUBNWBfk+UdJSdCg0g"
    "$l0v4y7mPi5nRGnRaGmaTVTm2i6MDiNNjyaDrPoCDEm0"
)
_DUMMY_CANDIDATE = "labgate-dummy-candidate"


def normalise_password(password: str) -> str:
    """The form in which a password is counted, compared and hashed (NFKC)."""
    return unicodedata.normalize("NFKC", password)


@dataclass(frozen=True, slots=True, kw_only=True)
class PasswordHasher:
    """argon2id with stated parameters; the defaults are the ones documented above."""

    time_cost: int = 3
    memory_cost_kib: int = 65536
    parallelism: int = 4
    hash_len: int = 32
    salt_len: int = 16

    def __post_init__(self) -> None:
        # Values below RFC 9106's floors would make a hash that is cheap to attack.
        if self.time_cost < 1 or self.parallelism < 1:
            raise ValueError(
                f"argon2 time_cost and parallelism must be >= 1, got "
                f"{self.time_cost} and {self.parallelism}"
            )
        if self.memory_cost_kib < 8 * self.parallelism:
            raise ValueError(
                f"argon2 memory_cost_kib must be >= 8 * parallelism, got {self.memory_cost_kib}"
            )
        if self.hash_len < 16 or self.salt_len < 16:
            raise ValueError(
                f"argon2 hash_len and salt_len must be >= 16 bytes, got "
                f"{self.hash_len} and {self.salt_len}"
            )

    def hash(self, password: str) -> str:
        """Hash `password` (normalised) into a PHC string that records salt and parameters."""
        encoded = _encode(password)
        return self._argon2().hash(encoded)

    def verify(self, stored: str | None, candidate: str) -> bool:
        """True when `candidate` is the password behind `stored`.

        A wrong password, or one too long to ever have been accepted, is False. `stored` None
        (an account with no password, such as a device) is False after the same work as a wrong
        password. A `stored` value that is not an argon2 hash raises CorruptPasswordHash (a
        storage fault, not a wrong password), and the value is never shown. The tag comparison
        inside libargon2 is constant-time.
        """
        if stored is None:
            self.dummy_verify()
            return False
        try:
            encoded = _encode(candidate)
        except PasswordTooLong:
            self.dummy_verify()
            return False
        try:
            return self._argon2().verify(stored, encoded)
        except VerifyMismatchError:
            return False
        except (InvalidHashError, VerificationError):
            # Anything but a mismatch means libargon2 could not use the stored string.
            raise CorruptPasswordHash(
                "stored password hash is not a valid argon2 hash string"
            ) from None

    def needs_rehash(self, stored: str) -> bool:
        """True when `stored` was made with other parameters (or another argon2 variant)."""
        try:
            return self._argon2().check_needs_rehash(stored)
        except InvalidHashError:
            raise CorruptPasswordHash(
                "stored password hash is not a valid argon2 hash string"
            ) from None

    def dummy_verify(self) -> None:
        """Do the work of one verification against a fixed hash with these parameters."""
        try:
            self._argon2().verify(self.dummy_hash(), _DUMMY_CANDIDATE)
        except VerifyMismatchError:
            return

    def dummy_hash(self) -> str:
        """The fixed hash that `dummy_verify` checks against (same parameters as this hasher)."""
        if self == PasswordHasher():
            return _DUMMY_HASH_DEFAULT
        return _dummy_hash_for(self)

    def _argon2(self) -> argon2.PasswordHasher:
        return argon2.PasswordHasher(
            time_cost=self.time_cost,
            memory_cost=self.memory_cost_kib,
            parallelism=self.parallelism,
            hash_len=self.hash_len,
            salt_len=self.salt_len,
            type=argon2.Type.ID,
        )


@functools.cache
def _dummy_hash_for(hasher: PasswordHasher) -> str:
    # Non-default parameters (tests, or a server that raised them): made once per process.
    return hasher._argon2().hash("labgate-dummy-" + "x" * 16)


def _encode(password: str) -> bytes:
    encoded = normalise_password(password).encode("utf-8")
    if len(encoded) > MAX_PASSWORD_BYTES:
        raise PasswordTooLong(
            f"password is {len(encoded)} bytes after NFKC normalisation; at most "
            f"{MAX_PASSWORD_BYTES} are accepted"
        )
    return encoded


DEFAULT_HASHER = PasswordHasher()


def hash_password(password: str, *, hasher: PasswordHasher = DEFAULT_HASHER) -> str:
    """Hash a password with `hasher` (the documented defaults unless told otherwise)."""
    return hasher.hash(password)


def verify_password(
    stored: str | None, candidate: str, *, hasher: PasswordHasher = DEFAULT_HASHER
) -> bool:
    """True when `candidate` matches `stored`; see PasswordHasher.verify."""
    return hasher.verify(stored, candidate)


def needs_rehash(stored: str, *, hasher: PasswordHasher = DEFAULT_HASHER) -> bool:
    """True when `stored` should be replaced by a hash with `hasher`'s parameters."""
    return hasher.needs_rehash(stored)


def dummy_verify(*, hasher: PasswordHasher = DEFAULT_HASHER) -> None:
    """Spend one verification's work; call it when the user name is unknown."""
    hasher.dummy_verify()
