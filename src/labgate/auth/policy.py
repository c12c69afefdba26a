"""Password policies: which new passwords the server accepts.

Two named policies. NIST (the default) follows NIST SP 800-63B rev. 4 for a password that is the
only factor; ENHANCED is the composition rule of the instrument's own "enhanced security" mode.

How a password is read, for both policies (the decisions, and why):
- NFKC normalisation first, the same as `passwords.normalise_password` applies before hashing,
  so the policy judges exactly what gets hashed.
- Length is counted in Unicode code points, never in bytes (NIST: each code point counts as
  one character); a 15-character password of 3-byte characters passes. The count is the
  smaller of the typed and the normalised form, because NFKC both merges (a letter and its
  combining accent) and expands (one ligature or compatibility character becomes several).
- Whitespace is kept in what is hashed (a passphrase's spaces are part of it) but does not count
  towards the minimum beyond a single space between words: leading and trailing whitespace is
  ignored and runs of whitespace count once, so padding cannot stretch a short password.
- Control characters (Unicode category Cc: NUL, tab, newline, ...) are refused: they are never
  typed on purpose and some systems truncate at NUL.
- The user name (3 characters or more) may not appear anywhere in the password, compared
  case-insensitively (Unicode casefold), with and without the password's whitespace. A shorter
  user name is not checked for containment: two letters occur in too many honest passwords.
- Common passwords: the normalised password, casefolded, with whitespace collapsed and then
  removed, is looked up in the shipped list (see data/README.md). Trivial changes of a listed
  password are refused too ("common_password_variant"): changes of case; digits or symbols
  added before or after it ("Iloveyou!2024"); the usual character-for-letter swaps
  ("p@ssw0rd"); and a listed password (or a variant of one), or any unit of 4 characters or
  fewer, repeated, a partial last copy allowed ("dragon!dragon!dragon", "abcabcabcabcabc":
  "repetitive"). A run of consecutive characters ("123456789012345" with the digits wrapping
  round, "abcdefghijklmnop", either direction) is "sequential". Keyboard walks that are not in
  the list ("zaq12wsxcde34rfv"), a word inserted in the middle, or letters changed, are not
  caught: that is left to the length rule.
ENHANCED applies the same checks (a composition rule alone admits "Password1234!!") and then
requires an upper-case letter, a lower-case letter, a decimal digit and a special character
(anything that is neither a letter, a digit nor whitespace).
"""

from __future__ import annotations

import enum
import functools
import gzip
import itertools
import unicodedata
from dataclasses import dataclass
from importlib import resources

from labgate.auth.decisions import Allowed, Denied
from labgate.auth.passwords import normalise_password

# NIST's floor for a password that is the only factor.
NIST_MIN_LENGTH = 15
# The instrument's enhanced-security rule.
ENHANCED_MIN_LENGTH = 14
# NIST asks that at least 64 be accepted and labgate promises at least 128; 256 code points is
# a long passphrase and keeps hashing and these checks cheap.
MAX_LENGTH = 256
# User names shorter than this are not checked for containment (see the module docstring).
MIN_USERNAME_FOR_CONTAINMENT = 3
# A repeated unit this short makes the password repetitive whatever the unit is.
MAX_TRIVIAL_UNIT = 4
# A base left after stripping digits and symbols must be at least this long to count as a
# listed password: the list holds 1- to 3-character entries that would otherwise match far too
# much ("a" + 14 digits is refused as sequential or repetitive, or passes on its own merit).
MIN_VARIANT_BASE = 4

_LIST_RESOURCE = ("data", "common-passwords.txt.gz")

# Character-for-letter swaps. "1" stands for both "i" and "l", so two readings are tried.
_LEET = str.maketrans(
    {"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "8": "b", "9": "g",
     "@": "a", "$": "s", "!": "i", "|": "l", "+": "t"}
)  # fmt: skip
_LEET_L = str.maketrans({"1": "l", "!": "l"})


