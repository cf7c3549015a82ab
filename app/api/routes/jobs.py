from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from app.api.deps import CurrentToken, Offset, SessionDep
from app.schemas.jobs import JobPublic, JobsPublic
from app.services import jobs as svc
from app.services import tokens as token_service
from mixopt.api_types import StateFilter

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])


@router.get("", response_model=JobsPublic)
def list_jobs(
    session: SessionDep,
    token: CurrentToken,
    project_id: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
    state: Annotated[
        StateFilter | None, Query(description="queued and pending are the same state")
    ] = None,
    offset: Offset = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict:
    rows, count = svc.list_jobs(
        session, token, project_id=project_id, state=state, limit=limit, offset=offset
    )
    return {"data": [svc.job_public(j) for j in rows], "count": count}


@router.get("/{job_id}", response_model=JobPublic)
def get_job(job_id: str, session: SessionDep, token: CurrentToken) -> dict:
    return svc.job_public(svc.get_job(session, token, job_id))


@router.post(
    "/{job_id}/cancel",
    response_model=JobPublic,
    responses={409: {"description": "the job already ended"}},
)
def cancel_job(job_id: str, session: SessionDep, token: CurrentToken) -> dict:
    """Ask a job to stop: a pending job is cancelled at once, a running one at its next check."""
    job = svc.get_job(session, token, job_id)
    token_service.require_write(token)
    return svc.job_public(svc.request_cancel(session, job))
