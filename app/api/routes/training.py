from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from app.api.deps import CurrentToken, IdPath, SessionDep
from app.schemas.swarms import IngestAccepted, SwarmAccepted, SwarmCreate
from app.services import jobs as job_service
from app.services import projects, swarms
from app.services.dispatch import enqueue_job

router = APIRouter(prefix="/v1/projects/{project_id}", tags=["training"])


@router.post("/swarms", status_code=202, response_model=SwarmAccepted)
def create_swarm(project_id: IdPath, data: SwarmCreate, session: SessionDep, token: CurrentToken) -> JSONResponse:
    """Design a swarm (RegMix Dirichlet around the token prior, or space-filling, or given
    mixtures) and train one proxy model per run on the workers' ``gpu`` queue."""
    project = projects.get_project(session, token, project_id, write=True)
    tag, runs, jobs = swarms.create_swarm(session, project, data)
    for job in jobs:
        enqueue_job(session, job)
    body = {"tag": tag, "run_ids": [r.id for r in runs], "jobs": [job_service.job_public(j) for j in jobs]}
    return JSONResponse(SwarmAccepted.model_validate(body).model_dump(mode="json"), status_code=202)


@router.post("/domains/ingest", status_code=202, response_model=IngestAccepted)
def ingest_domains(project_id: IdPath, session: SessionDep, token: CurrentToken) -> JSONResponse:
    """Tokenise every domain's data source into cached shards and record measured token counts."""
    project = projects.get_project(session, token, project_id, write=True)
    job = swarms.create_ingest_job(session, project)
    enqueue_job(session, job)
    body = {"job": job_service.job_public(job), "job_url": f"/v1/jobs/{job.id}"}
    return JSONResponse(IngestAccepted.model_validate(body).model_dump(mode="json"), status_code=202)
