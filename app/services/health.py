"""Readiness: which workers are alive, whether the queues the API needs are served, and
whether housekeeping (``MIXOPT_MAINTENANCE_QUEUE``) has a worker."""

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


def maintenance(live: list[dict[str, Any]], settings: Settings) -> str | None:
    """None when a live worker (``live``, from :func:`workers`) consumes the housekeeping queue
    ``MIXOPT_MAINTENANCE_QUEUE`` (beat's stale-job reaper and online ticks), else why not.

    Reported by ``/readyz`` on its own line; it fails readiness only when the queue is one of
    ``MIXOPT_READY_QUEUES``: without it the API and training still work, but lost jobs are not
    re-sent and online sessions do not re-mix."""
    queue = settings.maintenance_queue
    if any(queue in str(w["queues"]).split(",") for w in live):
        return None
    return (
        f"no live worker consumes the housekeeping queue {queue} (MIXOPT_MAINTENANCE_QUEUE): "
        "lost jobs are not re-sent and online sessions do not tick"
    )


def live_named(live: list[dict[str, Any]], pattern: str | None) -> list[dict[str, Any]]:
    """The live workers whose node name matches ``pattern`` (shell-style: ``embedded-*@host``);
    every live worker when ``pattern`` is None."""
    from fnmatch import fnmatchcase

    return [w for w in live if pattern is None or fnmatchcase(str(w["name"]), pattern)]
