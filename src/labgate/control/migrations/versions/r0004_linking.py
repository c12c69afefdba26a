"""Device linking: discovery presence, link verifications, RFC 8628 device codes.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def _when(name: str, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "discovery_presence",
        sa.Column("instance_id", sa.String(64), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("public_address", sa.String(64), nullable=False),
        sa.Column("local_address", sa.String(64), nullable=False),
        sa.Column("hostname", sa.String(64), nullable=False),
        sa.Column("model", sa.String(64), nullable=False),
        sa.Column("serial", sa.String(64), nullable=False),
        _when("first_seen_at"),
        _when("last_seen_at"),
        sa.Column("announcements", sa.Integer, nullable=False),
        sa.Column("ended", sa.String(32), nullable=True),
        sa.PrimaryKeyConstraint("instance_id", name="pk_discovery_presence"),
    )
    op.create_index(
        "ix_discovery_presence_public_address", "discovery_presence", ["public_address"]
    )
    op.create_index("ix_discovery_presence_last_seen_at", "discovery_presence", ["last_seen_at"])
    op.create_table(
        "link_verifications",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("instance_id", sa.String(64), nullable=False),
        sa.Column("device_id", sa.String(40), nullable=False),
        sa.Column("proof", sa.String(64), nullable=False),
        sa.Column("user_id", sa.Integer, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        _when("created_at"),
        _when("expires_at"),
        sa.PrimaryKeyConstraint("id", name="pk_link_verifications"),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name="fk_link_verifications_user_id_users"
        ),
    )
    op.create_index("ix_link_verifications_instance_id", "link_verifications", ["instance_id"])
    op.create_table(
        "device_codes",
        sa.Column("id", sa.Integer, nullable=False),
        sa.Column("device_code_hash", sa.String(64), nullable=False),
        sa.Column("selector", sa.String(8), nullable=False),
        sa.Column("user_code_hash", sa.String(64), nullable=False),
        sa.Column("device_id", sa.String(40), nullable=False),
        sa.Column("model", sa.String(64), nullable=False),
        sa.Column("serial", sa.String(64), nullable=False),
        sa.Column("hostname", sa.String(64), nullable=False),
        sa.Column("local_address", sa.String(64), nullable=True),
        sa.Column("public_address", sa.String(64), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("wrong_entries", sa.Integer, nullable=False),
        sa.Column("approved_by", sa.Integer, nullable=True),
        sa.Column("interval", sa.Integer, nullable=False),
        _when("last_polled_at", nullable=True),
        _when("created_at"),
        _when("expires_at"),
        sa.PrimaryKeyConstraint("id", name="pk_device_codes"),
        sa.UniqueConstraint("device_code_hash", name="uq_device_codes_device_code_hash"),
        sa.ForeignKeyConstraint(
            ["approved_by"], ["users.id"], name="fk_device_codes_approved_by_users"
        ),
    )
    op.create_index("ix_device_codes_selector", "device_codes", ["selector"])
    op.create_index("ix_device_codes_expires_at", "device_codes", ["expires_at"])
    op.create_index("ix_device_codes_public_address", "device_codes", ["public_address"])


def downgrade() -> None:
    op.drop_table("device_codes")
    op.drop_table("link_verifications")
    op.drop_table("discovery_presence")
