"""Linking codes: what a guesser faces."""

from __future__ import annotations

import math
from datetime import datetime, timedelta

import pytest

from labgate.auth.codes import (
    CODE_TTL,
    MAX_CODE_ATTEMPTS,
    USER_CODE_ALPHABET,
    check_code_attempt,
    code_lookup_key,
    codes_match,
    format_user_code,
    new_device_code,
    new_user_code,
    normalise_user_code,
)
from labgate.auth.decisions import Allowed, Denied
from labgate.auth.errors import MalformedCode


def test_codes_use_the_rfc8628_alphabet_and_length() -> None:
    assert USER_CODE_ALPHABET == "BCDFGHJKLMNPQRSTVWXZ"
    codes = [new_user_code() for _ in range(2000)]
    assert all(len(c) == 8 and set(c) <= set(USER_CODE_ALPHABET) for c in codes)
    assert len(set(codes)) == len(codes)
    # Every letter of the alphabet turns up: the generator is not stuck on a subset.
    assert set("".join(codes)) == set(USER_CODE_ALPHABET)
    assert math.log2(len(USER_CODE_ALPHABET) ** 8) > 34


def test_short_codes_cannot_be_made() -> None:
    with pytest.raises(ValueError, match="at least 8"):
        new_user_code(6)


def test_typed_code_is_forgiving_about_case_and_dashes() -> None:
    code = "BCDFGHJK"
    assert format_user_code(code) == "BCDF-GHJK"
    for typed in ("bcdf-ghjk", "BCDF GHJK", " bcdfghjk ", "Bcdf-Ghjk"):
        assert codes_match(code, typed)


def test_wrong_or_garbage_codes_do_not_match() -> None:
    code = "BCDFGHJK"
    for typed in ("BCDFGHJL", "BCDFGHJ", "BCDFGHJKB", "", "BCDF-GHJ0", "12345678", "x" * 1000):
        assert not codes_match(code, typed)


def test_off_alphabet_input_names_the_problem() -> None:
    with pytest.raises(MalformedCode, match="'AEO'"):
        normalise_user_code("BAEOGHJKLM")
    with pytest.raises(MalformedCode, match="at least 8"):
        normalise_user_code("BCDF")


def test_lookup_key_is_the_same_for_every_spelling() -> None:
    assert code_lookup_key("bcdf-ghjk") == code_lookup_key("BCDFGHJK")
    assert code_lookup_key("BCDFGHJK") != code_lookup_key("BCDFGHJL")


def test_device_code_has_256_bits() -> None:
    assert len(new_device_code()) == 43
    assert new_device_code() != new_device_code()


def test_attempt_limits(now: datetime) -> None:
    issued = now - timedelta(minutes=1)
    assert check_code_attempt(issued_at=issued, wrong_attempts=0, used=False, now=now) == Allowed()
    last_try = check_code_attempt(
        issued_at=issued, wrong_attempts=MAX_CODE_ATTEMPTS - 1, used=False, now=now
    )
    assert last_try == Allowed()
    exhausted = check_code_attempt(
        issued_at=issued, wrong_attempts=MAX_CODE_ATTEMPTS, used=False, now=now
    )
    assert isinstance(exhausted, Denied) and exhausted.reason == "code_attempts_exhausted"


def test_expiry_edge_and_single_use(now: datetime) -> None:
    inside = check_code_attempt(
        issued_at=now - CODE_TTL + timedelta(microseconds=1), wrong_attempts=0, used=False, now=now
    )
    assert inside == Allowed()
    expired = check_code_attempt(issued_at=now - CODE_TTL, wrong_attempts=0, used=False, now=now)
    assert isinstance(expired, Denied) and expired.reason == "code_expired"
    used = check_code_attempt(issued_at=now, wrong_attempts=0, used=True, now=now)
    assert isinstance(used, Denied) and used.reason == "code_used"


def test_guesser_is_stopped_before_the_right_code_even_when_it_comes(now: datetime) -> None:
    # The attacker's loop, as the server runs it: check the attempt, compare, count a miss.
    code = new_user_code()
    wrong_attempts = 0
    outcomes = []
    for guess in ["BBBBBBBB", "CCCCCCCC", "DDDDDDDD", "FFFFFFFF", "GGGGGGGG", code]:
        decision = check_code_attempt(
            issued_at=now, wrong_attempts=wrong_attempts, used=False, now=now
        )
        if isinstance(decision, Denied):
            outcomes.append(decision.reason)
            continue
        if codes_match(code, guess):
            outcomes.append("linked")
        else:
            wrong_attempts += 1
            outcomes.append("wrong")
    assert outcomes == ["wrong"] * 5 + ["code_attempts_exhausted"]
