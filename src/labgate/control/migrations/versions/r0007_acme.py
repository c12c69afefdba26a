"""ACME: nonces, external account keys, accounts, orders, authorizations, challenges.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def _when(name: str, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _id(name: str = "id") -> sa.Column[object]:
    return sa.Column(name, sa.String(64), nullable=False)


def _fk(table: str, column: str, target: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint([column], [f"{target}.id"], name=f"fk_{table}_{column}_{target}")


def upgrade() -> None:
    op.create_table(
        "acme_nonces",
        sa.Column("value", sa.String(64), nullable=False),
        _when("expires_at"),
        sa.PrimaryKeyConstraint("value", name="pk_acme_nonces"),
    )
    op.create_index("ix_acme_nonces_expires_at", "acme_nonces", ["expires_at"])
    op.create_table(
        "acme_external_keys",
        _id("kid"),
        sa.Column("sealed_key", sa.LargeBinary, nullable=False),
        sa.Column("label", sa.String(100), nullable=False),
        sa.Column("dns_suffixes", sa.Text, nullable=False),
        sa.Column("ip_ranges", sa.Text, nullable=False),
        _when("created_at"),
        sa.Column("created_by", sa.String(200), nullable=False),
        _when("revoked_at", nullable=True),
        sa.Column("account_id", sa.String(64), nullable=True),
        sa.PrimaryKeyConstraint("kid", name="pk_acme_external_keys"),
        sa.UniqueConstraint("account_id", name="uq_acme_external_keys_account_id"),
    )
    op.create_table(
        "acme_accounts",
        _id(),
        sa.Column("thumbprint", sa.String(64), nullable=False),
        sa.Column("jwk", sa.Text, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("contact", sa.Text, nullable=False),
        sa.Column("eab_kid", sa.String(64), nullable=True),
        _when("created_at"),
        sa.PrimaryKeyConstraint("id", name="pk_acme_accounts"),
        sa.UniqueConstraint("thumbprint", name="uq_acme_accounts_thumbprint"),
    )
    op.create_table(
        "acme_orders",
        _id(),
        sa.Column("account_id", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("identifiers", sa.Text, nullable=False),
        _when("created_at"),
        _when("expires_at"),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("certificate_serial", sa.String(64), nullable=True),
        sa.Column("certificate_pem", sa.Text, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_acme_orders"),
        _fk("acme_orders", "account_id", "acme_accounts"),
    )
    op.create_index("ix_acme_orders_account_id", "acme_orders", ["account_id"])
    op.create_index("ix_acme_orders_created_at", "acme_orders", ["created_at"])
    op.create_index("ix_acme_orders_certificate_serial", "acme_orders", ["certificate_serial"])
    op.create_table(
        "acme_authorizations",
        _id(),
        sa.Column("order_id", sa.String(64), nullable=False),
        sa.Column("account_id", sa.String(64), nullable=False),
        sa.Column("identifier_type", sa.String(8), nullable=False),
        sa.Column("identifier_value", sa.String(255), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        _when("expires_at"),
        sa.PrimaryKeyConstraint("id", name="pk_acme_authorizations"),
        _fk("acme_authorizations", "order_id", "acme_orders"),
        _fk("acme_authorizations", "account_id", "acme_accounts"),
    )
    op.create_index("ix_acme_authorizations_order_id", "acme_authorizations", ["order_id"])
    op.create_index("ix_acme_authorizations_account_id", "acme_authorizations", ["account_id"])
    op.create_table(
        "acme_challenges",
        _id(),
        sa.Column("authorization_id", sa.String(64), nullable=False),
        sa.Column("type", sa.String(16), nullable=False),
        sa.Column("token", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        _when("started_at", nullable=True),
        _when("validated_at", nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_acme_challenges"),
        _fk("acme_challenges", "authorization_id", "acme_authorizations"),
    )
    op.create_index("ix_acme_challenges_authorization_id", "acme_challenges", ["authorization_id"])


def downgrade() -> None:
    for table in (
        "acme_challenges",
        "acme_authorizations",
        "acme_orders",
        "acme_accounts",
        "acme_external_keys",
        "acme_nonces",
    ):
        op.drop_table(table)
