"""Periodic housekeeping (run by beat): re-queue jobs whose worker died."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from app.core.celery_config import TASK_QUEUES
from app.core.config import get_settings
from app.services.dispatch import KIND_TASKS
from app.store.db import session_scope
from app.store.models import Job, utcnow
from workers.celery_app import celery_app


@celery_app.task(name="mixopt.reap_stale_jobs")
def reap_stale_jobs() -> int:
    """Send again the jobs left ``running`` by a dead worker; their task claims and resumes them."""
    cutoff = utcnow() - timedelta(seconds=get_settings().stale_job_seconds)
    with session_scope() as s:
        stale = list(s.scalars(select(Job).where(Job.state == "running", Job.heartbeat_at < cutoff)))
        ids = [(j.id, j.kind, j.queue) for j in stale]
    for job_id, kind, queue in ids:
        task = KIND_TASKS.get(kind)
        if task:
            celery_app.send_task(task, args=[job_id], queue=queue or TASK_QUEUES.get(task, "default"))
    return len(ids)