class PasswordPolicy(enum.StrEnum):
    """The named policies; the value is the configuration spelling."""

    NIST = "nist"
    ENHANCED = "enhanced"


class Reason(enum.StrEnum):
    """Stable reason codes of a Denied from check_password (fit for an API error code)."""

    TOO_SHORT = "too_short"
    TOO_LONG = "too_long"
    CONTROL_CHARACTER = "control_character"
    CONTAINS_USERNAME = "contains_username"
    COMMON_PASSWORD = "common_password"  # noqa: S105 (a reason code, not a password)
    COMMON_PASSWORD_VARIANT = "common_password_variant"  # noqa: S105
    REPETITIVE = "repetitive"
    SEQUENTIAL = "sequential"
    MISSING_UPPERCASE = "missing_uppercase"
    MISSING_LOWERCASE = "missing_lowercase"
    MISSING_DIGIT = "missing_digit"
    MISSING_SPECIAL = "missing_special"


@functools.cache
def common_passwords() -> frozenset[str]:
    """The shipped list, casefolded and NFKC-normalised; read on first use, then kept."""
    resource = resources.files("labgate.auth").joinpath(*_LIST_RESOURCE)
    text = gzip.decompress(resource.read_bytes()).decode("utf-8")
    return frozenset(line for line in text.split("\n") if line)


def check_password(
    password: str, *, username: str, policy: PasswordPolicy = PasswordPolicy.NIST
) -> Allowed | Denied:
    """Judge a new (or stored, at login) password against `policy`."""
    candidate = _Candidate.read(password)
    for check in (_check_length_and_characters, _check_username, _check_common):
        denied = check(candidate, username, policy)
        if denied is not None:
            return denied
    if policy is PasswordPolicy.ENHANCED:
        return _check_composition(candidate.spaced)
    return Allowed()


@dataclass(frozen=True, slots=True, kw_only=True)
class _Candidate:
    """A password read the way the policy judges it."""

    normal: str  # NFKC, what gets hashed
    spaced: str  # normal, whitespace runs collapsed and the ends trimmed
    length: int  # characters that count towards the minimum

    @classmethod
    def read(cls, password: str) -> _Candidate:
        normal = normalise_password(password)
        spaced = " ".join(normal.split())
        # NFKC can shrink a password (e + combining accent -> one character) and grow it
        # (U+FDFA is one character typed, 18 after NFKC; a ligature is one typed, up to three
        # after). The smaller count is the honest one: one typed character is one character.
        typed = " ".join(password.split())
        return cls(normal=normal, spaced=spaced, length=min(len(spaced), len(typed)))


def _check_length_and_characters(
    candidate: _Candidate, username: str, policy: PasswordPolicy
) -> Denied | None:
    normal = candidate.normal
    if len(normal) > MAX_LENGTH:
        return Denied(
            reason=Reason.TOO_LONG,
            detail=f"password has {len(normal)} characters; at most {MAX_LENGTH} are accepted",
        )
    if any(unicodedata.category(char) == "Cc" for char in normal):
        return Denied(
            reason=Reason.CONTROL_CHARACTER,
            detail="password contains a control character (tab, newline, NUL or similar)",
        )
    minimum = NIST_MIN_LENGTH if policy is PasswordPolicy.NIST else ENHANCED_MIN_LENGTH
    if candidate.length < minimum:
        return Denied(
            reason=Reason.TOO_SHORT,
            detail=f"password has {candidate.length} characters (whitespace runs count once, "
            f"leading and trailing whitespace not at all); at least {minimum} are required",
        )
    return None


def _check_username(candidate: _Candidate, username: str, policy: PasswordPolicy) -> Denied | None:
    name = "".join(normalise_password(username).casefold().split())
    if len(name) < MIN_USERNAME_FOR_CONTAINMENT:
        return None
    folded = candidate.spaced.casefold()
    if name in folded or name in folded.replace(" ", ""):
        return Denied(reason=Reason.CONTAINS_USERNAME, detail="password contains the user name")
    return None


