"""What every task does around its science: claim the job row (idempotent under redelivery),
report progress, and finish or fail it."""

from __future__ import annotations

import logging
import socket
import traceback
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from sqlalchemy import and_, or_, update

from app.core.config import get_settings
from app.store.db import session_scope
from app.store.models import Job, utcnow

log = logging.getLogger("mixopt.worker")
WORKER_NAME = f"{socket.gethostname()}"


def claim(job_id: str) -> bool:
    """Atomically move the job to ``running``; False if another worker has it or it ended.

    A job left ``running`` by a worker that died (heartbeat older than
    ``MIXOPT_STALE_JOB_SECONDS``) can be claimed again: that is how a redelivered message
    resumes work (late acks), while a duplicate delivery of a live job does nothing.
    """
    now = utcnow()
    cutoff = now - timedelta(seconds=get_settings().stale_job_seconds)
    with session_scope() as s:
        res = s.execute(
            update(Job)
            .where(Job.id == job_id, Job.cancel_requested.is_(False),
                   or_(Job.state == "pending",
                       and_(Job.state == "running", or_(Job.heartbeat_at.is_(None), Job.heartbeat_at < cutoff))))
            .values(state="running", attempts=Job.attempts + 1, heartbeat_at=now, worker=WORKER_NAME,
                    started_at=now, message="started")
        )
        claimed = res.rowcount == 1
    if not claimed:
        log.info("job %s not claimed (taken, finished or cancelled)", job_id)
    return claimed


def heartbeat(job_id: str, progress: float | None = None, message: str | None = None) -> bool:
    """Record progress; returns True when a cancel was requested."""
    values: dict[str, Any] = {"heartbeat_at": utcnow()}
    if progress is not None:
        values["progress"] = max(0.0, min(1.0, float(progress)))
    if message is not None:
        values["message"] = message
    with session_scope() as s:
        s.execute(update(Job).where(Job.id == job_id, Job.state == "running").values(**values))
        job = s.get(Job, job_id)
        return bool(job and job.cancel_requested)


def finish(job_id: str, result: dict[str, Any] | None = None, message: str = "done",
           state: str = "succeeded", also: Callable[[Any], dict[str, Any] | None] | None = None) -> None:
    """End the job; ``also(session)`` writes the task's results in the same transaction and
    may return more fields for the job's ``result``."""
    with session_scope() as s:
        if also is not None:
            result = {**(result or {}), **(also(s) or {})}
        s.execute(update(Job).where(Job.id == job_id).values(
            state=state, progress=1.0 if state == "succeeded" else Job.progress, result=result, message=message,
            finished_at=utcnow(), heartbeat_at=utcnow()))


def fail(job_id: str, exc: BaseException, also: Callable[[Any], None] | None = None) -> None:
    reason = f"{type(exc).__name__}: {exc}"
    log.error("job %s failed: %s\n%s", job_id, reason, traceback.format_exc())
    with session_scope() as s:
        if also is not None:
            also(s)
        s.execute(update(Job).where(Job.id == job_id).values(
            state="failed", error=reason, message="failed", finished_at=utcnow()))


def load_job(job_id: str) -> Job:
    with session_scope() as s:
        job = s.get(Job, job_id)
        s.expunge(job)
        return job
