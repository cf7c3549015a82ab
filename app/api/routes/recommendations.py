"""Recommendations: a mixture recommended from a fit under constraints (in a worker); the
baselines a recommendation is compared with. Tagged ``fits`` in the document, as before."""

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
from app.schemas.jobs import JobAccepted
from app.schemas.recommendations import (
    BaselinesPublic,
    RecommendationCreate,
    RecommendationPublic,
    RecommendationsPublic,
)
from app.services import recommendations as svc

router = APIRouter(prefix="/v1/projects/{project_id}", tags=["fits"], route_class=ProjectRoute)


@router.post("/recommendations", status_code=202, response_model=JobAccepted)
def create_recommendation(
    project: WritableProjectDep,
    data: RecommendationCreate,
    session: SessionDep,
    token: CurrentToken,
) -> JSONResponse:
    """Recommend a mixture under the project's (or the given) constraints, in a worker."""
    return accepted(session, svc.create_recommendation_job(session, project, data))


@router.get("/recommendations", response_model=RecommendationsPublic)
def list_recommendations(
    project: ProjectDep,
    session: SessionDep,
    token: CurrentToken,
    offset: Offset = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict:
    rows, count = svc.list_recommendations(session, project, limit, offset)
    return {"data": rows, "count": count}


@router.get("/recommendations/{rec_id}", response_model=RecommendationPublic)
def get_recommendation(
    project: ProjectDep, rec_id: IdPath, session: SessionDep, token: CurrentToken
) -> Any:
    return svc.get_recommendation(session, project, rec_id)


@router.get("/baselines", response_model=BaselinesPublic)
def baselines(project: ProjectDep, session: SessionDep, token: CurrentToken) -> dict:
    """Natural, uniform, temperature-scaled and UniMax mixtures (no runs needed)."""
    return svc.baselines(project)