def _check_common(candidate: _Candidate, username: str, policy: PasswordPolicy) -> Denied | None:
    listed = common_passwords()
    folded = candidate.spaced.casefold()
    compact = folded.replace(" ", "")
    if folded in listed or compact in listed:
        return Denied(
            reason=Reason.COMMON_PASSWORD, detail="password is in the list of common passwords"
        )
    readings = {compact} | _readings(compact)
    if any(_is_repetitive(reading, listed) for reading in readings):
        return Denied(
            reason=Reason.REPETITIVE, detail="password is a short or common part repeated"
        )
    if any(_is_sequential(reading) for reading in readings):
        return Denied(
            reason=Reason.SEQUENTIAL, detail="password is a run of consecutive characters"
        )
    if any(reading in listed for reading in readings):
        return Denied(
            reason=Reason.COMMON_PASSWORD_VARIANT,
            detail="password is a common password with trivial changes (case, added digits "
            "or symbols, or character swaps)",
        )
    return None


def _check_composition(spaced: str) -> Allowed | Denied:
    missing = [
        (Reason.MISSING_UPPERCASE, "an upper-case letter", any(c.isupper() for c in spaced)),
        (Reason.MISSING_LOWERCASE, "a lower-case letter", any(c.islower() for c in spaced)),
        (Reason.MISSING_DIGIT, "a digit", any(c.isdecimal() for c in spaced)),
        (Reason.MISSING_SPECIAL, "a special character", any(_is_special(c) for c in spaced)),
    ]
    absent = [(reason, what) for reason, what, present in missing if not present]
    if not absent:
        return Allowed()
    return Denied(
        reason=absent[0][0],
        detail="the enhanced policy requires " + ", ".join(what for _, what in absent),
    )


def _is_special(char: str) -> bool:
    return not char.isalnum() and not char.isspace()


def _readings(text: str) -> set[str]:
    """The password with affixes stripped and character swaps undone, in every order."""
    forms = {text, _strip_affixes(text)}
    forms |= {form.translate(_LEET) for form in forms} | {
        form.translate(_LEET_L).translate(_LEET) for form in forms
    }
    forms |= {_strip_affixes(form) for form in forms}
    return {form for form in forms if len(form) >= MIN_VARIANT_BASE}


def _strip_affixes(text: str) -> str:
    start, end = 0, len(text)
    while start < end and not text[start].isalpha():
        start += 1
    while end > start and not text[end - 1].isalpha():
        end -= 1
    return text[start:end]


def _is_repetitive(text: str, listed: frozenset[str]) -> bool:
    """True when `text` is one unit written at least twice (a partial last copy allowed).

    The unit must be trivially short or itself a listed password or a variant of one, so that
    a long random unit typed twice is not refused for being repeated.
    """
    period = _period(text)
    if period is None:
        return False
    unit = text[:period]
    if period <= MAX_TRIVIAL_UNIT or unit in listed:
        return True
    return any(reading in listed for reading in _readings(unit))


def _period(text: str) -> int | None:
    """The smallest p with len(text) >= 2p and text[i] == text[i - p] for every i >= p."""
    for period in range(1, len(text) // 2 + 1):
        if text[period:] == text[:-period]:
            return period
    return None


def _is_sequential(text: str) -> bool:
    if len(text) < MIN_VARIANT_BASE:
        return False
    steps = {_step(a, b) for a, b in itertools.pairwise(text)}
    return steps in ({1}, {-1})


def _step(a: str, b: str) -> int:
    # Digits wrap round ("...7890123..." is one run), as on a keyboard's number row.
    if a.isdecimal() and b.isdecimal() and a.isascii() and b.isascii():
        return {1: 1, 9: -1}.get((int(b) - int(a)) % 10, 0)
    return ord(b) - ord(a)
