"""fits answer at a scale and say how far to trust them: target_scale, scale, scaling, trusted

Revision ID: 20261201_fit_scale_trust
Revises: 20261201_validations
Create Date: 2026-12-01 22:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "20261201_fit_scale_trust"
down_revision: str | None = "20261201_validations"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("fit", schema=None) as batch_op:
        batch_op.add_column(sa.Column("target_scale", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("scale", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("scaling", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("trusted", sa.Boolean(), nullable=True))
        batch_op.add_column(sa.Column("trust_reasons", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("fit", schema=None) as batch_op:
        batch_op.drop_column("trust_reasons")
        batch_op.drop_column("trusted")
        batch_op.drop_column("scaling")
        batch_op.drop_column("scale")
        batch_op.drop_column("target_scale")
