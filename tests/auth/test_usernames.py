"""Canonical user names: every spelling of one name folds to one form; look-alikes do not."""

from __future__ import annotations

import pytest

from labgate.auth.usernames import canonical_username, is_canonical


@pytest.mark.parametrize(
    "spelling", ["admin", "Admin", "ADMIN", "\uff41\uff44\uff4d\uff49\uff4e", "\uff21DMIN"]
)
def test_case_and_width_fold_to_one_name(spelling: str) -> None:
    assert canonical_username(spelling) == "admin"


def test_compatibility_characters_and_the_kelvin_sign_fold() -> None:
    assert canonical_username("\ufb00oo") == "ffoo"  # the "ff" ligature
    assert canonical_username("\u212aate") == "kate"  # KELVIN SIGN, not K


def test_look_alikes_from_other_scripts_are_not_canonical_names() -> None:
    assert canonical_username("\u0430dmin") != "admin"  # Cyrillic a
    assert not is_canonical(canonical_username("\u0430dmin"))
    assert is_canonical("admin") and not is_canonical("Admin") and not is_canonical("")
