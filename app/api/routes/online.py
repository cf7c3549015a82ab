"""Online sessions: a training run steered while it trains (losses in, weights out)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Response
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session

from app.api.deps import (
    CurrentToken,
    IdPath,
    ProjectDep,
    ProjectRoute,
    SessionDep,
    WritableProjectDep,
)
from app.api.responses import accepted
from app.schemas.online import (
    HistoryPublic,
    ObservationsAccepted,
    ObservationsCreate,
    OnlineSessionCreate,
    OnlineSessionPublic,
    OnlineSessionsPublic,
    OnlineSessionUpdate,
    RemixAccepted,
    WeightsPublic,
)
from app.services import online as svc
from app.store.models import OnlineSession

router = APIRouter(
    prefix="/v1/projects/{project_id}/online-sessions", tags=["online"], route_class=ProjectRoute
)


def _public(session: Session, row: OnlineSession) -> dict[str, Any]:
    """The session as the API shows it, with its count of reports not yet re-mixed."""
    pending = svc.pending_count(session, row.id)
    return OnlineSessionPublic.model_validate(row).model_dump() | {"pending_observations": pending}


@router.post("", status_code=201, response_model=OnlineSessionPublic)
def create_session(
    project: WritableProjectDep, data: OnlineSessionCreate, session: SessionDep, token: CurrentToken
) -> dict:
    """Start steering a training run: the trainer reports losses, beat re-mixes on the schedule."""
    return _public(session, svc.create_session(session, project, data))


@router.get("", response_model=OnlineSessionsPublic)
def list_sessions(project: ProjectDep, session: SessionDep, token: CurrentToken) -> dict:
    rows = svc.list_sessions(session, project)
    return {"data": [_public(session, r) for r in rows], "count": len(rows)}


@router.get("/{session_id}", response_model=OnlineSessionPublic)
def get_session(
    project: ProjectDep, session_id: IdPath, session: SessionDep, token: CurrentToken
) -> dict:
    return _public(session, svc.get_session_row(session, project, session_id))


@router.patch("/{session_id}", response_model=OnlineSessionPublic)
def update_session(
    project: WritableProjectDep,
    session_id: IdPath,
    data: OnlineSessionUpdate,
    session: SessionDep,
    token: CurrentToken,
) -> dict:
    row = svc.get_session_row(session, project, session_id)
    return _public(session, svc.update_session(session, row, data))


@router.post("/{session_id}/observations", response_model=ObservationsAccepted)
def add_observations(
    project: WritableProjectDep,
    session_id: IdPath,
    data: ObservationsCreate,
    session: SessionDep,
    token: CurrentToken,
) -> dict:
    """Report per-domain losses at training steps; idempotent per step, any order."""
    row = svc.get_session_row(session, project, session_id)
    return svc.add_observations(session, row, data.observations)


@router.get(
    "/{session_id}/weights",
    response_model=WeightsPublic,
    responses={304: {"description": "If-None-Match matched the current version"}},
)
def get_weights(
    project: ProjectDep,
    session_id: IdPath,
    session: SessionDep,
    token: CurrentToken,
    step: Annotated[
        int | None, Query(ge=0, description="also return the mixture for this step")
    ] = None,
    if_none_match: Annotated[str | None, Header()] = None,
) -> Response:
    """The current weights with their version (ETag); polling with If-None-Match is cheap."""
    row = svc.get_session_row(session, project, session_id)
    # with ?step the plan also depends on the reports not yet re-mixed
    etag = f'"s{row.id}-v{row.version}' + (
        f'-t{step}-p{svc.pending_count(session, row.id)}"' if step is not None else '"'
    )
    if if_none_match and etag in [t.strip() for t in if_none_match.split(",")]:
        return Response(status_code=304, headers={"ETag": etag})
    return JSONResponse(
        svc.weights_view(session, row, step), headers={"ETag": etag, "Cache-Control": "no-cache"}
    )


@router.get("/{session_id}/history", response_model=HistoryPublic)
def get_history(
    project: ProjectDep, session_id: IdPath, session: SessionDep, token: CurrentToken
) -> dict:
    return svc.history(session, svc.get_session_row(session, project, session_id))


@router.post("/{session_id}/remix", status_code=202)
def remix_now(
    project: WritableProjectDep, session_id: IdPath, session: SessionDep, token: CurrentToken
) -> dict:
    """Re-mix now instead of waiting for the schedule (a worker does it)."""
    row = svc.get_session_row(session, project, session_id)
    job = svc.create_remix_job(session, row)
    # a remix job like any other: the body carries it (what MixoptClient.remix reads) beside the
    # session_id/queued it always had; the document's schema (an object) is unchanged
    return accepted(session, job, RemixAccepted, session_id=row.id, queued=True)
