"""auth_failure: failed-authentication counters shared by every API process (issue 24, item 6)

One row per key (client address or hash of the presented credential) and fixed window; the
rate limiter upserts it on every failed authentication and prunes past windows. Downgrade drops
the table: the counters are transient (at most one window of failures is lost).

Revision ID: 20261204_auth_failure
Revises: 20261204_domain_source_admin
Create Date: 2026-12-04 01:15:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "20261204_auth_failure"
down_revision: str | None = "20261204_domain_source_admin"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "auth_failure",
        sa.Column("key", sa.String(length=80), nullable=False),
        sa.Column("window_start", sa.BigInteger(), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("key", "window_start", name=op.f("pk_auth_failure")),
    )
    op.create_index("ix_auth_failure_window_start", "auth_failure", ["window_start"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_auth_failure_window_start", table_name="auth_failure")
    op.drop_table("auth_failure")
