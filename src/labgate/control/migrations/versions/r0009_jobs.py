"""Jobs: device groups, rollouts and jobs.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def _when(name: str, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "device_groups",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("owner_id", sa.Integer, nullable=True),
        _when("created_at"),
        sa.PrimaryKeyConstraint("name", name="pk_device_groups"),
        sa.ForeignKeyConstraint(["owner_id"], ["users.id"], name="fk_device_groups_owner_id_users"),
    )
    op.create_table(
        "device_group_members",
        sa.Column("group_name", sa.String(64), nullable=False),
        sa.Column("device_id", sa.String(40), nullable=False),
        sa.PrimaryKeyConstraint("group_name", "device_id", name="pk_device_group_members"),
        sa.ForeignKeyConstraint(
            ["group_name"],
            ["device_groups.name"],
            name="fk_device_group_members_group_name_device_groups",
        ),
        sa.ForeignKeyConstraint(
            ["device_id"], ["devices.id"], name="fk_device_group_members_device_id_devices"
        ),
    )
    op.create_table(
        "rollouts",
        sa.Column("id", sa.Integer, nullable=False),
        sa.Column("type", sa.String(40), nullable=False),
        sa.Column("params", sa.Text, nullable=False),
        sa.Column("devices", sa.Text, nullable=False),
        sa.Column("waves", sa.Text, nullable=False),
        sa.Column("failure_threshold", sa.Float, nullable=False),
        sa.Column("window", sa.Text, nullable=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("current_wave", sa.Integer, nullable=False),
        sa.Column("halted_reason", sa.String(300), nullable=True),
        sa.Column("job_seconds", sa.Integer, nullable=False),
        sa.Column("in_progress_seconds", sa.Integer, nullable=False),
        sa.Column("max_attempts", sa.Integer, nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
        _when("created_at"),
        _when("updated_at"),
        sa.PrimaryKeyConstraint("id", name="pk_rollouts"),
    )
    op.create_table(
        "jobs",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("device_id", sa.String(40), nullable=False),
        sa.Column("type", sa.String(40), nullable=False),
        sa.Column("params", sa.Text, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("max_attempts", sa.Integer, nullable=False),
        sa.Column("status_details", sa.Text, nullable=True),
        sa.Column("output", sa.Text, nullable=True),
        sa.Column("last_report", sa.String(64), nullable=True),
        sa.Column("forced", sa.Boolean, nullable=False),
        sa.Column("rollout_id", sa.Integer, nullable=True),
        sa.Column("wave", sa.Integer, nullable=True),
        sa.Column("created_by", sa.String(200), nullable=False),
        _when("created_at"),
        _when("updated_at"),
        _when("not_after"),
        _when("expires_at"),
        sa.Column("in_progress_seconds", sa.Integer, nullable=False),
        _when("started_at", nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_jobs"),
        sa.ForeignKeyConstraint(["device_id"], ["devices.id"], name="fk_jobs_device_id_devices"),
        sa.ForeignKeyConstraint(
            ["rollout_id"], ["rollouts.id"], name="fk_jobs_rollout_id_rollouts"
        ),
    )
    op.create_index("ix_jobs_device_id", "jobs", ["device_id"])
    op.create_index("ix_jobs_state", "jobs", ["state"])
    op.create_index("ix_jobs_expires_at", "jobs", ["expires_at"])
    op.create_index("ix_jobs_rollout_id", "jobs", ["rollout_id"])


def downgrade() -> None:
    for index in ("ix_jobs_rollout_id", "ix_jobs_expires_at", "ix_jobs_state", "ix_jobs_device_id"):
        op.drop_index(index, table_name="jobs")
    op.drop_table("jobs")
    op.drop_table("rollouts")
    op.drop_table("device_group_members")
    op.drop_table("device_groups")
