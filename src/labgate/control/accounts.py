"""User accounts: create, list, disable, reset and change passwords, authenticate.

Passwords are hashed and judged by `labgate.auth`; this module only stores the results.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from labgate.auth.decisions import Denied
from labgate.auth.passwords import PasswordHasher
from labgate.auth.policy import PasswordPolicy, check_password
from labgate.auth.usernames import canonical_username, is_canonical
from labgate.control import audit, certificates, throttling
from labgate.control.errors import (
    AuthenticationFailed,
    Conflict,
    InvalidInput,
    NotFound,
    PasswordRejected,
)
from labgate.control.principals import user_identity
from labgate.control.revocation import revoke_subject
from labgate.control.settings import ControlSettings
from labgate.control.standing import record_change
from labgate.control.tables import Grant, User
from labgate.pki.inventory import Inventory

# 32 URL-safe characters (192 bits): meets either policy and is never in a common-password list.
ONE_TIME_PASSWORD_BYTES = 24


@dataclass(frozen=True, slots=True, kw_only=True)
class PasswordRules:
    """The hasher and the policy in force, as the settings chose them."""

    hasher: PasswordHasher
    policy: PasswordPolicy

    def require_acceptable(self, password: str, *, username: str) -> None:
        decision = check_password(password, username=username, policy=self.policy)
        if isinstance(decision, Denied):
            raise PasswordRejected(
                f"new password refused by the {self.policy.value} policy "
                f"({decision.reason}): {decision.detail or decision.reason}",
                reason=decision.reason,
            )

    def is_acceptable(self, password: str, *, username: str) -> bool:
        return not isinstance(
            check_password(password, username=username, policy=self.policy), Denied
        )


def password_rules(settings: ControlSettings) -> PasswordRules:
    defaults = PasswordHasher()
    hasher = PasswordHasher(
        time_cost=settings.argon2_time_cost or defaults.time_cost,
        memory_cost_kib=settings.argon2_memory_kib or defaults.memory_cost_kib,
        parallelism=settings.argon2_parallelism or defaults.parallelism,
    )
    return PasswordRules(hasher=hasher, policy=PasswordPolicy(settings.policy_in_force))


def new_one_time_password() -> str:
    return secrets.token_urlsafe(ONE_TIME_PASSWORD_BYTES)


def create_user(
    session: Session, rules: PasswordRules, *, username: str, role: str, now: datetime
) -> tuple[User, str]:
    """A new user with a one-time password (returned once, never stored in clear).

    The name is stored in its canonical form, so `Admin` beside `admin` is a conflict.
    """
    username = canonical_username(username)
    if not is_canonical(username):
        raise InvalidInput(
            f"user name {username!r} may hold only letters, digits and . _ @ + - (at most 64), "
            "starting with a letter or digit"
        )
    password = new_one_time_password()
    user = User(
        username=username,
        password_hash=rules.hasher.hash(password),
        role=role,
        disabled=False,
        one_time_password=True,
        created_at=now,
    )
    session.add(user)
    try:
        session.flush()
    except IntegrityError:
        session.rollback()
        raise Conflict(f"user {username!r} already exists") from None
    audit.record(session, at=now, kind="user.created", subject=user_identity(username), role=role)
    return user, password


def list_users(session: Session) -> list[User]:
    return list(session.scalars(select(User).order_by(User.id)))


def get_user(session: Session, user_id: int) -> User:
    user = session.get(User, user_id)
    if user is None:
        raise NotFound(f"no user with id {user_id}")
    return user


def find_user(session: Session, username: str) -> User | None:
    """The user with this name under case folding and NFKC (`ADMIN` finds `admin`)."""
    return session.scalar(select(User).where(User.username == canonical_username(username)))


@dataclass(frozen=True, slots=True, kw_only=True)
class Offboarding:
    """What disabling a person ended: shown to whoever did it."""

    user: User
    already_disabled: bool
    certificates: tuple[int, ...]  # serials revoked
    grants: tuple[tuple[str, str], ...]  # (instrument, level) dropped from every bundle
    refresh_tokens: int  # API refresh tokens revoked (with their access tokens)


def disable_user(
    session: Session, inventory: Inventory, user_id: int, *, now: datetime, by: str
) -> User:
    """Offboard a person; see `offboard`."""
    return offboard(session, inventory, user_id, now=now, by=by).user


def offboard(
    session: Session, inventory: Inventory, user_id: int, *, now: datetime, by: str
) -> Offboarding:
    """Offboard a person, in one transaction: the account is disabled, every session and access
    token it holds ends (API and console), every certificate naming it is revoked
    (`privilegeWithdrawn`), and its grants leave every bundle (see `labgate.control.standing`),
    which wakes waiting gateways; they then close the person's open instrument sessions."""
    user = get_user(session, user_id)
    identity = user_identity(user.username)
    if user.disabled:
        return Offboarding(
            user=user, already_disabled=True, certificates=(), grants=(), refresh_tokens=0
        )
    user.disabled = True
    held = session.execute(
        select(Grant.instrument, Grant.level).where(Grant.principal == identity).order_by(Grant.id)
    ).all()
    tokens = revoke_subject(session, identity, now=now)
    serials = certificates.revoke_held(
        session, inventory, identity, reason="privilegeWithdrawn", now=now, by=by
    )
    record_change(session)
    audit.record(
        session,
        at=now,
        kind="user.disabled",
        subject=identity,
        by=by,
        certificates=[format(serial, "x") for serial in serials],
    )
    return Offboarding(
        user=user,
        already_disabled=False,
        certificates=tuple(serials),
        grants=tuple((instrument, level) for instrument, level in held),
        refresh_tokens=tokens,
    )


