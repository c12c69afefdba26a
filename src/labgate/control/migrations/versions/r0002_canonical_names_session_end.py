"""User names in canonical form; an absolute end for each user login; new throttle keys.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01

- `refresh_tokens.session_expires_at`: the end of the login a refresh token belongs to. Rows made
  before this revision have none and get one at their next rotation.
- `users.username` becomes canonical (NFKC + case folding, `labgate.auth.usernames`), and the
  identities that embed it (`grants.principal`, `refresh_tokens.subject`,
  `issued_certificates.subject`) follow. Names that collide under folding (`Admin` beside
  `admin`): the oldest account (lowest id) keeps the canonical name; each later one is renamed
  `<name>.dup<id>`, disabled, its refresh tokens revoked and its grants removed, so no one gains
  another account's access by the merge; an audit event records each rename. Its certificates
  are not revoked here (a migration has no CA key): they name an identity that no longer holds
  grants, and expire within `client_certificate_days`.
- `failed_logins`: the keys change form (per source and account, canonical names), so the old
  counters are dropped. Running locks end with them.
"""

from __future__ import annotations

import json
import unicodedata
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

USER_PREFIX = "labgate:user:"


def _canonical(name: str) -> str:
    # A copy of labgate.auth.usernames.canonical_username as it was at this revision: a
    # migration must not change meaning when the library does.
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", name).casefold())


def upgrade() -> None:
    with op.batch_alter_table("refresh_tokens") as batch:
        batch.add_column(sa.Column("session_expires_at", sa.DateTime(timezone=True)))
    bind = op.get_bind()
    users = sa.table(
        "users",
        sa.column("id", sa.Integer),
        sa.column("username", sa.String),
        sa.column("disabled", sa.Boolean),
    )
    rows = bind.execute(sa.select(users.c.id, users.c.username).order_by(users.c.id)).all()
    taken: set[str] = set()
    renames: list[tuple[int, str, str, bool]] = []  # id, old, new, duplicate
    for user_id, old in rows:
        new = _canonical(old)
        duplicate = new in taken
        if duplicate:
            new = f"{new[: 64 - len(f'.dup{user_id}')]}.dup{user_id}"
        taken.add(new)
        if new != old:
            renames.append((user_id, old, new, duplicate))
    # Two passes so that no intermediate state breaks the unique constraint.
    for user_id, _old, _new, _dup in renames:
        bind.execute(
            users.update().where(users.c.id == user_id).values(username=f"~migrating~{user_id}")
        )
    now = datetime.now(UTC)
    for user_id, old, new, duplicate in renames:
        values: dict[str, object] = {"username": new}
        if duplicate:
            values["disabled"] = True
        bind.execute(users.update().where(users.c.id == user_id).values(**values))
        _rename_identity(bind, USER_PREFIX + old, USER_PREFIX + new, duplicate=duplicate)
        detail = {"from": USER_PREFIX + old, "disabled": duplicate}
        bind.execute(
            sa.text(
                "INSERT INTO audit_events (at, kind, subject, detail) "
                "VALUES (:at, 'user.renamed_by_migration', :subject, :detail)"
            ),
            {"at": now, "subject": USER_PREFIX + new, "detail": json.dumps(detail)},
        )
    bind.execute(sa.text("DELETE FROM failed_logins"))


def _rename_identity(bind: sa.Connection, old: str, new: str, *, duplicate: bool) -> None:
    params = {"old": old, "new": new}
    if duplicate:
        bind.execute(sa.text("DELETE FROM grants WHERE principal = :old"), params)
        bind.execute(
            sa.text("UPDATE refresh_tokens SET revoked = :yes WHERE subject = :old"),
            {**params, "yes": True},
        )
    else:
        # A grant already made out to the canonical name wins over the old spelling's.
        bind.execute(
            sa.text(
                "DELETE FROM grants WHERE principal = :old AND instrument IN "
                "(SELECT instrument FROM grants WHERE principal = :new)"
            ),
            params,
        )
        bind.execute(sa.text("UPDATE grants SET principal = :new WHERE principal = :old"), params)
    bind.execute(sa.text("UPDATE refresh_tokens SET subject = :new WHERE subject = :old"), params)
    bind.execute(
        sa.text("UPDATE issued_certificates SET subject = :new WHERE subject = :old"), params
    )


def downgrade() -> None:
    with op.batch_alter_table("refresh_tokens") as batch:
        batch.drop_column("session_expires_at")
