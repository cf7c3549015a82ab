"""Projects: create, list, read, change and delete."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from app.api.deps import (
    CurrentToken,
    Offset,
    ProjectDep,
    ProjectRoute,
    SessionDep,
    WritableProjectDep,
)
from app.schemas.projects import ProjectCreate, ProjectPublic, ProjectsPublic, ProjectUpdate
from app.services import projects as svc

router = APIRouter(prefix="/v1/projects", tags=["projects"], route_class=ProjectRoute)


@router.post("", status_code=201, response_model=ProjectPublic)
def create_project(data: ProjectCreate, session: SessionDep, token: CurrentToken) -> dict:
    return svc.project_public(svc.create_project(session, token, data))


@router.get("", response_model=ProjectsPublic)
def list_projects(
    session: SessionDep,
    token: CurrentToken,
    offset: Offset = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict:
    rows, count = svc.list_projects(session, token, offset=offset, limit=limit)
    counts = svc.run_counts(session, [p.id for p in rows])
    return {"data": [svc.project_public(p, counts.get(p.id, 0)) for p in rows], "count": count}


@router.get("/{project_id}", response_model=ProjectPublic)
def get_project(project: ProjectDep, session: SessionDep, token: CurrentToken) -> dict:
    return svc.project_public(project, svc.run_counts(session, [project.id]).get(project.id, 0))


@router.patch("/{project_id}", response_model=ProjectPublic)
def update_project(
    project: WritableProjectDep, data: ProjectUpdate, session: SessionDep, token: CurrentToken
) -> dict:
    project = svc.update_project(session, project, data, token)
    return svc.project_public(project, svc.run_counts(session, [project.id]).get(project.id, 0))


@router.delete("/{project_id}", status_code=204)
def delete_project(
    project: WritableProjectDep, session: SessionDep, token: CurrentToken
) -> Response:
    svc.delete_project(session, project)
    return Response(status_code=204)
