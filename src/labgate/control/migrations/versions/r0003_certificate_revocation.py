"""Certificate revocation in the database, and the counter of changes gateways wait on.

`issued_certificates` gains when and why a certificate was revoked and the SHA-256 thumbprint
that tokens bound to it carry (`cnf`), so every replica refuses it from the database alone. The
`changes` counter grows in every transaction that changes who may do what; a gateway's long poll
waits for it to pass the value its last bundle carried.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("issued_certificates") as table:
        table.add_column(sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True))
        table.add_column(sa.Column("revocation_reason", sa.String(32), nullable=True))
        table.add_column(sa.Column("thumbprint", sa.String(64), nullable=True))
        table.add_column(sa.Column("issued_at", sa.DateTime(timezone=True), nullable=True))
        table.add_column(sa.Column("profile", sa.String(16), nullable=True))
    op.create_index("ix_issued_certificates_thumbprint", "issued_certificates", ["thumbprint"])
    counters = sa.table("counters", sa.column("name", sa.String), sa.column("value", sa.BigInteger))
    op.bulk_insert(counters, [{"name": "changes", "value": 0}])


def downgrade() -> None:
    op.execute("DELETE FROM counters WHERE name = 'changes'")
    op.drop_index("ix_issued_certificates_thumbprint", "issued_certificates")
    with op.batch_alter_table("issued_certificates") as table:
        for column in ("profile", "issued_at", "thumbprint", "revocation_reason", "revoked_at"):
            table.drop_column(column)
