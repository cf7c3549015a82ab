"""Versioned domain sets: change a project's domains (a new version) and read every version."""

from __future__ import annotations

from fastapi import APIRouter

from app.api.deps import CurrentToken, IdPath, SessionDep
from app.schemas.domain_sets import DomainChanges, DomainSetPublic, DomainSetsPublic
from app.services import domain_sets as svc
from app.services import projects as project_service

router = APIRouter(prefix="/v1/projects", tags=["domain sets"])


@router.post("/{project_id}/domain-changes", status_code=201, response_model=DomainSetPublic)
def change_domains(project_id: IdPath, data: DomainChanges, session: SessionDep, token: CurrentToken) -> dict:
    """Add, remove, split or merge domains: a new version of the domain set. Runs keep the
    version they were stored on (their mixtures stay readable); new runs use the new set."""
    project = project_service.get_project(session, token, project_id, write=True)
    row = svc.apply_changes(session, project, data, token)
    return svc.set_public(session, project, row)


@router.get("/{project_id}/domain-sets", response_model=DomainSetsPublic)
def list_domain_sets(project_id: IdPath, session: SessionDep, token: CurrentToken) -> dict:
    """Every version of the domain set: its domains, what changed, when, and how many runs were
    stored on it; ``history`` gives each domain's first and last version."""
    return svc.list_sets(session, project_service.get_project(session, token, project_id))
