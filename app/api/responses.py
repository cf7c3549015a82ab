"""Responses the routes share: the 202 "job accepted" answer and an export as a download.

Shared web plumbing: the API routes and the dashboard import it; it imports no route module.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy.orm import Session

from app.schemas.jobs import JobAccepted
from app.services import exports
from app.services import jobs as job_service
from app.services.dispatch import enqueue_job
from app.services.errors import NotFound
from app.store.models import Job


def accepted(
    session: Session,
    job: Job | Sequence[Job],
    model: type[BaseModel] = JobAccepted,
    *,
    location: str | bool = True,
    **fields: Any,
) -> JSONResponse:
    """Enqueue the committed job(s), then answer 202 with ``model``: ``fields`` plus the job and
    its URL (one job) or ``jobs`` (several). ``Location``: the job's URL (True), another URL, or
    none (False). ``fields`` are read after the enqueue (ORM rows are validated by ``model``)."""
    if isinstance(job, Job):
        enqueue_job(session, job)
        url = f"/v1/jobs/{job.id}"
        body = fields | {"job": job_service.job_public(job), "job_url": url}
    else:
        for one in job:
            enqueue_job(session, one)
        url, body = "", fields | {"jobs": [job_service.job_public(j) for j in job]}
    headers = {"Location": url if location is True else location} if location else None
    return JSONResponse(
        model.model_validate(body).model_dump(mode="json"), status_code=202, headers=headers
    )


def bundle_response(spec: exports.MixtureExport, format: str, part: str | None) -> Response:
    """The export as a download: the one file, the named ``part``, or a zip of all files."""
    bundle = exports.render(format, spec)
    headers = {"Cache-Control": "no-store"}
    if bundle.notes:  # what the trainer will not enforce (Megatron's epoch caps)
        headers["X-Mixopt-Notes"] = exports.notes_header(bundle)
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
    return Response(
        bundle.files[name].encode("utf-8"), media_type=bundle.media_type(name), headers=headers
    )
