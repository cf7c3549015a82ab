from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse

from app.api.deps import CurrentToken, IdPath, Offset, SessionDep
from app.schemas.fits import (
    BaselinesPublic,
    FitAccepted,
    FitCreate,
    FitPublic,
    FitsPublic,
    JobAccepted,
    PredictRequest,
    PredictResponse,
    RecommendationCreate,
    RecommendationPublic,
    RecommendationsPublic,
    SuggestionCreate,
)
from app.services import fits as svc
from app.services import jobs as job_service
from app.services import projects
from app.services.dispatch import enqueue_job

router = APIRouter(prefix="/v1/projects/{project_id}", tags=["fits"])
estimators_router = APIRouter(prefix="/v1/estimators", tags=["fits"])


@estimators_router.get("")
def list_estimators(token: CurrentToken) -> dict[str, Any]:
    """Registered estimators with their parameters (type, default, meaning, range) and how many
    runs each needs (``auto`` fits all applicable ones and keeps the best)."""
    rows = svc.estimator_catalogue()
    return {"data": [r["name"] for r in rows], "count": len(rows), "estimators": rows}


def _accepted(session, job, body: dict[str, Any]) -> JSONResponse:
    enqueue_job(session, job)
    job_public = job_service.job_public(job)
    return JSONResponse(
        FitAccepted.model_validate(body | {"job": job_public, "job_url": f"/v1/jobs/{job.id}"}).model_dump(mode="json")
        if "fit" in body else
        JobAccepted.model_validate({"job": job_public, "job_url": f"/v1/jobs/{job.id}"}).model_dump(mode="json"),
        status_code=202, headers={"Location": f"/v1/jobs/{job.id}"})


@router.post("/fits", status_code=202, response_model=FitAccepted)
def create_fit(project_id: IdPath, data: FitCreate, session: SessionDep, token: CurrentToken) -> JSONResponse:
    """Fit an estimator on the project's runs, in a worker: 202 with the job to poll."""
    project = projects.get_project(session, token, project_id, write=True)
    fit, job = svc.create_fit(session, project, data)
    return _accepted(session, job, {"fit": FitPublic.model_validate(fit).model_dump(mode="json")})


@router.get("/fits", response_model=FitsPublic)
def list_fits(project_id: IdPath, session: SessionDep, token: CurrentToken,
              offset: Offset = 0, limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> dict:
    rows, count = svc.list_fits(session, projects.get_project(session, token, project_id), limit, offset)
    return {"data": rows, "count": count}


@router.get("/fits/{fit_id}", response_model=FitPublic)
def get_fit(project_id: IdPath, fit_id: IdPath, session: SessionDep, token: CurrentToken) -> Any:
    return svc.get_fit(session, projects.get_project(session, token, project_id), fit_id)


@router.post("/fits/{fit_id}/predict", response_model=PredictResponse)
def predict(project_id: IdPath, fit_id: IdPath, data: PredictRequest, session: SessionDep, token: CurrentToken) -> dict:
    """Predicted losses for mixtures, from the stored parameters (answers in the request)."""
    fit = svc.get_fit(session, projects.get_project(session, token, project_id), fit_id)
    return svc.predict(fit, data.mixtures, normalize=data.normalize,
                       target_scale=data.target_scale.given() if data.target_scale is not None else None)


@router.post("/recommendations", status_code=202, response_model=JobAccepted)
def create_recommendation(project_id: IdPath, data: RecommendationCreate, session: SessionDep,
                          token: CurrentToken) -> JSONResponse:
    """Recommend a mixture under the project's (or the given) constraints, in a worker."""
    project = projects.get_project(session, token, project_id, write=True)
    return _accepted(session, svc.create_recommendation_job(session, project, data), {})


@router.get("/recommendations", response_model=RecommendationsPublic)
def list_recommendations(project_id: IdPath, session: SessionDep, token: CurrentToken,
                         offset: Offset = 0,
                         limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> dict:
    rows, count = svc.list_recommendations(session, projects.get_project(session, token, project_id), limit, offset)
    return {"data": rows, "count": count}


@router.get("/recommendations/{rec_id}", response_model=RecommendationPublic)
def get_recommendation(project_id: IdPath, rec_id: IdPath, session: SessionDep, token: CurrentToken) -> Any:
    return svc.get_recommendation(session, projects.get_project(session, token, project_id), rec_id)


@router.get("/baselines", response_model=BaselinesPublic)
def baselines(project_id: IdPath, session: SessionDep, token: CurrentToken) -> dict:
    """Natural, uniform, temperature-scaled and UniMax mixtures (no runs needed)."""
    return svc.baselines(projects.get_project(session, token, project_id))


@router.post("/suggestions", status_code=202, response_model=JobAccepted)
def create_suggestions(project_id: IdPath, data: SuggestionCreate, session: SessionDep,
                       token: CurrentToken) -> JSONResponse:
    """Propose the next proxy runs (planned runs): a RegMix swarm first, then where the
    estimators are most uncertain or most promising."""
    project = projects.get_project(session, token, project_id, write=True)
    return _accepted(session, svc.create_suggestion_job(session, project, data), {})
