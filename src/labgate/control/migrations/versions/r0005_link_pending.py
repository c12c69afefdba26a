"""Discovery presence: until when a link request holds it, so a second one, even in parallel,
is refused by one conditional UPDATE.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("discovery_presence") as table:
        table.add_column(sa.Column("link_pending_until", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("discovery_presence") as table:
        table.drop_column("link_pending_until")
