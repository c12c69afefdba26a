"""The site audit trail: every gateway's shipped audit records and where each chain stands.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

FILTERS = ("gateway", "event", "identity", "instrument", "command", "decision", "source")


def _when(name: str, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "gateway_audit_heads",
        sa.Column("gateway", sa.String(100), nullable=False),
        sa.Column("log_id", sa.String(64), nullable=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        _when("last_time", nullable=True),
        sa.Column("closed", sa.Boolean, nullable=False),
        sa.Column("run_seq", sa.BigInteger, nullable=False),
        sa.Column("records", sa.BigInteger, nullable=False),
        _when("received_at"),
        sa.Column("divergence", sa.Text, nullable=True),
        _when("divergence_at", nullable=True),
        sa.PrimaryKeyConstraint("gateway", name="pk_gateway_audit_heads"),
    )
    op.create_table(
        "gateway_audit_records",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer, "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("gateway", sa.String(100), nullable=False),
        sa.Column("log_id", sa.String(64), nullable=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        _when("at"),
        sa.Column("event", sa.String(64), nullable=False),
        sa.Column("identity", sa.String(200), nullable=True),
        sa.Column("instrument", sa.String(100), nullable=True),
        sa.Column("command", sa.String(64), nullable=True),
        sa.Column("decision", sa.String(16), nullable=True),
        sa.Column("source", sa.String(64), nullable=True),
        sa.Column("session", sa.String(200), nullable=True),
        sa.Column("line", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_gateway_audit_records"),
        sa.UniqueConstraint("gateway", "log_id", "seq", name="uq_gateway_audit_records_gateway"),
    )
    op.create_index("ix_gateway_audit_records_at", "gateway_audit_records", ["at", "id"])
    for name in FILTERS:
        op.create_index(
            f"ix_gateway_audit_records_{name}", "gateway_audit_records", [name, "at", "id"]
        )
    op.create_index("ix_gateway_audit_records_session", "gateway_audit_records", ["session", "seq"])


def downgrade() -> None:
    op.drop_table("gateway_audit_records")
    op.drop_table("gateway_audit_heads")
