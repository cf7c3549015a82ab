"""online sessions

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23 04:04:35.838997
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "online_session",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=True),
        sa.Column("algorithm", sa.String(length=32), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("domains", sa.JSON(), nullable=False),
        sa.Column("state", sa.JSON(), nullable=False),
        sa.Column("weights", sa.JSON(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("applies_from_step", sa.Integer(), nullable=False),
        sa.Column("schedule", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("last_remix_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["project.id"],
            name=op.f("fk_online_session_project_id_project"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_online_session")),
    )
    with op.batch_alter_table("online_session", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_online_session_project_id"), ["project_id"], unique=False
        )

    op.create_table(
        "online_observation",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("session_id", sa.Integer(), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("tokens", sa.BigInteger(), nullable=True),
        sa.Column("train_losses", sa.JSON(), nullable=False),
        sa.Column("eval_losses", sa.JSON(), nullable=False),
        sa.Column("mixture", sa.JSON(), nullable=True),
        sa.Column("processed", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["online_session.id"],
            name=op.f("fk_online_observation_session_id_online_session"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_online_observation")),
        sa.UniqueConstraint("session_id", "step", name="uq_online_observation_session_step"),
    )
    with op.batch_alter_table("online_observation", schema=None) as batch_op:
        batch_op.create_index(
            "ix_online_observation_pending", ["session_id", "processed"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_online_observation_session_id"), ["session_id"], unique=False
        )

    op.create_table(
        "online_weights",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("session_id", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("weights", sa.JSON(), nullable=False),
        sa.Column("n_observations", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["online_session.id"],
            name=op.f("fk_online_weights_session_id_online_session"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_online_weights")),
        sa.UniqueConstraint("session_id", "version", name="uq_online_weights_session_version"),
    )
    with op.batch_alter_table("online_weights", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_online_weights_session_id"), ["session_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("online_weights", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_online_weights_session_id"))

    op.drop_table("online_weights")
    with op.batch_alter_table("online_observation", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_online_observation_session_id"))
        batch_op.drop_index("ix_online_observation_pending")

    op.drop_table("online_observation")
    with op.batch_alter_table("online_session", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_online_session_project_id"))

    op.drop_table("online_session")
