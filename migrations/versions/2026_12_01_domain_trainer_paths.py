"""domain trainer_paths and documents: what trainers read besides the raw text

Revision ID: 20261201_domain_trainer_paths
Revises: 20261201_job_liveness
Create Date: 2026-12-01 22:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "20261201_domain_trainer_paths"
down_revision: str | None = "20261201_job_liveness"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("domain", schema=None) as batch_op:
        batch_op.add_column(sa.Column("trainer_paths", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("documents", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("domain", schema=None) as batch_op:
        batch_op.drop_column("documents")
        batch_op.drop_column("trainer_paths")
