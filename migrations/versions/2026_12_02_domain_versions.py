"""Versioned domain sets: domain_set (one row per version), project.domain_version,
run.domain_version (existing runs: version 1, the set current at migration), fit.domain_versions

Revision ID: 20261202_domain_versions
Revises: 20261201_domain_group
Create Date: 2026-12-02 01:00:00
"""

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision: str = "20261202_domain_versions"
down_revision: str | None = "20261201_domain_group"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "domain_set",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("domains", sa.JSON(), nullable=False),
        sa.Column("changes", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["project.id"],
            name=op.f("fk_domain_set_project_id_project"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_domain_set")),
        sa.UniqueConstraint("project_id", "version", name="uq_domain_set_project_version"),
    )
    with op.batch_alter_table("domain_set", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_domain_set_project_id"), ["project_id"], unique=False)
    with op.batch_alter_table("project", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("domain_version", sa.Integer(), server_default="1", nullable=False)
        )
    with op.batch_alter_table("run", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("domain_version", sa.Integer(), server_default="1", nullable=False)
        )
    with op.batch_alter_table("fit", schema=None) as batch_op:
        batch_op.add_column(sa.Column("domain_versions", sa.JSON(), nullable=True))

    # version 1 of every existing project: its domains as they are now
    conn = op.get_bind()
    domain = sa.table(
        "domain",
        sa.column("project_id", sa.Integer()),
        sa.column("position", sa.Integer()),
        sa.column("name", sa.String()),
        sa.column("token_count", sa.BigInteger()),
        sa.column("group_path", sa.String()),
    )
    project = sa.table("project", sa.column("id", sa.Integer()))
    domain_set = sa.table(
        "domain_set",
        sa.column("project_id", sa.Integer()),
        sa.column("version", sa.Integer()),
        sa.column("domains", sa.JSON()),
        sa.column("changes", sa.JSON()),
        sa.column("created_at", sa.DateTime(timezone=True)),
    )
    by_project: dict[int, list[dict]] = {
        pid: [] for (pid,) in conn.execute(sa.select(project.c.id))
    }
    rows = conn.execute(
        sa.select(
            domain.c.project_id, domain.c.name, domain.c.token_count, domain.c.group_path
        ).order_by(domain.c.project_id, domain.c.position)
    )
    for pid, name, count, group in rows:
        by_project.setdefault(pid, []).append({"name": name, "token_count": count, "group": group})
    now = datetime.now(UTC)
    if by_project:
        op.bulk_insert(
            domain_set,
            [
                {
                    "project_id": pid,
                    "version": 1,
                    "domains": ds,
                    "changes": {"via": "migration"},
                    "created_at": now,
                }
                for pid, ds in by_project.items()
            ],
        )


def downgrade() -> None:
    with op.batch_alter_table("fit", schema=None) as batch_op:
        batch_op.drop_column("domain_versions")
    with op.batch_alter_table("run", schema=None) as batch_op:
        batch_op.drop_column("domain_version")
    with op.batch_alter_table("project", schema=None) as batch_op:
        batch_op.drop_column("domain_version")
    with op.batch_alter_table("domain_set", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_domain_set_project_id"))
    op.drop_table("domain_set")
