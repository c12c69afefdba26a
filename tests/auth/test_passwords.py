"""Password hashing: what a thief of the database or a timing observer can and cannot get."""

from __future__ import annotations

import argon2
import pytest

from labgate.auth.errors import CorruptPasswordHash, PasswordTooLong
from labgate.auth.passwords import (
    DEFAULT_HASHER,
    MAX_PASSWORD_BYTES,
    PasswordHasher,
    dummy_verify,
    hash_password,
    needs_rehash,
    verify_password,
)

SECRET = "correct horse battery staple"


def test_default_parameters_are_the_documented_ones() -> None:
    stored = hash_password(SECRET)
    assert stored.startswith("$argon2id$v=19$m=65536,t=3,p=4$")
    assert verify_password(stored, SECRET)
    assert not needs_rehash(stored)


def test_wrong_password_is_false_not_an_error(fast_hasher: PasswordHasher) -> None:
    stored = fast_hasher.hash(SECRET)
    assert fast_hasher.verify(stored, SECRET)
    assert not fast_hasher.verify(stored, SECRET + " ")
    assert not fast_hasher.verify(stored, SECRET.upper())
    assert not fast_hasher.verify(stored, "")


def test_each_hash_has_its_own_salt(fast_hasher: PasswordHasher) -> None:
    assert fast_hasher.hash(SECRET) != fast_hasher.hash(SECRET)


def test_equivalent_unicode_spellings_are_one_password(fast_hasher: PasswordHasher) -> None:
    composed = "caf\u00e9 au lait, sans sucre"
    decomposed = "cafe\u0301 au lait, sans sucre"
    fullwidth_digits = "\uff11\uff12\uff13 correct horse staple"
    stored = fast_hasher.hash(composed)
    assert fast_hasher.verify(stored, decomposed)
    assert fast_hasher.verify(fast_hasher.hash(fullwidth_digits), "123 correct horse staple")


def test_corrupt_stored_hash_raises_without_showing_it(fast_hasher: PasswordHasher) -> None:
    stored = "$argon2id$v=19$m=1024,t=1,p=1$not-a-real-hash-secretvalue"
    with pytest.raises(CorruptPasswordHash) as caught:
        fast_hasher.verify(stored, SECRET)
    assert "secretvalue" not in str(caught.value)
    with pytest.raises(CorruptPasswordHash):
        fast_hasher.needs_rehash("plaintext-password-stored-by-mistake")


def test_tampered_hash_tag_does_not_verify(fast_hasher: PasswordHasher) -> None:
    stored = fast_hasher.hash(SECRET)
    flipped = stored[:-2] + ("A" if stored[-2] != "A" else "B") + stored[-1]
    assert not fast_hasher.verify(flipped, SECRET)


def test_weaker_stored_hash_needs_rehash(fast_hasher: PasswordHasher) -> None:
    old = fast_hasher.hash(SECRET)
    assert DEFAULT_HASHER.needs_rehash(old)
    assert not fast_hasher.needs_rehash(old)


def test_overlong_password_is_refused_for_hashing_and_false_for_login(
    fast_hasher: PasswordHasher,
) -> None:
    huge = "x" * (MAX_PASSWORD_BYTES + 1)
    with pytest.raises(PasswordTooLong):
        fast_hasher.hash(huge)
    assert not fast_hasher.verify(fast_hasher.hash(SECRET), huge)
    # Byte length counts after normalisation: 1366 three-byte characters are 4098 bytes.
    with pytest.raises(PasswordTooLong):
        fast_hasher.hash("\u20ac" * 1366)


def test_too_weak_parameters_are_refused() -> None:
    with pytest.raises(ValueError, match="time_cost"):
        PasswordHasher(time_cost=0)
    with pytest.raises(ValueError, match="salt_len"):
        PasswordHasher(salt_len=8)


def test_default_dummy_hash_has_the_default_parameters() -> None:
    # If the defaults change and this constant does not, unknown users would be faster.
    assert not DEFAULT_HASHER.needs_rehash(DEFAULT_HASHER.dummy_hash())


def test_dummy_hash_follows_custom_parameters(fast_hasher: PasswordHasher) -> None:
    assert not fast_hasher.needs_rehash(fast_hasher.dummy_hash())
    assert fast_hasher.dummy_hash() == fast_hasher.dummy_hash()


def test_unknown_user_costs_one_full_verification(
    monkeypatch: pytest.MonkeyPatch, fast_hasher: PasswordHasher
) -> None:
    # Count the argon2 verifications actually performed, with the parameters used: the
    # unknown-user path must do the same work as a wrong password for a known user.
    calls: list[str] = []
    real_verify = argon2.PasswordHasher.verify

    def counting(self: argon2.PasswordHasher, stored: str | bytes, candidate: str | bytes) -> bool:
        calls.append(str(stored).split("$")[3])
        return real_verify(self, stored, candidate)

    monkeypatch.setattr(argon2.PasswordHasher, "verify", counting)
    stored = fast_hasher.hash(SECRET)
    assert not fast_hasher.verify(stored, "wrong password for alice")
    known = list(calls)
    calls.clear()
    dummy_verify(hasher=fast_hasher)
    assert calls == known == ["m=1024,t=1,p=1"]


def test_account_without_password_never_verifies_but_costs_the_same(
    monkeypatch: pytest.MonkeyPatch, fast_hasher: PasswordHasher
) -> None:
    calls: list[str] = []
    real_dummy = PasswordHasher.dummy_verify

    def counting(self: PasswordHasher) -> None:
        calls.append("dummy")
        real_dummy(self)

    monkeypatch.setattr(PasswordHasher, "dummy_verify", counting)
    assert not fast_hasher.verify(None, "")
    assert not fast_hasher.verify(None, SECRET)
    assert calls == ["dummy", "dummy"]
