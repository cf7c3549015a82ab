"""Validation trainings: POST trains the mixtures with shared seeds (202 + job), GET reads the
paired comparison."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse

from app.api.deps import (
    CurrentToken,
    IdPath,
    Offset,
    ProjectDep,
    ProjectRoute,
    SessionDep,
    WritableProjectDep,
)
from app.api.responses import accepted
from app.schemas.validations import (
    ValidationAccepted,
    ValidationCreate,
    ValidationPublic,
    ValidationsPublic,
)
from app.services import validations as svc

router = APIRouter(
    prefix="/v1/projects/{project_id}", tags=["validations"], route_class=ProjectRoute
)


@router.post("/validations", status_code=202, response_model=ValidationAccepted)
def create_validation(
    project: WritableProjectDep, data: ValidationCreate, session: SessionDep, token: CurrentToken
) -> JSONResponse:
    """Train every mixture (a recommendation, a baseline or an explicit mixture) once per seed,
    with the same seeds, in a worker; the result is a paired comparison against the baselines."""
    v, job = svc.create_validation(session, project, data)
    return accepted(
        session,
        job,
        ValidationAccepted,
        validation=v,
        location=f"/v1/projects/{project.id}/validations/{v.id}",
    )


@router.get("/validations", response_model=ValidationsPublic)
def list_validations(
    project: ProjectDep,
    session: SessionDep,
    token: CurrentToken,
    offset: Offset = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict:
    rows, count = svc.list_validations(session, project, limit, offset)
    return {"data": rows, "count": count}


@router.get("/validations/{validation_id}", response_model=ValidationPublic)
def get_validation(
    project: ProjectDep, validation_id: IdPath, session: SessionDep, token: CurrentToken
) -> Any:
    return svc.get_validation(session, project, validation_id)
