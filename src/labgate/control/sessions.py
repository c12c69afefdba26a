"""Sessions: login (throttled, counted in the database), logout, password change.

Refresh-token rotation lives in `labgate.control.rotation`.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from labgate.control import accounts, audit, throttling
from labgate.control.errors import (
    AccountLocked,
    AuthenticationFailed,
    Forbidden,
    Throttled,
)
from labgate.control.minting import mint_pair, new_family
from labgate.control.principals import Principal, user_identity
from labgate.control.revocation import (
    deny,
    family_of_access_token,
    purge_expired,
    revoke_families,
)
from labgate.control.runtime import Runtime
from labgate.control.schemas import TokenPair
from labgate.control.tables import User
from labgate.control.transactions import keep_on_error


def login(
    session: Session, runtime: Runtime, *, username: str, password: str, address: str
) -> TokenPair:
    """A token pair for a correct password; failures are counted per account and per address.

    A one-time password, or one the policy in force refuses, gives a session that may only
    change its password.
    """
    user, restricted = check_login(
        session, runtime, username=username, password=password, address=address, via="api"
    )
    return _new_login(session, runtime, user, restricted=restricted)


def _new_login(session: Session, runtime: Runtime, user: User, *, restricted: bool) -> TokenPair:
    """A new token family for `user`: its first access and refresh tokens."""
    minted = mint_pair(
        session,
        runtime.mint,
        subject=user_identity(user.username),
        role=user.role,
        family_id=new_family(),
        restricted=restricted,
        cnf_thumbprint=None,
        now=runtime.clock(),
    )
    return minted.pair


def check_login(
    session: Session,
    runtime: Runtime,
    *,
    username: str,
    password: str,
    address: str,
    via: str,
) -> tuple[User, bool]:
    """The user whose password this is, and whether their session may only change it; throttled,
    counted and audited the same way for the API (`via` "api") and the console ("console")."""
    now = runtime.clock()
    keys = throttling.LoginKeys.of(username, address)
    try:
        throttling.require_allowed(session, keys, runtime.settings, now=now)
    except AccountLocked:
        audit.record(
            session,
            at=now,
            kind="login.locked",
            subject=user_identity(keys.account.removeprefix("account:")),
            address=address,
        )
        keep_on_error(session)
        runtime.metrics.logins.labels("locked").inc()
        raise
    except Throttled:
        runtime.metrics.logins.labels("throttled").inc()
        raise
    try:
        user = accounts.authenticate(session, runtime.rules, username, password)
    except AuthenticationFailed:
        session.rollback()
        throttling.record_failure(session, keys, runtime.settings, now=now)
        audit.record(
            session,
            at=now,
            kind="login.failed",
            subject=user_identity(keys.account.removeprefix("account:")),
            address=address,
        )
        keep_on_error(session)
        runtime.metrics.logins.labels("failed").inc()
        raise
    throttling.clear_after_success(session, keys)
    restricted = user.one_time_password or not runtime.rules.is_acceptable(
        password, username=user.username
    )
    detail: dict[str, object] = {"address": address, "restricted": restricted}
    if via != "api":
        detail["via"] = via
    audit.record(session, at=now, kind="login", subject=user_identity(user.username), **detail)
    runtime.metrics.logins.labels("restricted" if restricted else "ok").inc()
    return user, restricted


def logout(session: Session, runtime: Runtime, principal: Principal, *, expires: datetime) -> None:
    """End the login behind this access token: its family, and this token at once."""
    now = runtime.clock()
    family = family_of_access_token(session, principal.jti)
    if family is not None:
        revoke_families(session, [family], now=now)
    deny(session, [(principal.jti, expires)])
    purge_expired(session, now=now)  # housekeeping: entries for tokens that expired anyway
    audit.record(session, at=now, kind="logout", subject=principal.identity)


def change_password(
    session: Session,
    runtime: Runtime,
    principal: Principal,
    *,
    old_password: str,
    new_password: str,
) -> TokenPair:
    """Change the caller's password; every old session ends and a full one begins."""
    user = replace_password(
        session, runtime, principal, old_password=old_password, new_password=new_password
    )
    return _new_login(session, runtime, user, restricted=False)


def replace_password(
    session: Session,
    runtime: Runtime,
    principal: Principal,
    *,
    old_password: str,
    new_password: str,
) -> User:
    """Change the caller's password (throttled like a login); every session it had ends, API and
    console alike. The caller then begins a new one."""
    now = runtime.clock()
    if principal.kind != "user":
        raise Forbidden(f"{principal.identity} is a device; only users have passwords")
    user = accounts.find_user(session, principal.name)
    if user is None or user.disabled:
        raise AuthenticationFailed("user not found or disabled")
    keys = throttling.LoginKeys.for_password_change(user.username)
    throttling.require_allowed(session, keys, runtime.settings, now=now)
    try:
        accounts.change_password(
            session,
            runtime.rules,
            user,
            old_password=old_password,
            new_password=new_password,
            now=now,
        )
    except AuthenticationFailed:
        session.rollback()
        throttling.record_failure(session, keys, runtime.settings, now=now)
        keep_on_error(session)
        raise
    throttling.clear_after_success(session, keys)
    accounts.revoke_sessions(session, user.id, now=now)
    return user
