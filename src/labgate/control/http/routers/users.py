"""`/api/v1/users`: administrators create, list, disable users, reset passwords, end sessions."""

from __future__ import annotations

from fastapi import APIRouter, status

from labgate.control import accounts
from labgate.control.http.dependencies import AdminPrincipal, RowId, RuntimeDep, SessionDep
from labgate.control.schemas import PasswordReset, UserCreate, UserCreated, UserOut
from labgate.control.tables import User

router = APIRouter(prefix="/api/v1/users", tags=["users"])


def user_out(user: User) -> UserOut:
    return UserOut(
        id=user.id,
        username=user.username,
        role=user.role,
        disabled=user.disabled,
        password_change_required=user.one_time_password,
        created_at=user.created_at,
    )


@router.post("", response_model=UserCreated, status_code=status.HTTP_201_CREATED)
def create_user(
    body: UserCreate, runtime: RuntimeDep, session: SessionDep, _admin: AdminPrincipal
) -> UserCreated:
    """A new user with a one-time password, shown here once; the first login must change it."""
    user, password = accounts.create_user(
        session, runtime.rules, username=body.username, role=body.role, now=runtime.clock()
    )
    return UserCreated(user=user_out(user), one_time_password=password)


@router.get("", response_model=list[UserOut])
def list_users(session: SessionDep, _admin: AdminPrincipal) -> list[UserOut]:
    return [user_out(user) for user in accounts.list_users(session)]


@router.get("/{user_id}", response_model=UserOut)
def get_user(user_id: RowId, session: SessionDep, _admin: AdminPrincipal) -> UserOut:
    return user_out(accounts.get_user(session, user_id))


@router.post("/{user_id}/disable", response_model=UserOut)
def disable_user(
    user_id: RowId, runtime: RuntimeDep, session: SessionDep, admin: AdminPrincipal
) -> UserOut:
    """Offboard a person: disable the account, end every session and token it holds, revoke
    every certificate naming it (`privilegeWithdrawn`) and drop its grants from every bundle;
    gateways then close its open instrument sessions. All in one transaction."""
    user = accounts.disable_user(
        session, runtime.ca.inventory, user_id, now=runtime.clock(), by=admin.identity
    )
    return user_out(user)


@router.post("/{user_id}/password-reset", response_model=PasswordReset)
def reset_password(
    user_id: RowId, runtime: RuntimeDep, session: SessionDep, _admin: AdminPrincipal
) -> PasswordReset:
    """A new one-time password (shown once); ends the user's sessions and lifts a lockout."""
    _, password = accounts.reset_password(session, runtime.rules, user_id, now=runtime.clock())
    return PasswordReset(one_time_password=password)


@router.post("/{user_id}/revoke-sessions", response_model=UserOut)
def revoke_sessions(
    user_id: RowId, runtime: RuntimeDep, session: SessionDep, _admin: AdminPrincipal
) -> UserOut:
    revoked = accounts.revoke_sessions(session, user_id, now=runtime.clock())
    return user_out(revoked)
