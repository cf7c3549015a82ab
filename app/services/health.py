"""Readiness: which workers are alive, and whether the queues the API needs are served."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from app.core.config import Settings
from app.store.models import WorkerBeat, utcnow


def ping(session: Session) -> None:
    """Raise if the database does not answer."""
    session.execute(text("SELECT 1"))


def workers(session: Session, settings: Settings) -> tuple[str | None, list[dict[str, Any]]]:
    """(None or why no worker is alive, the live workers): a worker writes its row every
    heartbeat; one seen within ``MIXOPT_STALE_JOB_SECONDS`` counts as alive."""
    cutoff = utcnow() - timedelta(seconds=settings.stale_job_seconds)
    rows = list(session.scalars(select(WorkerBeat)))
    live: list[dict[str, Any]] = []
    for w in rows:
        seen = w.seen_at if w.seen_at.tzinfo else w.seen_at.replace(tzinfo=cutoff.tzinfo)
        if seen >= cutoff:
            live.append(
                {
                    "name": w.name,
                    "queues": w.queues,
                    "concurrency": w.concurrency,
                    "seen_s_ago": round((utcnow() - seen).total_seconds(), 1),
                }
            )
    wanted = [q.strip() for q in settings.ready_queues.split(",") if q.strip()]
    served = {q for w in live for q in str(w["queues"]).split(",")}
    missing = [q for q in wanted if q not in served]
    if live and not missing:
        return None, live
    if live:
        return f"no live worker consumes queue(s) {', '.join(missing)}", live
    return (
        f"no worker heartbeat in the last {settings.stale_job_seconds:g} s"
        + (f" ({len(rows)} known, all silent)" if rows else " (none ever started)")
    ), []
