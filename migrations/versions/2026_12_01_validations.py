"""validation trainings: mixtures trained with shared seeds and their paired comparison

Revision ID: 20261201_validations
Revises: 20261201_domain_trainer_paths
Create Date: 2026-12-01 22:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "20261201_validations"
down_revision: str | None = "20261201_domain_trainer_paths"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "validation",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.String(length=32), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("mixtures", sa.JSON(), nullable=False),
        sa.Column("seeds", sa.JSON(), nullable=False),
        sa.Column("preset", sa.String(length=32), nullable=False),
        sa.Column("train_steps", sa.Integer(), nullable=False),
        sa.Column("settings", sa.JSON(), nullable=False),
        sa.Column("objective", sa.JSON(), nullable=False),
        sa.Column("run_ids", sa.JSON(), nullable=False),
        sa.Column("result", sa.JSON(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["project.id"],
            name=op.f("fk_validation_project_id_project"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_validation")),
    )
    with op.batch_alter_table("validation", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_validation_job_id"), ["job_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_validation_project_id"), ["project_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("validation", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_validation_project_id"))
        batch_op.drop_index(batch_op.f("ix_validation_job_id"))
    op.drop_table("validation")
