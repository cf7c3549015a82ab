"""Recommendations: a mixture recommended from a fit under constraints (in a worker); the
baselines a recommendation is compared with. Tagged ``fits`` in the document, as before."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
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
from app.api.routes.fits import TagQuery
from app.schemas.jobs import JobAccepted
from app.schemas.recommendations import (
    BaselinesPublic,
    RecommendationCreate,
    RecommendationPublic,
    RecommendationsPublic,
    RecommendationUpdate,
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
    tag: TagQuery = None,
) -> dict:
    rows, count = svc.list_recommendations(session, project, limit, offset, tag)
    return {"data": rows, "count": count}


@router.get("/recommendations/{rec_id}", response_model=RecommendationPublic)
def get_recommendation(
    project: ProjectDep, rec_id: IdPath, session: SessionDep, token: CurrentToken
) -> Any:
    return svc.get_recommendation(session, project, rec_id)


@router.patch("/recommendations/{rec_id}", response_model=RecommendationPublic)
def update_recommendation(
    project: WritableProjectDep,
    rec_id: IdPath,
    data: RecommendationUpdate,
    session: SessionDep,
    token: CurrentToken,
) -> Any:
    """Change the recommendation's ``name`` and ``tags``."""
    return svc.update_recommendation(
        session, svc.get_recommendation(session, project, rec_id), data
    )


@router.delete("/recommendations/{rec_id}", status_code=204)
def delete_recommendation(
    project: WritableProjectDep, rec_id: IdPath, session: SessionDep, token: CurrentToken
) -> Response:
    """Delete a recommendation."""
    svc.delete_recommendation(session, svc.get_recommendation(session, project, rec_id))
    return Response(status_code=204)


@router.get("/baselines", response_model=BaselinesPublic)
def baselines(project: ProjectDep, session: SessionDep, token: CurrentToken) -> dict:
    """Natural, uniform, temperature-scaled and UniMax mixtures (no runs needed)."""
    return svc.baselines(project)
