"""User names in one canonical form: NFKC, then Unicode case folding.

`Admin`, `ADMIN` and `ａｄｍｉｎ` (full-width) are one name, `admin`, wherever a name is stored,
looked up, counted for throttling or written into a certificate. The server stores only the
canonical form, so uniqueness under folding is the database's plain unique constraint.
"""

from __future__ import annotations

import re
import unicodedata

# The canonical alphabet: what a certificate identity may hold (labgate.pki.names), lower case.
CANONICAL_PATTERN = r"^[a-z0-9][a-z0-9._@+-]{0,63}$"
_CANONICAL = re.compile(CANONICAL_PATTERN)
MAX_USERNAME = 64


def canonical_username(name: str) -> str:
    """NFKC, casefold, NFKC again (folding can leave text that NFKC changes once more)."""
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", name).casefold())


def is_canonical(name: str) -> bool:
    """True when `name` is a canonical user name a user could hold."""
    return bool(_CANONICAL.fullmatch(name)) and canonical_username(name) == name
