"""Any mixture as the file a trainer loads: a recommendation, a baseline, an online session.

``?format=`` one of :data:`app.services.exports.FORMATS`; formats made of several files
(``olmo-core``: YAML + script, ``megatron``: data-args + per-split JSON) answer a zip, or one
file with ``?part=<file name>``. What the project lacks for a format is a 422 naming the field.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query, Response

from app.api.deps import CurrentToken, IdPath, SessionDep
from app.services import exports, projects
from app.services.errors import NotFound

router = APIRouter(prefix="/v1/projects/{project_id}", tags=["exports"])

Format = Annotated[Literal["json", "olmo-core", "megatron", "hf", "levanter", "regmix", "olmix"],
                   Query(description="the trainer or tool to write for")]
Part = Annotated[str | None, Query(max_length=200, description="one file of a multi-file export")]
_RESPONSES = {200: {"content": {"application/json": {}, "application/yaml": {}, "text/x-python": {},
                                "text/plain": {}, "application/zip": {}}}}


def bundle_response(spec: exports.MixtureExport, format: str, part: str | None) -> Response:
    """The export as a download: the one file, the named ``part``, or a zip of all files."""
    bundle = exports.render(format, spec)
    headers = {"Cache-Control": "no-store"}
    if part is not None:
        if part not in bundle.files:
            raise NotFound(f"part {part!r} not found; the {format} export has {list(bundle.files)}")
        name = part
    elif len(bundle.files) == 1:
        name = next(iter(bundle.files))
    else:
        headers["Content-Disposition"] = f'attachment; filename="{spec.slug}-{format}.zip"'
        return Response(bundle.zip_bytes(), media_type="application/zip", headers=headers)
    headers["Content-Disposition"] = f'attachment; filename="{name}"'
    return Response(bundle.files[name].encode("utf-8"), media_type=bundle.media_type(name), headers=headers)


@router.get("/recommendations/{rec_id}/export", responses=_RESPONSES)
def export_recommendation(project_id: IdPath, rec_id: IdPath, session: SessionDep, token: CurrentToken,
                          format: Format = "json", part: Part = None) -> Response:
    """A recommendation for a trainer, with the scale and constraints it was made for."""
    project = projects.get_project(session, token, project_id)
    return bundle_response(exports.for_recommendation(session, project, rec_id), format, part)


@router.get("/baselines/{name}/export", responses=_RESPONSES)
def export_baseline(project_id: IdPath, name: Annotated[str, Path(max_length=200)], session: SessionDep,
                    token: CurrentToken, format: Format = "json", part: Part = None) -> Response:
    """A baseline (natural, uniform, temperature, UniMax, entropy) for a trainer."""
    project = projects.get_project(session, token, project_id)
    return bundle_response(exports.for_baseline(project, name), format, part)


@router.get("/online-sessions/{session_id}/export", responses=_RESPONSES)
def export_online_session(project_id: IdPath, session_id: IdPath, session: SessionDep, token: CurrentToken,
                          format: Format = "json", part: Part = None,
                          weights: Literal["current", "final", "trajectory"] = "current") -> Response:
    """An online session's current or final weights, or its whole trajectory (Levanter stages)."""
    project = projects.get_project(session, token, project_id)
    return bundle_response(exports.for_online_session(session, project, session_id, weights), format, part)
