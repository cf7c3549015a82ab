"""domain.source_admin: whether an admin token registered the domain's source, so ingestion
re-checks the source against the roots that token had (issue 24)

Existing rows get false: the migration cannot know which token registered a source, and false
is the safe side. A source a write token registered then keeps only ``MIXOPT_DATA_ROOTS`` (it
could never have used more); one an admin registered inside ``MIXOPT_ADMIN_DATA_ROOTS`` fails
ingestion with the roots message until an admin registers it again (a PATCH of the project's
domains, or a domain change, by an admin token), which sets the flag. The other default, true,
would hand every old write-token source the admin-only roots: the hole this column closes.

Revision ID: 20261204_domain_source_admin
Revises: 20261202_domain_versions
Create Date: 2026-12-04 01:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "20261204_domain_source_admin"
down_revision: str | None = "20261202_domain_versions"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("domain", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("source_admin", sa.Boolean(), server_default=sa.false(), nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("domain", schema=None) as batch_op:
        batch_op.drop_column("source_admin")
