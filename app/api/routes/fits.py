"""Fits: an estimator fitted on a project's runs (in a worker), its predictions; the estimators."""

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
from app.schemas.fits import (
    FitAccepted,
    FitCreate,
    FitPublic,
    FitsPublic,
    FitUpdate,
    PredictRequest,
    PredictResponse,
)
from app.services import fits as svc

#: the ``tag`` filter of the fits and recommendations lists (a tag holds 100 characters)
TagQuery = Annotated[
    str | None, Query(min_length=1, max_length=100, description="only rows with this tag")
]

router = APIRouter(prefix="/v1/projects/{project_id}", tags=["fits"], route_class=ProjectRoute)
estimators_router = APIRouter(prefix="/v1/estimators", tags=["fits"])


@estimators_router.get("")
def list_estimators(token: CurrentToken) -> dict[str, Any]:
    """Registered estimators with their parameters (type, default, meaning, range) and how many
    runs each needs (``auto`` fits all applicable ones and keeps the best)."""
    rows = svc.estimator_catalogue()
    return {"data": [r["name"] for r in rows], "count": len(rows), "estimators": rows}


@router.post("/fits", status_code=202, response_model=FitAccepted)
def create_fit(
    project: WritableProjectDep, data: FitCreate, session: SessionDep, token: CurrentToken
) -> JSONResponse:
    """Fit an estimator on the project's runs, in a worker: 202 with the job to poll."""
    fit, job = svc.create_fit(session, project, data)
    return accepted(
        session, job, FitAccepted, fit=FitPublic.model_validate(fit).model_dump(mode="json")
    )


@router.get("/fits", response_model=FitsPublic)
def list_fits(
    project: ProjectDep,
    session: SessionDep,
    token: CurrentToken,
    offset: Offset = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    tag: TagQuery = None,
) -> dict:
    rows, count = svc.list_fits(session, project, limit, offset, tag)
    return {"data": rows, "count": count}


@router.get("/fits/{fit_id}", response_model=FitPublic)
def get_fit(project: ProjectDep, fit_id: IdPath, session: SessionDep, token: CurrentToken) -> Any:
    return svc.get_fit(session, project, fit_id)


@router.patch("/fits/{fit_id}", response_model=FitPublic)
def update_fit(
    project: WritableProjectDep,
    fit_id: IdPath,
    data: FitUpdate,
    session: SessionDep,
    token: CurrentToken,
) -> Any:
    """Change the fit's ``name`` and ``tags``."""
    return svc.update_fit(session, svc.get_fit(session, project, fit_id), data)


@router.delete("/fits/{fit_id}", status_code=204)
def delete_fit(
    project: WritableProjectDep, fit_id: IdPath, session: SessionDep, token: CurrentToken
) -> Response:
    """Delete a finished fit (409 while its job is pending or running); its recommendations
    stay, with ``fit_id`` null."""
    svc.delete_fit(session, svc.get_fit(session, project, fit_id))
    return Response(status_code=204)


@router.post("/fits/{fit_id}/predict", response_model=PredictResponse)
def predict(
    project: ProjectDep,
    fit_id: IdPath,
    data: PredictRequest,
    session: SessionDep,
    token: CurrentToken,
) -> dict:
    """Predicted losses for mixtures, from the stored parameters (answers in the request)."""
    fit = svc.get_fit(session, project, fit_id)
    scale = data.target_scale.given() if data.target_scale is not None else None
    return svc.predict(fit, data.mixtures, normalize=data.normalize, target_scale=scale)
