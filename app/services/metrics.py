"""Figures for ``/metrics`` (app.api.metrics): jobs by kind and state, queue depth, durations."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from app.store.db import session_scope
from app.store.models import Job


def job_metrics() -> dict[str, Any]:
    """``jobs`` {(kind, state): n}, ``queues`` {queue: pending jobs}, ``durations``
    {kind: (finished jobs, total seconds, longest seconds)} over jobs that started and ended."""
    with session_scope() as s:
        jobs = {
            (k, st): n
            for k, st, n in s.execute(
                select(Job.kind, Job.state, func.count()).group_by(Job.kind, Job.state)
            )
        }
        queues = dict(
            s.execute(
                select(Job.queue, func.count()).where(Job.state == "pending").group_by(Job.queue)
            ).all()
        )
        durations: dict[str, list[float]] = {}
        rows = s.execute(
            select(Job.kind, Job.started_at, Job.finished_at).where(
                Job.started_at.is_not(None), Job.finished_at.is_not(None)
            )
        )
        for kind, start, end in rows:
            if start is None or end is None:  # filtered out by the query; narrows the types
                continue
            if end.tzinfo is None or start.tzinfo is None:
                start, end = start.replace(tzinfo=None), end.replace(tzinfo=None)
            durations.setdefault(kind, []).append(max(0.0, (end - start).total_seconds()))
    return {
        "jobs": jobs,
        "queues": queues,
        "durations": {k: (len(v), sum(v), max(v)) for k, v in durations.items()},
    }
