"""Who is calling: the principal behind a verified access token, and what it may touch."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from labgate.auth.usernames import canonical_username
from labgate.control.errors import Forbidden

USER_PREFIX = "labgate:user:"
DEVICE_PREFIX = "labgate:device:"
ROLES = ("admin", "operator", "viewer", "auditor")  # auditor: reads the audit trail only
DEVICE_ROLE = "device"
# The role of a session that may only change its password; it names no real role.
RESTRICTED_ROLE = "password-change-only"


@dataclass(frozen=True, slots=True, kw_only=True)
class Principal:
    """A caller whose access token verified and is not on the deny list."""

    identity: str
    role: str
    jti: str
    # A session that may only change its password (one-time password, or one the policy refuses).
    restricted: bool = False

    @property
    def kind(self) -> Literal["user", "device"]:
        return "device" if self.identity.startswith(DEVICE_PREFIX) else "user"

    @property
    def name(self) -> str:
        return self.identity.rsplit(":", 1)[1]

    @property
    def is_admin(self) -> bool:
        return self.kind == "user" and self.role == "admin"

    def require_role(self, *roles: str) -> None:
        """Refuse unless this is a user holding one of `roles`."""
        if self.kind != "user" or self.role not in roles:
            raise Forbidden(f"{self.identity} has role {self.role!r}; this needs one of {roles}")


def user_identity(username: str) -> str:
    return USER_PREFIX + username


def device_identity(device_id: str) -> str:
    return DEVICE_PREFIX + device_id


def canonical_identity(identity: str) -> str:
    """A user's or device's identity as stored: its name in canonical form (`labgate:user:Olga`
    is `labgate:user:olga`, as `auth.usernames` folds it; device ids are drawn lower case).
    A gateway's name is kept as given: gateway names are not folded anywhere."""
    for prefix in (USER_PREFIX, DEVICE_PREFIX):
        if identity.startswith(prefix):
            return prefix + canonical_username(identity[len(prefix) :])
    return identity
