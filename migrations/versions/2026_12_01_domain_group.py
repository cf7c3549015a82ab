"""domain.group_path: a domain's declared group path ("web/news"; hierarchical domains)

Revision ID: 20261201_domain_group
Revises: 20261201_job_request_id
Create Date: 2026-12-01 22:45:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "20261201_domain_group"
down_revision: str | None = "20261201_job_request_id"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("domain", schema=None) as batch_op:
        batch_op.add_column(sa.Column("group_path", sa.String(length=500), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("domain", schema=None) as batch_op:
        batch_op.drop_column("group_path")