def revoke_sessions(session: Session, user_id: int, *, now: datetime) -> User:
    user = get_user(session, user_id)
    revoke_subject(session, user_identity(user.username), now=now)
    audit.record(
        session, at=now, kind="user.sessions_revoked", subject=user_identity(user.username)
    )
    return user


def reset_password(
    session: Session, rules: PasswordRules, user_id: int, *, now: datetime
) -> tuple[User, str]:
    """A fresh one-time password; old sessions end and the failed-login lock is lifted."""
    user = get_user(session, user_id)
    password = new_one_time_password()
    user.password_hash = rules.hasher.hash(password)
    user.one_time_password = True
    revoke_subject(session, user_identity(user.username), now=now)
    throttling.unlock(session, user.username)
    audit.record(session, at=now, kind="user.password_reset", subject=user_identity(user.username))
    return user, password


def authenticate(session: Session, rules: PasswordRules, username: str, password: str) -> User:
    """The enabled user whose password this is; the same work is done for unknown names."""
    user = find_user(session, username)
    if user is None:
        rules.hasher.dummy_verify()
        raise AuthenticationFailed("user name or password not accepted")
    if not rules.hasher.verify(user.password_hash, password) or user.disabled:
        raise AuthenticationFailed("user name or password not accepted")
    if rules.hasher.needs_rehash(user.password_hash):
        user.password_hash = rules.hasher.hash(password)
    return user


def change_password(
    session: Session,
    rules: PasswordRules,
    user: User,
    *,
    old_password: str,
    new_password: str,
    now: datetime,
) -> None:
    """Replace the password after proving the old one; the new one must meet the policy."""
    if not rules.hasher.verify(user.password_hash, old_password):
        raise AuthenticationFailed("old password not accepted")
    rules.require_acceptable(new_password, username=user.username)
    if new_password == old_password:
        raise PasswordRejected(
            "new password refused (unchanged): it is the same as the old one", reason="unchanged"
        )
    user.password_hash = rules.hasher.hash(new_password)
    user.one_time_password = False
    audit.record(
        session, at=now, kind="user.password_changed", subject=user_identity(user.username)
    )


def unlock(session: Session, username: str, *, now: datetime, by: str) -> User:
    """Lift the failed-login lock and delays of an account (the password stays as it is)."""
    user = find_user(session, username)
    if user is None:
        raise NotFound(f"no user {canonical_username(username)!r}")
    throttling.unlock(session, user.username)
    audit.record(session, at=now, kind="user.unlocked", subject=user_identity(user.username), by=by)
    return user
