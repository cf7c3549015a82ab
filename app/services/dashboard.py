"""Read-only aggregates for the web dashboard (counts per project, the runs table).

The dashboard's pages call these and the other services; no route builds SQL.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.services import online
from app.store.models import Fit, Project, Recommendation, Run

#: the runs table and the swarm-coverage chart load at most this many runs (newest first)
MAX_TABLE_RUNS = 20_000


def _grouped_count(session: Session, column, project_ids: list[int], *where) -> dict[int, int]:
    if not project_ids:
        return {}
    q = select(column, func.count()).where(column.in_(project_ids), *where).group_by(column)
    return {pid: n for pid, n in session.execute(q)}


def project_counts(session: Session, project_ids: list[int]) -> dict[int, dict[str, int]]:
    """``{project_id: {runs, fits, recommendations, online_sessions}}`` (active online sessions)."""
    runs = _grouped_count(session, Run.project_id, project_ids)
    fits = _grouped_count(session, Fit.project_id, project_ids)
    recs = _grouped_count(session, Recommendation.project_id, project_ids)
    online = active_online_sessions(session, project_ids)
    return {
        pid: {
            "runs": runs.get(pid, 0),
            "fits": fits.get(pid, 0),
            "recommendations": recs.get(pid, 0),
            "online_sessions": online.get(pid, 0),
        }
        for pid in project_ids
    }


def active_online_sessions(session: Session, project_ids: list[int]) -> dict[int, int]:
    """Active online sessions per project."""
    return online.count_active(session, project_ids)


def table_runs(
    session: Session, project: Project, limit: int = MAX_TABLE_RUNS
) -> tuple[list[dict[str, Any]], int]:
    """The newest ``limit`` runs of a project (every status) as plain dicts, oldest first, and
    the project's total number of runs."""
    total = (
        session.scalar(select(func.count()).select_from(Run).where(Run.project_id == project.id))
        or 0
    )
    cols = (
        Run.id,
        Run.name,
        Run.external_id,
        Run.status,
        Run.origin,
        Run.tags,
        Run.mixture,
        Run.metrics,
        Run.model_params,
        Run.train_tokens,
        Run.train_steps,
        Run.created_at,
    )
    q = select(*cols).where(Run.project_id == project.id).order_by(Run.id.desc()).limit(limit)
    rows = [dict(r._mapping) for r in session.execute(q)]
    rows.reverse()
    return rows, total
