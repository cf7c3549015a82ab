"""experts: domain experts of a project and their next-token probabilities (issue 25, item 1)

One row per (project, domain): how the expert was made (trained by a worker or uploaded), its
training settings, the evaluation windows its probabilities are over, and per validation domain
the stored probability file's metadata and the expert's loss. The probability arrays themselves
live on disk under ``<home>/experts``, not in the database. A new table: the upgrade cannot fail
on existing data; downgrade drops it (the files on disk stay, unreferenced).

Revision ID: 20261205_experts
Revises: 20261205_fit_rec_labels
Create Date: 2026-12-05 01:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "20261205_experts"
down_revision: str | None = "20261205_fit_rec_labels"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "expert",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("domain", sa.String(length=200), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("origin", sa.String(length=16), nullable=False),
        sa.Column("preset", sa.String(length=32), nullable=True),
        sa.Column("train_steps", sa.Integer(), nullable=True),
        sa.Column("train_tokens", sa.BigInteger(), nullable=True),
        sa.Column("seed", sa.Integer(), nullable=True),
        sa.Column("block_size", sa.Integer(), nullable=False),
        sa.Column("n_windows", sa.Integer(), nullable=False),
        sa.Column("probs", sa.JSON(), nullable=False),
        sa.Column("losses", sa.JSON(), nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("job_id", sa.String(length=32), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["project.id"],
            name=op.f("fk_expert_project_id_project"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_expert")),
        sa.UniqueConstraint("project_id", "domain", name="uq_expert_project_domain"),
    )
    with op.batch_alter_table("expert", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_expert_job_id"), ["job_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_expert_project_id"), ["project_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("expert", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_expert_project_id"))
        batch_op.drop_index(batch_op.f("ix_expert_job_id"))
    op.drop_table("expert")
