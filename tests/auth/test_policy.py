"""Password policies, table-driven, including the tricks used to slip a weak password past them."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from labgate.auth.decisions import Allowed, Denied
from labgate.auth.policy import (
    MAX_LENGTH,
    PasswordPolicy,
    Reason,
    check_password,
    common_passwords,
)

NIST = PasswordPolicy.NIST
ENHANCED = PasswordPolicy.ENHANCED

# (password, username, expected reason or None for allowed)
NIST_TABLE: list[tuple[str, str, Reason | None]] = [
    ("correct horse battery staple", "alice", None),
    ("fifteen chars!!", "alice", None),
    ("fourteen chars", "alice", Reason.TOO_SHORT),
    ("", "alice", Reason.TOO_SHORT),
    ("x" * (MAX_LENGTH + 1), "alice", Reason.TOO_LONG),
    ("gV7#" * 32, "alice", Reason.REPETITIVE),  # 128 characters, but one unit repeated
    ("qwertyuiopasdfgh", "alice", Reason.COMMON_PASSWORD),
    ("QwErTyUiOpAsDfGh", "alice", Reason.COMMON_PASSWORD),  # case changes
    ("1q2w3e4r5t6y7u8i", "alice", Reason.COMMON_PASSWORD),
    ("iloveyou12345678", "alice", Reason.COMMON_PASSWORD_VARIANT),  # digits appended
    ("!!2024Sunshine!!", "alice", Reason.COMMON_PASSWORD_VARIANT),  # affixes both sides
    ("P@ssw0rd-2024-01", "alice", Reason.COMMON_PASSWORD_VARIANT),  # swaps plus affix
    ("m0nk3y!m0nk3y!m0nk3y", "alice", Reason.REPETITIVE),
    ("passwordpassword", "alice", Reason.COMMON_PASSWORD),  # itself listed
    ("dragondragondragon", "alice", Reason.REPETITIVE),
    ("bbbbbbbbbbbbbbbbbbbbbbb", "alice", Reason.REPETITIVE),
    ("1234567890123456", "alice", Reason.SEQUENTIAL),
    ("zyxwvutsrqponmlkji", "alice", Reason.SEQUENTIAL),
    ("my name is alice, hi!", "alice", Reason.CONTAINS_USERNAME),
    ("my name is ALICE, hi!", "alice", Reason.CONTAINS_USERNAME),
    ("my name is a l i c e!", "alice", Reason.CONTAINS_USERNAME),
    ("the bench 3 robot arm", "Bench3", Reason.CONTAINS_USERNAME),
    ("xy appears in this long one", "xy", None),  # 2-letter names are not searched for
    ("tab\tinside a password", "alice", Reason.CONTROL_CHARACTER),
    ("nul\x00inside a password", "alice", Reason.CONTROL_CHARACTER),
    ("\u00fcber-l\u00e4ngliches Kennwort", "alice", None),  # non-ASCII letters
    (
        "\u6c34\u6728\u91d1\u571f\u706b\u65e5\u6708\u5c71\u5ddd\u7530\u4eba\u53e3\u76ee\u8033\u624b",
        "a",
        None,
    ),
]

ENHANCED_TABLE: list[tuple[str, str, Reason | None]] = [
    ("Gr8-Lab-Bench-7x", "alice", None),
    ("Gr8-Lab-Bench7", "alice", None),  # exactly 14
    ("Gr8-Lab-Bnch7", "alice", Reason.TOO_SHORT),
    ("gr8-lab-bench-7x", "alice", Reason.MISSING_UPPERCASE),
    ("GR8-LAB-BENCH-7X", "alice", Reason.MISSING_LOWERCASE),
    ("Great-Lab-Bench-x", "alice", Reason.MISSING_DIGIT),
    ("Gr8LabBench7xyz", "alice", Reason.MISSING_SPECIAL),
    ("Gr8 Lab Bench 7x", "alice", Reason.MISSING_SPECIAL),  # a space is not special
    ("Password1234!!", "alice", Reason.COMMON_PASSWORD_VARIANT),  # composition is not enough
    ("Alice-Lab-Bench-7x", "alice", Reason.CONTAINS_USERNAME),
    ("correct horse battery staple", "alice", Reason.MISSING_UPPERCASE),
]


@pytest.mark.parametrize(("password", "username", "expected"), NIST_TABLE)
def test_nist_policy(password: str, username: str, expected: Reason | None) -> None:
    _assert_decision(check_password(password, username=username, policy=NIST), expected)


@pytest.mark.parametrize(("password", "username", "expected"), ENHANCED_TABLE)
def test_enhanced_policy(password: str, username: str, expected: Reason | None) -> None:
    _assert_decision(check_password(password, username=username, policy=ENHANCED), expected)


def _assert_decision(decision: Allowed | Denied, expected: Reason | None) -> None:
    if expected is None:
        assert decision == Allowed()
    else:
        assert isinstance(decision, Denied)
        assert decision.reason == expected
        assert decision.detail


def test_nist_is_the_default() -> None:
    assert isinstance(check_password("fourteen chars", username="bob"), Denied)


def test_length_counts_characters_not_bytes() -> None:
    # 15 characters of 4 bytes each: 60 bytes, but 15 characters, so long enough.
    emoji = "\U0001f40d\U0001f98a\U0001f422\U0001f41d\U0001f98b" * 3
    assert check_password(emoji, username="alice", policy=NIST) == Allowed()
    # 14 three-byte characters (42 bytes) are still too short.
    denied = check_password("\u6c34\u6728\u91d1\u571f\u706b\u65e5\u6708\u5c71\u5ddd\u7530\u4eba"
                            "\u53e3\u76ee\u8033", username="alice", policy=NIST)  # fmt: skip
    assert isinstance(denied, Denied) and denied.reason == Reason.TOO_SHORT


def test_combining_marks_cannot_pad_length() -> None:
    # "e" + combining acute composes to one character under NFKC: 10 + 5 = 15 code points
    # before normalisation, 10 after.
    padded = "passe\u0301" + "wxyz" + "e\u0301" * 5
    denied = check_password(padded, username="alice", policy=NIST)
    assert isinstance(denied, Denied) and denied.reason == Reason.TOO_SHORT


def test_whitespace_padding_does_not_count() -> None:
    for padded in ("   short one   ", "short" + " " * 20 + "one", "\u3000" * 8 + "shortpass"):
        denied = check_password(padded, username="alice", policy=NIST)
        assert isinstance(denied, Denied) and denied.reason == Reason.TOO_SHORT, padded


def test_whitespace_cannot_hide_a_common_password() -> None:
    denied = check_password("  qwerty uiop asdfgh  ", username="alice", policy=NIST)
    assert isinstance(denied, Denied) and denied.reason == Reason.COMMON_PASSWORD


def test_fullwidth_letters_cannot_hide_the_username() -> None:
    fullwidth_alice = "\uff41\uff4c\uff49\uff43\uff45"
    denied = check_password(f"hello {fullwidth_alice} long pass", username="alice", policy=NIST)
    assert isinstance(denied, Denied) and denied.reason == Reason.CONTAINS_USERNAME


def test_maximum_length_is_accepted() -> None:
    long_passphrase = " ".join(f"word{n:03d}x" for n in range(40))[:MAX_LENGTH]
    assert len(long_passphrase) >= 128
    assert check_password(long_passphrase, username="alice", policy=NIST) == Allowed()


def test_shipped_list_is_large_and_normalised() -> None:
    listed = common_passwords()
    assert len(listed) >= 100_000
    assert {"123456", "password", "iloveyou", "qwertyuiop"} <= listed
    assert all(entry == entry.casefold() for entry in list(listed)[:5000])


def test_every_long_listed_password_is_refused() -> None:
    long_entries = [entry for entry in common_passwords() if 15 <= len(entry) <= 64]
    assert len(long_entries) > 1000
    for entry in long_entries[:500]:
        denied = check_password(entry.upper(), username="nobody-here", policy=NIST)
        assert isinstance(denied, Denied), entry


def test_denial_details_never_repeat_the_password() -> None:
    for password, username, _ in NIST_TABLE + ENHANCED_TABLE:
        for policy in (NIST, ENHANCED):
            decision = check_password(password, username=username, policy=policy)
            if isinstance(decision, Denied) and len(password.strip()) >= 4:
                assert password.strip() not in decision.detail


def test_reason_codes_are_stable_strings() -> None:
    # These are API error codes: renaming one breaks clients.
    assert {reason.value for reason in Reason} == {
        "too_short", "too_long", "control_character", "contains_username", "common_password",
        "common_password_variant", "repetitive", "sequential", "missing_uppercase",
        "missing_lowercase", "missing_digit", "missing_special",
    }  # fmt: skip
    assert PasswordPolicy("nist") is NIST and PasswordPolicy("enhanced") is ENHANCED


def test_enhanced_reports_every_missing_class_in_the_detail() -> None:
    denied = check_password("onlylowercaseletters", username="alice", policy=ENHANCED)
    assert isinstance(denied, Denied) and denied.reason == Reason.MISSING_UPPERCASE
    assert "a digit" in denied.detail and "a special character" in denied.detail


def test_compatibility_characters_that_expand_cannot_pad_length() -> None:
    # U+FDFA is one typed character that NFKC turns into 18; U+FB03 ("ffi") one into three.
    for typed in ("\ufdfa", "\ufdfa\ufdfa", "\ufb03" * 5, "\u337f" * 4):
        denied = check_password(typed, username="alice", policy=NIST)
        assert isinstance(denied, Denied) and denied.reason == Reason.TOO_SHORT, typed


@settings(max_examples=300, deadline=None)
@given(password=st.text(max_size=300), username=st.text(max_size=40))
def test_any_text_gets_a_decision_never_an_error(password: str, username: str) -> None:
    for policy in (NIST, ENHANCED):
        decision = check_password(password, username=username, policy=policy)
        assert isinstance(decision, Allowed | Denied)
        if isinstance(decision, Allowed):
            assert len(password.strip()) >= (15 if policy is NIST else 14)
