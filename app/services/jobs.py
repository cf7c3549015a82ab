"""Jobs: asynchronous work tracked in the database (state, progress, errors, timings)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.core.config import get_settings
from app.core.logs import current_request_id
from app.services import tokens as token_service
from app.services.errors import BadRequest, Conflict, NotFound
from app.store.models import ApiToken, Job, TokenProject, utcnow
from mixopt.api_types import FINAL_STATES, STATES, job_state_filter


def get_job(session: Session, token: ApiToken, job_id: str) -> Job:
    if "\x00" in job_id:  # no id holds a NUL, and PostgreSQL refuses one in a query
        raise NotFound(f"job {job_id!r} not found", field="job_id")
    job = session.get(Job, job_id)
    if job is None:
        raise NotFound(f"job {job_id} not found", field="job_id")
    if job.project_id is None:
        if not token_service.is_admin(token):
            raise NotFound(f"job {job_id} not found", field="job_id")
    elif not token_service.can_see(token, job.project_id):
        raise NotFound(f"job {job_id} not found", field="job_id")
    return job


def list_jobs(
    session: Session,
    token: ApiToken,
    *,
    project_id: int | None = None,
    state: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> tuple[list[Job], int]:
    if state is not None:
        if state not in STATES:
            raise BadRequest(f"state must be one of {list(STATES)}", field="state")
        state = job_state_filter(state)  # one vocabulary with runs: queued = pending
    q = select(Job)
    if not token_service.is_admin(token):
        q = q.where(
            Job.project_id.in_(
                select(TokenProject.project_id).where(TokenProject.token_id == token.id)
            )
        )
    if project_id is not None:
        q = q.where(Job.project_id == project_id)
    if state:
        q = q.where(Job.state == state)
    count = session.scalar(select(func.count()).select_from(q.subquery())) or 0
    rows = list(
        session.scalars(q.order_by(Job.created_at.desc(), Job.id).offset(offset).limit(limit))
    )
    return rows, count


def create_job(
    session: Session,
    *,
    kind: str,
    project_id: int | None,
    params: dict[str, Any],
    queue: str | None = None,
) -> Job:
    """Add a pending job to the session (the caller commits, then enqueues); ``queue`` defaults
    to ``MIXOPT_JOB_QUEUE``."""
    queue = queue or get_settings().job_queue
    job = Job(
        kind=kind,
        project_id=project_id,
        params=params,
        queue=queue,
        state="pending",
        request_id=current_request_id(),
    )
    session.add(job)
    session.flush()
    return job


def request_cancel(session: Session, job: Job) -> Job:
    if job.state in FINAL_STATES:
        raise Conflict(f"job {job.id} already {job.state}")
    if not job.cancel_requested:
        job.cancel_requested, job.cancel_requested_at = True, utcnow()
    if job.state == "pending":
        job.state = "cancelled"
        job.finished_at = utcnow()
        job.message = "cancelled before it started"
    session.commit()
    return job


def job_public(job: Job) -> dict[str, Any]:
    duration = None
    if job.started_at is not None:
        end = job.finished_at or utcnow()
        start = job.started_at
        if end.tzinfo is None or start.tzinfo is None:  # SQLite returns naive datetimes
            end, start = end.replace(tzinfo=None), start.replace(tzinfo=None)
        duration = (end - start).total_seconds()
    return {
        c: getattr(job, c)
        for c in (
            "id",
            "project_id",
            "kind",
            "state",
            "progress",
            "message",
            "error",
            "params",
            "result",
            "queue",
            "attempts",
            "cancel_requested",
            "created_at",
            "started_at",
            "finished_at",
            "heartbeat_at",
            "sends",
            "sent_at",
            "request_id",
        )
    } | {"duration_s": duration}
