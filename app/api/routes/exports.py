"""Any mixture as the file a trainer loads: a recommendation, a baseline, an online session.

``?format=`` one of :data:`app.services.exports.FORMATS`; formats made of several files
(``olmo-core``: YAML + script, ``megatron``: data-args + per-split JSON) answer a zip, or one
file with ``?part=<file name>``. What the project lacks for a format is a 422 naming the field.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query, Response

from app.api.deps import CurrentToken, IdPath, ProjectDep, ProjectRoute, SessionDep
from app.api.responses import bundle_response
from app.services import exports

router = APIRouter(prefix="/v1/projects/{project_id}", tags=["exports"], route_class=ProjectRoute)

#: the formats of the writers' registry (``mixopt.exports.WRITERS``), in its order
Format = Annotated[
    Literal[exports.FORMATS],  # type: ignore[valid-type]
    Query(description="the trainer or tool to write for"),
]
Part = Annotated[str | None, Query(max_length=200, description="one file of a multi-file export")]
_RESPONSES = {
    200: {
        "content": {
            "application/json": {},
            "application/yaml": {},
            "text/x-python": {},
            "text/plain": {},
            "application/zip": {},
        }
    }
}


@router.get("/recommendations/{rec_id}/export", responses=_RESPONSES)
def export_recommendation(
    project: ProjectDep,
    rec_id: IdPath,
    session: SessionDep,
    token: CurrentToken,
    format: Format = "json",
    part: Part = None,
) -> Response:
    """A recommendation for a trainer, with the scale and constraints it was made for."""
    return bundle_response(exports.for_recommendation(session, project, rec_id), format, part)


@router.get("/baselines/{name}/export", responses=_RESPONSES)
def export_baseline(
    project: ProjectDep,
    name: Annotated[str, Path(max_length=200)],
    session: SessionDep,
    token: CurrentToken,
    format: Format = "json",
    part: Part = None,
) -> Response:
    """A baseline (natural, uniform, temperature, UniMax, entropy) for a trainer."""
    return bundle_response(exports.for_baseline(project, name), format, part)


@router.get("/online-sessions/{session_id}/export", responses=_RESPONSES)
def export_online_session(
    project: ProjectDep,
    session_id: IdPath,
    session: SessionDep,
    token: CurrentToken,
    format: Format = "json",
    part: Part = None,
    weights: Literal["current", "final", "trajectory"] = "current",
) -> Response:
    """An online session's current or final weights, or its whole trajectory (Levanter stages)."""
    spec = exports.for_online_session(session, project, session_id, weights)
    return bundle_response(spec, format, part)
