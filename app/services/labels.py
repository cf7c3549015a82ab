"""Names and tags of fits and recommendations (issue 26): set at creation or by PATCH, one row
per tag in ``fit_tag`` / ``recommendation_tag`` so a list filters by tag on any database (as
``run_tag`` for runs)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from app.store.models import Fit, FitTag, Recommendation, RecommendationTag

#: the tag table of each labelled model, and its column naming the row
_TAGS: dict[type, tuple[Any, Any]] = {
    Fit: (FitTag, FitTag.fit_id),
    Recommendation: (RecommendationTag, RecommendationTag.recommendation_id),
}


def set_tags(session: Session, row: Fit | Recommendation, tags: Sequence[str]) -> None:
    """Replace ``row``'s tags (duplicates dropped, order kept); ``row`` must have an id."""
    table, column = _TAGS[type(row)]
    row.tags = list(dict.fromkeys(tags))
    session.execute(delete(table).where(column == row.id))
    session.add_all(table(**{column.key: row.id, "tag": t}) for t in row.tags)


def update_labels(session: Session, row: Fit | Recommendation, data: Any) -> None:
    """Apply a PATCH body's ``name`` and ``tags`` (only the fields it sets) and commit."""
    fields = data.model_fields_set
    if "name" in fields:
        row.name = data.name
    if "tags" in fields and data.tags is not None:
        set_tags(session, row, data.tags)
    session.commit()
    session.refresh(row)


def forget(session: Session, row: Fit | Recommendation) -> None:
    """Delete ``row``'s tag rows (with the row: the foreign key cascades too, but an id SQLite
    reuses must not inherit stale tags where a connection runs without foreign keys)."""
    table, column = _TAGS[type(row)]
    session.execute(delete(table).where(column == row.id))


def tagged(model: type[Fit] | type[Recommendation], tag: str | None) -> list[Any]:
    """The conditions selecting rows of ``model`` with ``tag`` (none without a tag)."""
    if not tag:
        return []
    table, column = _TAGS[model]
    return [model.id.in_(select(column).where(table.tag == tag))]
