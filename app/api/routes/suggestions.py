"""Suggestions: the next proxy runs to train, planned in a worker. Tagged ``fits``, as before."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from app.api.deps import CurrentToken, ProjectRoute, SessionDep, WritableProjectDep
from app.api.responses import accepted
from app.schemas.jobs import JobAccepted
from app.schemas.suggestions import SuggestionCreate
from app.services import suggestions as svc

router = APIRouter(prefix="/v1/projects/{project_id}", tags=["fits"], route_class=ProjectRoute)


@router.post("/suggestions", status_code=202, response_model=JobAccepted)
def create_suggestions(
    project: WritableProjectDep, data: SuggestionCreate, session: SessionDep, token: CurrentToken
) -> JSONResponse:
    """Propose the next proxy runs (planned runs): a RegMix swarm first, then where the
    estimators are most uncertain or most promising."""
    return accepted(session, svc.create_suggestion_job(session, project, data))
