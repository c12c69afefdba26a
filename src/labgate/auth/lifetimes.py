"""How long each kind of credential lives.

Users get short tokens because a browser is easy to lose; devices get long ones because a
field device may be offline for days and must not need a person to sign it in again. Device
access tokens are also bound to the device's certificate (RFC 8705), so a copied one is useless
without the device's private key.
"""

from __future__ import annotations

import enum
from datetime import timedelta

USER_ACCESS_TTL = timedelta(minutes=5)
USER_REFRESH_TTL = timedelta(hours=2)
DEVICE_ACCESS_TTL = timedelta(hours=24)
DEVICE_REFRESH_TTL = timedelta(days=3 * 365 + 1)  # three years, one of them a leap year

# No access token may live longer than this: a retired signing key keeps verifying for this
# long after rotation (KeyRing.rotate), so every token it signed can still be checked.
MAX_ACCESS_TTL = DEVICE_ACCESS_TTL

# How long a rotated-out refresh token may be replayed to get its successor again
# (see labgate.auth.refresh).
REFRESH_GRACE = timedelta(seconds=30)


class PrincipalKind(enum.StrEnum):
    """Who holds a token; the value is also the access token's ``typ`` claim."""

    USER = "user"
    DEVICE = "device"

    @property
    def access_ttl(self) -> timedelta:
        return USER_ACCESS_TTL if self is PrincipalKind.USER else DEVICE_ACCESS_TTL

    @property
    def refresh_ttl(self) -> timedelta:
        return USER_REFRESH_TTL if self is PrincipalKind.USER else DEVICE_REFRESH_TTL
