"""fit_rec_labels: names and tags for fits and recommendations (issue 26, item 4)

Adds ``name`` (nullable) and ``tags`` (a JSON list, ``[]`` for existing rows) to ``fit`` and
``recommendation``, and one tag table each (``fit_tag``, ``recommendation_tag``: one row per
(row, tag), as ``run_tag`` for runs) so the lists filter by tag on any database. Existing rows
get no name and no tags, so the upgrade cannot fail on existing data. Downgrade drops the
columns and tables (names and tags are lost; nothing else depends on them).

Revision ID: 20261205_fit_rec_labels
Revises: 20261204_auth_failure
Create Date: 2026-12-05 00:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "20261205_fit_rec_labels"
down_revision: str | None = "20261204_auth_failure"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_OWNERS = (("fit", "fit_id"), ("recommendation", "recommendation_id"))


def upgrade() -> None:
    for table, fk in _OWNERS:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column("name", sa.String(length=200), nullable=True))
            batch_op.add_column(sa.Column("tags", sa.JSON(), server_default="[]", nullable=False))
        op.create_table(
            f"{table}_tag",
            sa.Column(fk, sa.Integer(), nullable=False),
            sa.Column("tag", sa.String(length=100), nullable=False),
            sa.ForeignKeyConstraint(
                [fk], [f"{table}.id"], name=op.f(f"fk_{table}_tag_{fk}_{table}"), ondelete="CASCADE"
            ),
            sa.PrimaryKeyConstraint(fk, "tag", name=op.f(f"pk_{table}_tag")),
        )
        with op.batch_alter_table(f"{table}_tag", schema=None) as batch_op:
            batch_op.create_index(batch_op.f(f"ix_{table}_tag_tag"), ["tag"], unique=False)


def downgrade() -> None:
    for table, _fk in reversed(_OWNERS):
        with op.batch_alter_table(f"{table}_tag", schema=None) as batch_op:
            batch_op.drop_index(batch_op.f(f"ix_{table}_tag_tag"))
        op.drop_table(f"{table}_tag")
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column("tags")
            batch_op.drop_column("name")
