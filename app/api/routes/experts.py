"""Domain experts (Mixture of Data Experts): train them on the workers, upload their
probabilities, list them with their loss on every validation domain."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Path, Query, Response
from fastapi.responses import JSONResponse

from app.api.deps import CurrentToken, ProjectDep, ProjectRoute, SessionDep, WritableProjectDep
from app.api.responses import accepted
from app.schemas.experts import ExpertPublic, ExpertsAccepted, ExpertsCreate, ExpertsPublic
from app.services import experts as svc

router = APIRouter(prefix="/v1/projects/{project_id}", tags=["experts"], route_class=ProjectRoute)

#: a domain's name in a path (names never become file paths: app.services.experts)
DomainPath = Annotated[str, Path(min_length=1, max_length=200)]


@router.post("/experts", status_code=202, response_model=ExpertsAccepted)
def train_experts(
    project: WritableProjectDep, data: ExpertsCreate, session: SessionDep, token: CurrentToken
) -> JSONResponse:
    """Train one expert per domain (a one-hot mixture; the swarm's preset and budget with
    ``swarm``) in one resumable job on the workers' ``gpu`` queue; each expert's probabilities
    of the observed next tokens of every validation domain are then stored."""
    rows, job = svc.create_training(session, project, data)
    return accepted(
        session,
        job,
        ExpertsAccepted,
        location=f"/v1/projects/{project.id}/experts",
        experts=[svc.expert_public(project, e) for e in rows],
    )


@router.get("/experts", response_model=ExpertsPublic)
def list_experts(project: ProjectDep, session: SessionDep, token: CurrentToken) -> dict:
    """The experts' table: domain, status, and loss on each validation domain."""
    rows = svc.list_experts(session, project)
    return {
        "data": [svc.expert_public(project, e) for e in rows],
        "count": len(rows),
        "domains": [d.name for d in project.domains],
    }


@router.get("/experts/{domain}", response_model=ExpertPublic)
def get_expert(
    project: ProjectDep, domain: DomainPath, session: SessionDep, token: CurrentToken
) -> Any:
    return svc.expert_public(project, svc.get_expert(session, project, domain))


@router.put(
    "/experts/{domain}/probs/{val_domain}",
    response_model=ExpertPublic,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
            },
        }
    },
)
def upload_expert_probs(
    project: WritableProjectDep,
    domain: DomainPath,
    val_domain: DomainPath,
    session: SessionDep,
    token: CurrentToken,
    body: Annotated[bytes, Body(media_type="application/octet-stream")] = b"",
    block_size: Annotated[int | None, Query(ge=8, le=8192)] = None,
    n_windows: Annotated[int | None, Query(ge=1, le=2**20)] = None,
) -> Any:
    """Store an externally trained expert's probability of every observed next token of
    ``val_domain`` (a ``.npy`` body, float16 or float32, 1-D, ``predicted_token_count`` values
    in (0, 1]; stored as float16). ``block_size`` and ``n_windows``: the evaluation windows the
    values are over (default 128 x 64, the trainer's defaults). A refused file stores nothing."""
    e = svc.upload_probs(
        session, project, domain, val_domain, body, block_size=block_size, n_windows=n_windows
    )
    return svc.expert_public(project, e)


@router.delete("/experts/{domain}", status_code=204)
def delete_expert(
    project: WritableProjectDep, domain: DomainPath, session: SessionDep, token: CurrentToken
) -> Response:
    svc.delete_expert(session, project, domain)
    return Response(status_code=204)
