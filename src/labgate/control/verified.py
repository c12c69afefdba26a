"""Access tokens whose signature this process already verified, so a busy token is checked once.

Only the signature and the fixed claims are remembered: expiry, the certificate binding and the
deny list are judged again on every request. A token that verified stays verifiable until it
expires (a rotated-out key keeps verifying that long), so remembering the result is safe.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from datetime import datetime

from labgate.auth.decisions import Denied
from labgate.auth.errors import CertificateMismatch, TokenExpired
from labgate.auth.tokens import DEFAULT_LEEWAY, AccessClaims, check_certificate_binding

# Enough for every live session of a busy lab; the oldest entry goes first.
MAX_ENTRIES = 10_000


class VerifiedTokens:
    def __init__(self, max_entries: int = MAX_ENTRIES) -> None:
        self._entries: OrderedDict[str, AccessClaims] = OrderedDict()
        self._max = max_entries
        self._lock = threading.Lock()

    def recheck(
        self, token: str, *, now: datetime, certificate_der: bytes | None
    ) -> AccessClaims | None:
        """The remembered claims if still valid now for this connection; None if not remembered."""
        with self._lock:
            claims = self._entries.get(token)
        if claims is None:
            return None
        if now >= claims.expires_at + DEFAULT_LEEWAY:
            with self._lock:
                self._entries.pop(token, None)
            raise TokenExpired(f"token expired at {claims.expires_at.isoformat()}")
        decision = check_certificate_binding(claims, certificate_der)
        if isinstance(decision, Denied):
            raise CertificateMismatch(decision.detail)
        return claims

    def remember(self, token: str, claims: AccessClaims) -> None:
        with self._lock:
            self._entries[token] = claims
            if len(self._entries) > self._max:
                self._entries.popitem(last=False)
