"""A project's domains: versioned domain sets (change the domains, read every version) and
ingestion of the domains' data sources."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from app.api.deps import CurrentToken, ProjectDep, ProjectRoute, SessionDep, WritableProjectDep
from app.api.responses import accepted
from app.schemas.domains import (
    DomainChanges,
    DomainSetPublic,
    DomainSetsPublic,
    IngestAccepted,
)
from app.services import domains as svc
from app.services import swarms

#: tags per route: domain sets, and ingestion (a training job)
router = APIRouter(prefix="/v1/projects/{project_id}", route_class=ProjectRoute)


@router.post(
    "/domain-changes", status_code=201, response_model=DomainSetPublic, tags=["domain sets"]
)
def change_domains(
    project: WritableProjectDep, data: DomainChanges, session: SessionDep, token: CurrentToken
) -> dict:
    """Add, remove, split or merge domains: a new version of the domain set. Runs keep the
    version they were stored on (their mixtures stay readable); new runs use the new set."""
    row = svc.apply_changes(session, project, data, token)
    return svc.set_public(session, project, row)


@router.get("/domain-sets", response_model=DomainSetsPublic, tags=["domain sets"])
def list_domain_sets(project: ProjectDep, session: SessionDep, token: CurrentToken) -> dict:
    """Every version of the domain set: its domains, what changed, when, and how many runs were
    stored on it; ``history`` gives each domain's first and last version."""
    return svc.list_sets(session, project)


@router.post("/domains/ingest", status_code=202, response_model=IngestAccepted, tags=["training"])
def ingest_domains(
    project: WritableProjectDep, session: SessionDep, token: CurrentToken
) -> JSONResponse:
    """Tokenise every domain's data source into cached shards and record measured token counts."""
    return accepted(
        session, swarms.create_ingest_job(session, project), IngestAccepted, location=False
    )
