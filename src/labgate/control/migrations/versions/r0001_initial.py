"""Initial tables: users, devices, grants, refresh tokens, deny list, failed logins, audit.

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _when(name: str, *, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("username", sa.String(64), nullable=False),
        sa.Column("password_hash", sa.String(255), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("disabled", sa.Boolean(), nullable=False),
        sa.Column("one_time_password", sa.Boolean(), nullable=False),
        _when("created_at"),
        sa.UniqueConstraint("username", name="uq_users_username"),
    )
    op.create_table(
        "devices",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("owner_id", sa.Integer(), sa.ForeignKey("users.id"), nullable=True),
        sa.Column("latitude", sa.Float(), nullable=True),
        sa.Column("longitude", sa.Float(), nullable=True),
        sa.Column("revoked", sa.Boolean(), nullable=False),
        _when("created_at"),
        _when("last_seen_at", nullable=True),
    )
    op.create_index("ix_devices_owner_id", "devices", ["owner_id"])
    op.create_table(
        "grants",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("principal", sa.String(200), nullable=False),
        sa.Column("instrument", sa.String(100), nullable=False),
        sa.Column("level", sa.String(16), nullable=False),
        _when("created_at"),
        sa.UniqueConstraint("principal", "instrument", name="uq_grants_principal"),
    )
    op.create_index("ix_grants_principal", "grants", ["principal"])
    op.create_table(
        "refresh_tokens",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("family_id", sa.String(64), nullable=False),
        sa.Column("subject", sa.String(200), nullable=False),
        sa.Column("used", sa.Boolean(), nullable=False),
        _when("used_at", nullable=True),
        sa.Column("revoked", sa.Boolean(), nullable=False),
        _when("created_at"),
        _when("expires_at"),
        sa.Column("access_jti", sa.String(64), nullable=False),
        _when("access_expires_at"),
        sa.Column("restricted", sa.Boolean(), nullable=False),
        sa.Column("cnf_thumbprint", sa.String(64), nullable=True),
        sa.Column("successor_id", sa.Integer(), nullable=True),
        sa.Column("successor_sealed", sa.LargeBinary(), nullable=True),
        sa.UniqueConstraint("token_hash", name="uq_refresh_tokens_token_hash"),
    )
    op.create_index("ix_refresh_tokens_family_id", "refresh_tokens", ["family_id"])
    op.create_index("ix_refresh_tokens_subject", "refresh_tokens", ["subject"])
    op.create_index("ix_refresh_tokens_access_jti", "refresh_tokens", ["access_jti"])
    op.create_table(
        "denied_tokens",
        sa.Column("jti", sa.String(64), primary_key=True),
        _when("expires_at"),
    )
    op.create_index("ix_denied_tokens_expires_at", "denied_tokens", ["expires_at"])
    op.create_table(
        "failed_logins",
        sa.Column("key", sa.String(200), primary_key=True),
        sa.Column("failures", sa.Integer(), nullable=False),
        _when("last_failure_at"),
    )
    op.create_table(
        "audit_events",
        sa.Column("id", sa.Integer(), primary_key=True),
        _when("at"),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("subject", sa.String(200), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
    )
    op.create_index("ix_audit_events_at", "audit_events", ["at"])
    op.create_table(
        "issued_certificates",
        sa.Column("serial", sa.String(64), primary_key=True),
        sa.Column("subject", sa.String(200), nullable=False),
        _when("expires_at"),
        sa.Column("revoked", sa.Boolean(), nullable=False),
    )
    op.create_index("ix_issued_certificates_subject", "issued_certificates", ["subject"])
    counters = op.create_table(
        "counters",
        sa.Column("name", sa.String(32), primary_key=True),
        sa.Column("value", sa.BigInteger(), nullable=False),
    )
    # The gateway bundle version: bumped once per bundle issued, so it only grows.
    op.bulk_insert(counters, [{"name": "bundle", "value": 0}])


def downgrade() -> None:
    for table in (
        "counters",
        "issued_certificates",
        "audit_events",
        "failed_logins",
        "denied_tokens",
        "refresh_tokens",
        "grants",
        "devices",
        "users",
    ):
        op.drop_table(table)
