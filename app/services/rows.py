"""A project's rows (fits, recommendations, validations): one page, newest first, and one row
by id, 404 when it belongs to another project; and a row a worker needs, by id."""

from __future__ import annotations

from typing import Any, TypeVar

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.services.errors import NotFound
from app.store.models import Project

T = TypeVar("T")


def page(
    session: Session, model: Any, project: Project, limit: int, offset: int, where: Any = ()
) -> tuple[list[Any], int]:
    """A project's rows of ``model`` (meeting the conditions ``where``), newest first, with the
    total count."""
    q = select(model).where(model.project_id == project.id, *where)
    count = session.scalar(select(func.count()).select_from(q.subquery())) or 0
    return list(session.scalars(q.order_by(model.id.desc()).offset(offset).limit(limit))), count


def owned(session: Session, model: type[T], project: Project, row_id: int, label: str) -> T:
    """The row ``row_id`` of ``model`` if it belongs to ``project``; 404 naming ``label`` else."""
    row = session.get(model, row_id)
    if row is None or getattr(row, "project_id", None) != project.id:
        raise NotFound(f"{label} {row_id} not found in project {project.id}")
    return row


def load(session: Session, model: type[T], row_id: Any) -> T:
    """The row a job names (``LookupError`` when it was deleted meanwhile: the job fails)."""
    row = session.get(model, row_id)
    if row is None:
        raise LookupError(f"{model.__name__.lower()} {row_id} no longer exists")
    return row
