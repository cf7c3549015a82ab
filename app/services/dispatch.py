"""Send jobs to the workers by task name (the API never imports task code)."""

from __future__ import annotations

from functools import lru_cache

from celery import Celery

from app.core.celery_config import TASK_QUEUES, celery_config
from app.core.config import get_settings


@lru_cache
def sender() -> Celery:
    app = Celery("mixopt-api")
    app.conf.update(celery_config(get_settings()))
    return app


def enqueue(task: str, job_id: str, queue: str | None = None) -> None:
    """Publish ``task(job_id)``; call only after the job row is committed."""
    sender().send_task(task, args=[job_id], queue=queue or TASK_QUEUES.get(task, "default"))


def enqueue_task(task: str, *args: object) -> None:
    """Publish a task that is not tied to a job row (e.g. an online re-mix); 503 if the broker is down."""
    from app.services.errors import ServiceError

    try:
        sender().send_task(task, args=list(args), queue=TASK_QUEUES.get(task, "default"))
    except Exception as exc:
        err = ServiceError(f"job queue unavailable ({type(exc).__name__}); retry later")
        err.status_code = 503
        raise err from exc


KIND_TASKS = {"train": "mixopt.train_run", "fit": "mixopt.fit", "recommend": "mixopt.recommend",
              "suggest": "mixopt.suggest", "ingest": "mixopt.ingest_domain"}


def enqueue_job(session, job) -> None:
    """Publish the task for a committed job; if the broker is down, the job fails with the reason
    and the request gets a 503."""
    from app.services.errors import ServiceError
    from app.store.models import utcnow

    try:
        enqueue(KIND_TASKS[job.kind], job.id, queue=job.queue)
    except Exception as exc:  # broker unreachable: say so instead of leaving a silent pending job
        job.state, job.error, job.finished_at = "failed", f"could not enqueue: {exc}", utcnow()
        session.commit()
        err = ServiceError(f"job queue unavailable ({type(exc).__name__}); retry later")
        err.status_code = 503
        raise err from exc
