"""Swarms: proxy runs designed together and trained on the workers' ``gpu`` queue."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from app.api.deps import CurrentToken, ProjectRoute, SessionDep, WritableProjectDep
from app.api.responses import accepted
from app.schemas.swarms import SwarmAccepted, SwarmCreate
from app.services import jobs as job_service
from app.services import swarms
from app.services.dispatch import enqueue_job

router = APIRouter(prefix="/v1/projects/{project_id}", tags=["training"], route_class=ProjectRoute)


@router.post("/swarms", status_code=202, response_model=SwarmAccepted)
def create_swarm(
    project: WritableProjectDep, data: SwarmCreate, session: SessionDep, token: CurrentToken
) -> JSONResponse:
    """Design a swarm (RegMix Dirichlet around the token prior, or space-filling, or given
    mixtures) and train one proxy model per run on the workers' ``gpu`` queue; strategy
    ``rounds`` trains round 1 now and the ``rounds_job`` plans each later round."""
    tag, runs, jobs, rounds_job = swarms.create_swarm(session, project, data)
    extra = {}
    if rounds_job is not None:
        enqueue_job(session, rounds_job)
        extra["rounds_job"] = job_service.job_public(rounds_job)
    return accepted(
        session,
        jobs,
        SwarmAccepted,
        location=False,
        tag=tag,
        run_ids=[r.id for r in runs],
        **extra,
    )
