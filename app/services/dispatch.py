"""Send jobs to the workers by task name (the API never imports task code)."""

from __future__ import annotations

from functools import lru_cache

from celery import Celery
from kombu import Exchange, Queue
from sqlalchemy import update
from sqlalchemy.orm import Session

from app.core.celery_config import KIND_TASKS, MAINTENANCE, TASK_QUEUES, celery_config
from app.core.config import get_settings
from app.services.errors import ServiceError
from app.store.db import session_scope
from app.store.models import Job, utcnow


@lru_cache
def sender() -> Celery:
    app = Celery("mixopt-api")
    app.conf.update(celery_config(get_settings()))
    return app


def enqueue(task: str, job_id: str, queue: str | None = None) -> None:
    """Publish ``task(job_id)``; call only after the job row is committed."""
    sender().send_task(task, args=[job_id], queue=queue or TASK_QUEUES.get(task, "default"))


def _record_send(session: Session, job_id: str) -> None:
    session.execute(
        update(Job).where(Job.id == job_id).values(sends=Job.sends + 1, sent_at=utcnow())
    )


def enqueue_job(session: Session, job: Job) -> None:
    """Publish the task for a committed job and count the send on it; if the broker is down, the
    job fails with the reason and the request gets a 503."""
    try:
        enqueue(KIND_TASKS[job.kind], job.id, queue=job.queue)
    except Exception as exc:  # broker unreachable: say so instead of leaving a silent pending job
        job.state, job.error, job.finished_at = "failed", f"could not enqueue: {exc}", utcnow()
        session.commit()
        err = ServiceError(f"job queue unavailable ({type(exc).__name__}); retry later")
        err.status_code = 503
        raise err from exc
    _record_send(session, job.id)
    session.commit()


def send_job(job_id: str) -> None:
    """Publish a job's task again (the reaper: lost messages, dead workers) and count the send.
    Safe to repeat: a task claims its job conditionally, so a duplicate message does nothing."""
    with session_scope() as s:
        job = s.get(Job, job_id)
        if job is None or job.kind not in KIND_TASKS:
            return
        enqueue(KIND_TASKS[job.kind], job.id, queue=job.queue)
        _record_send(s, job.id)


def queue_depth(queue: str) -> int | None:
    """Messages waiting in ``queue`` on the broker (None when the broker cannot say)."""
    try:
        with sender().connection_for_write() as conn:
            ok = conn.default_channel.queue_declare(queue=queue, passive=True)
            return int(ok.message_count)
    except Exception:
        return None


def declare_queues() -> list[str]:
    """Create the exchanges and queues of every task once (``serve`` does this before it starts
    the worker and beat, so they never race to create the same queue row)."""
    queues = {q for q in TASK_QUEUES.values() if q != MAINTENANCE}
    names = sorted({*queues, "default", "gpu", get_settings().maintenance_queue})
    with sender().connection_for_write() as conn:
        channel = conn.default_channel
        for name in names:
            Queue(name, Exchange(name), routing_key=name)(channel).declare()
    return names


def broker_ok(timeout: float = 2.0) -> str | None:
    """None when the broker answers, else the reason."""
    try:
        with sender().connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=timeout)
            conn.default_channel  # noqa: B018 - opens a channel: the transport really answers
        return None
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
