"""Jobs: asynchronous work tracked in the database (state, progress, errors, timings)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.core.config import get_settings
from app.core.logs import current_request_id
from app.services import tokens as token_service
from app.services.errors import BadRequest, Conflict, NotFound
from app.store.models import ApiToken, Job, Run, TokenProject, utcnow
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


#: kind of the job that plans the later rounds of a rounds swarm (app.services.swarms)
ROUNDS_KIND = "swarm_rounds"
#: a run in one of these is done with (a rounds swarm's round waits for the others)
RUN_DONE = ("succeeded", "failed", "cancelled")


def request_cancel(session: Session, job: Job) -> Job:
    """Ask a job to stop: a pending one is cancelled at once (a training job's run with it), a
    running one at its next check. Cancelling a rounds swarm's job also cancels the training jobs
    of its current round, so no run it planned keeps training for a swarm that has stopped."""
    if job.state in FINAL_STATES:
        raise Conflict(f"job {job.id} already {job.state}")
    _cancel(session, job)
    if job.kind == ROUNDS_KIND:
        rounds = (job.params or {}).get("rounds") or [{}]
        run_ids = [int(r) for r in rounds[-1].get("run_ids", [])]
        children = session.scalars(
            select(Job)
            .join(Run, Run.job_id == Job.id)
            .where(Run.id.in_(run_ids), Job.state.not_in(FINAL_STATES))
        ).all()
        for child in children:
            _cancel(session, child, f"cancelled with its rounds swarm (job {job.id})")
    session.commit()
    return job


def _cancel(session: Session, job: Job, why: str = "") -> None:
    if not job.cancel_requested:
        job.cancel_requested, job.cancel_requested_at = True, utcnow()
    if job.state != "pending":
        return  # a running job stops at its next check (workers.tasks.common)
    job.state, job.finished_at = "cancelled", utcnow()
    if why:
        job.message = why
    elif job.started_at is not None:  # a rounds job waiting for its round's runs
        job.message = "cancelled while waiting"
    else:
        job.message = "cancelled before it started"
    if job.kind == "train":  # its run would otherwise stay queued: no worker will take the job
        run_id = (job.params or {}).get("run_id")
        run = session.get(Run, run_id) if isinstance(run_id, int) else None
        if run is not None and run.status not in RUN_DONE:
            run.status, run.error = "cancelled", job.message


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
