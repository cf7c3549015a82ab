"""A project's rows (fits, recommendations, validations): one page, newest first, and one row
by id, 404 when it belongs to another project."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.services.errors import NotFound
from app.store.models import Project


def page(
    session: Session, model: type, project: Project, limit: int, offset: int
) -> tuple[list[Any], int]:
    """A project's rows of ``model``, newest first, with the total count."""
    q = select(model).where(model.project_id == project.id)
    count = session.scalar(select(func.count()).select_from(q.subquery())) or 0
    return list(session.scalars(q.order_by(model.id.desc()).offset(offset).limit(limit))), count


def owned(session: Session, model: type, project: Project, row_id: int, label: str) -> Any:
    """The row ``row_id`` of ``model`` if it belongs to ``project``; 404 naming ``label`` else."""
    row = session.get(model, row_id)
    if row is None or row.project_id != project.id:
        raise NotFound(f"{label} {row_id} not found in project {project.id}")
    return row
