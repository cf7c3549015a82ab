"""Runs: add (one, a batch, CSV or JSON imports), list, export, read, change, loss curves."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from itertools import chain
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, File, Form, Query, Request, Response, UploadFile
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, TypeAdapter, ValidationError

from app.api.deps import (
    Count64Query,
    CurrentToken,
    IdempotencyKey,
    IdPath,
    ProjectDep,
    ProjectRoute,
    SessionDep,
    WritableProjectDep,
)
from app.schemas.runs import (
    CurvePointsCreate,
    CurvePublic,
    ImportResult,
    RunBatchCreate,
    RunCreate,
    RunPublic,
    RunsDocument,
    RunsPage,
    RunUpdate,
)
from app.services import idempotency, imports, projects, run_export, runs
from app.services.errors import Conflict, Invalid
from mixopt.api_types import StateFilter

router = APIRouter(prefix="/v1/projects/{project_id}/runs", tags=["runs"], route_class=ProjectRoute)

#: a metric name a query can sort or filter by (no control characters, quotes or backslashes:
#: it becomes a JSON path)
METRIC_NAME_PATTERN = r'^[^\x00-\x1f"\\]+$'
ORDER_BY_PATTERN = r'^-?(id|created_at|metric:[^\x00-\x1f"\\]{1,200})$'

_RUN_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "oneOf": [
                        {"$ref": "#/components/schemas/RunCreate"},
                        {"$ref": "#/components/schemas/RunBatchCreate"},
                    ]
                }
            }
        },
    }
}


#: runs validated per call in a batch: one call for 50,000 runs held the GIL for seconds (the
#: event loop, /healthz included, waited); between slices the GIL changes hands
VALIDATE_SLICE = 500


@functools.cache
def _runs_adapter(model: type[BaseModel]) -> TypeAdapter:
    return TypeAdapter(model.model_fields["runs"].annotation)


def _validate(model: type[BaseModel], payload: Any, prefix: tuple = ("body",)) -> Any:
    runs_ = payload.get("runs") if isinstance(payload, dict) else None
    if not isinstance(runs_, list) or len(runs_) <= VALIDATE_SLICE:
        try:
            return model.model_validate(payload)
        except ValidationError as exc:
            raise RequestValidationError(
                [{**e, "loc": prefix + tuple(e["loc"])} for e in exc.errors(include_url=False)]
            ) from None
    # the batch without its runs but the first, then the runs in slices: the same errors, with
    # the same locations, as one call
    errors, rest, head = [], [], None
    try:
        head = model.model_validate({**payload, "runs": runs_[:1]})
    except ValidationError as exc:
        errors += exc.errors(include_url=False)
    n_head = len(errors)
    adapter = _runs_adapter(model)
    whole_model = any(not e["loc"] for e in errors)  # a model validator refused it: only that
    for start in range(1, 1 if whole_model else len(runs_), VALIDATE_SLICE):
        try:
            rest += adapter.validate_python(runs_[start : start + VALIDATE_SLICE])
        except ValidationError as exc:
            errors += [
                {**e, "loc": ("runs", start + int(e["loc"][0]), *e["loc"][1:])}
                for e in exc.errors(include_url=False)
            ]
    if errors or head is None:
        # pydantic's order: fields as declared (the runs' errors in the runs field's place),
        # then unknown keys
        names = list(model.model_fields)
        after = names.index("runs") + 1
        cut = next(
            (
                k
                for k, e in enumerate(errors[:n_head])
                if not e["loc"] or e["loc"][0] not in names[:after]
            ),
            n_head,
        )
        errors = errors[:cut] + errors[n_head:] + errors[cut:n_head]
        raise RequestValidationError([{**e, "loc": prefix + tuple(e["loc"])} for e in errors])
    first: list[Any] = head.runs  # type: ignore[attr-defined]
    return head.model_copy(update={"runs": [*first, *rest]})


@router.post(
    "",
    status_code=201,
    openapi_extra=_RUN_BODY,
    responses={201: {"description": "the run (one run) or {count, ids} (a batch)"}},
)
def create_runs(
    project: WritableProjectDep,
    request: Request,
    session: SessionDep,
    token: CurrentToken,
    payload: Annotated[dict[str, Any], Body()],
    idempotency_key: IdempotencyKey = None,
    normalize: Annotated[
        bool, Query(description="accept sums within 1e-2 and rescale to 1")
    ] = False,
) -> JSONResponse:
    """Add one run, or a batch ``{"runs": [...]}`` (tens of thousands per request)."""
    key = idempotency.check_key(idempotency_key) if idempotency_key is not None else None
    batch = "runs" in payload
    if batch and isinstance(payload["runs"], list):
        runs.check_batch_size(len(payload["runs"]), "runs")
    specs = _validate(RunBatchCreate, payload).runs if batch else [_validate(RunCreate, payload)]

    def respond(ids: list[int]) -> tuple[int, Any]:
        if batch:
            return 201, {"count": len(ids), "ids": ids}
        return 201, jsonable_encoder(
            RunPublic.model_validate(runs.get_run(session, project, ids[0]))
        )

    status, body = runs.create_runs(
        session,
        project,
        specs,
        normalize=normalize,
        field="runs" if batch else "",
        token_id=token.id,
        idempotency_key=key,
        endpoint=f"POST {request.url.path}",
        fingerprint=idempotency.request_fingerprint(payload, {"normalize": normalize}),
        respond=respond,
    )
    return JSONResponse(body, status_code=status)


@router.get("", response_model=RunsPage)
def list_runs(
    project: ProjectDep,
    session: SessionDep,
    token: CurrentToken,
    cursor: Annotated[
        str | None, Query(max_length=2000, description="next_cursor of the previous page")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    order_by: Annotated[
        str,
        Query(
            max_length=210,
            pattern=ORDER_BY_PATTERN,
            description="id, created_at or metric:NAME (by a final metric; runs without it are "
            "left out), each optionally prefixed with - for descending order",
        ),
    ] = "id",
    status: Annotated[
        StateFilter | None, Query(description="queued and pending are the same state")
    ] = None,
    tag: str | None = None,
    origin: Literal["reported", "trained"] | None = None,
    model_params: Count64Query = None,
    train_tokens: Count64Query = None,
    train_steps: Annotated[int | None, Query(gt=0, le=2**31 - 1)] = None,
    metric: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=200,
            pattern=METRIC_NAME_PATTERN,
            description="only runs reporting this final metric (bounded by metric_min/max)",
        ),
    ] = None,
    metric_min: Annotated[float | None, Query(allow_inf_nan=False)] = None,
    metric_max: Annotated[float | None, Query(allow_inf_nan=False)] = None,
) -> dict:
    status = "queued" if status == "pending" else status
    cursor = cursor or None
    rows, count, next_cursor = runs.list_runs(
        session,
        project,
        cursor=cursor,
        limit=limit,
        order_by=order_by,
        status=status,
        tag=tag,
        origin=origin,
        model_params=model_params,
        train_tokens=train_tokens,
        train_steps=train_steps,
        metric=metric,
        metric_min=metric_min,
        metric_max=metric_max,
    )
    return {"data": rows, "count": count, "next_cursor": next_cursor}


@router.post("/import", status_code=201, response_model=ImportResult)
def import_runs(
    project: WritableProjectDep,
    request: Request,
    session: SessionDep,
    token: CurrentToken,
    mixtures: Annotated[UploadFile, File(description="regmix mixture CSV or olmix ratios.csv")],
    metrics: Annotated[UploadFile, File(description="regmix loss CSV or olmix metrics.csv")],
    format: Annotated[Literal["auto", "regmix", "olmix"], Form()] = "auto",
    normalize: Annotated[
        bool, Form(description="published CSVs are rounded: rescale sums within 1e-2")
    ] = True,
    on_duplicate: Annotated[Literal["error", "skip"], Form()] = "error",
    on_unmatched: Annotated[
        Literal["skip", "error"],
        Form(
            description="runs present in one file only: skip them (reported) or refuse the import"
        ),
    ] = "skip",
    tags: Annotated[str, Form(description="comma-separated tags for every imported run")] = "",
    model_params: Annotated[int | None, Form(gt=0, le=2**63 - 1)] = None,
    train_tokens: Annotated[int | None, Form(gt=0, le=2**63 - 1)] = None,
    train_steps: Annotated[int | None, Form(gt=0, le=2**31 - 1)] = None,
    model_params_q: Annotated[
        int | None,
        Query(
            alias="model_params",
            gt=0,
            le=2**63 - 1,
            description="the scale of every run in the files",
        ),
    ] = None,
    train_tokens_q: Annotated[int | None, Query(alias="train_tokens", gt=0, le=2**63 - 1)] = None,
    train_steps_q: Annotated[int | None, Query(alias="train_steps", gt=0, le=2**31 - 1)] = None,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    """Import runs from a pair of CSV files (RegMix or olmix layout) at one scale
    (``?model_params=N&train_tokens=T`` or ``train_steps=S``, as query or form fields).

    A project with no domains takes its domains from the mixture columns; otherwise the
    columns must name the project's domains. The duplicate key is the id (``index``/``run``)
    with the scale, so files of several scales that reuse ids live in one project; a row
    already imported at this scale is a 409 unless ``on_duplicate=skip``. Runs in only one
    of the files are reported in ``unmatched`` and skipped (``on_unmatched=error`` refuses).
    """
    scale = {}
    for label, form_value, query_value in (
        ("model_params", model_params, model_params_q),
        ("train_tokens", train_tokens, train_tokens_q),
        ("train_steps", train_steps, train_steps_q),
    ):
        if form_value is not None and query_value is not None and form_value != query_value:
            raise Invalid(
                f"{label} is given twice with different values ({query_value} and {form_value})",
                field=label,
            )
        scale[label] = query_value if query_value is not None else form_value
    model_params, train_tokens, train_steps = (
        scale["model_params"],
        scale["train_tokens"],
        scale["train_steps"],
    )
    texts = [
        imports.decode_csv(upload.file.read(), label)
        for label, upload in (("mixtures", mixtures), ("metrics", metrics))
    ]
    parsed = imports.parse_pair(texts[0], texts[1], format, on_unmatched=on_unmatched)
    runs.check_batch_size(len(parsed.rows), "mixtures")
    created_domains: list[str] = []
    if not project.domains:
        projects.add_domains(session, project, parsed.domains)
        created_domains = list(parsed.domains)
    tag_list = [t.strip() for t in tags.split(",") if t.strip()]
    dupes = imports.existing_keys(session, project, [r.external_id for r in parsed.rows], **scale)
    if dupes and on_duplicate == "error":
        session.rollback()
        at = ", ".join(f"{k}={v}" for k, v in scale.items() if v is not None) or "no scale"
        raise Conflict(
            f"{len(dupes)} runs were already imported at this scale "
            f"({at}; ids {sorted(dupes)[:5]}...); "
            "pass on_duplicate=skip (CLI: --on-duplicate skip) to import only new rows, "
            "or give the scale of these files (model_params, train_tokens or train_steps)",
            field="mixtures",
        )
    rows = [r for r in parsed.rows if r.external_id not in dupes]
    specs = [
        _validate(
            RunCreate,
            {
                "mixture": r.mixture,
                "metrics": r.metrics,
                "name": r.name,
                "external_id": r.external_id,
                "tags": tag_list,
                "model_params": model_params,
                "train_tokens": train_tokens,
                "train_steps": train_steps,
            },
            prefix=("mixtures", i),
        )
        for i, r in enumerate(rows)
    ]
    key = idempotency.check_key(idempotency_key) if idempotency_key is not None else None
    fingerprint = idempotency.request_fingerprint(
        texts,
        {
            "format": format,
            "normalize": normalize,
            "tags": tags,
            "on_duplicate": on_duplicate,
            "on_unmatched": on_unmatched,
            "model_params": model_params,
            "train_tokens": train_tokens,
            "train_steps": train_steps,
        },
    )

    def respond(ids: list[int]) -> tuple[int, Any]:
        return 201, {
            "format": parsed.format,
            "created": len(ids),
            "skipped": len(dupes),
            "domains_created": created_domains,
            "metrics": parsed.metrics,
            "ids": ids,
            "unmatched": parsed.unmatched,
            "ignored_columns": parsed.ignored_columns,
        }

    if not specs:
        session.rollback()
        return JSONResponse(respond([])[1], status_code=200)
    status, body = runs.create_runs(
        session,
        project,
        specs,
        normalize=normalize,
        field="rows",
        token_id=token.id,
        idempotency_key=key,
        endpoint=f"POST {request.url.path}",
        fingerprint=fingerprint,
        respond=respond,
    )
    return JSONResponse(body, status_code=status)


@router.post(
    "/import/json",
    status_code=201,
    response_model=ImportResult,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/RunsDocument"}}
            },
        }
    },
)
def import_runs_json(
    project: WritableProjectDep,
    request: Request,
    session: SessionDep,
    token: CurrentToken,
    payload: Annotated[dict[str, Any], Body()],
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    """Import a JSON export (``GET .../runs/export?format=json``): every run is created with the
    same mixture, metrics, scale, seed, tags, status, origin, details, error and loss curve. A
    project with no domains takes the document's domains."""
    if isinstance(payload.get("runs"), list):
        runs.check_batch_size(len(payload["runs"]), "runs")
    doc = _validate(RunsDocument, payload)
    created_domains: list[str] = []
    if not project.domains:
        if len(set(doc.domains)) != len(doc.domains):
            raise Invalid("domains are listed twice", field="domains")
        projects.add_domains(session, project, list(doc.domains))
        created_domains = list(doc.domains)
    key = idempotency.check_key(idempotency_key) if idempotency_key is not None else None
    curves = [r.curve for r in doc.runs]

    def respond(ids: list[int]) -> tuple[int, Any]:
        metric_names = list(dict.fromkeys(m for r in doc.runs for m in r.metrics))
        return 201, {
            "format": "json",
            "created": len(ids),
            "skipped": 0,
            "domains_created": created_domains,
            "metrics": metric_names,
            "ids": ids,
        }

    status, body = runs.create_runs(
        session,
        project,
        doc.runs,
        normalize=False,
        field="runs",
        token_id=token.id,
        idempotency_key=key,
        endpoint=f"POST {request.url.path}",
        fingerprint=idempotency.request_fingerprint(payload),
        respond=respond,
        after_insert=lambda ids: runs.insert_curves(session, ids, curves),
    )
    return JSONResponse(body, status_code=status)


@router.get(
    "/export",
    responses={200: {"content": {"text/csv": {}, "application/zip": {}, "application/json": {}}}},
)
def export_runs(
    project: ProjectDep,
    session: SessionDep,
    token: CurrentToken,
    format: Literal["csv", "json"] = "csv",
    layout: Literal["regmix", "olmix"] = "regmix",
    part: Annotated[
        Literal["mixtures", "metrics"] | None,
        Query(description="one CSV of the pair; default: a zip of both"),
    ] = None,
    status: Annotated[
        StateFilter | Literal["all"] | None, Query(description="runs in this state; all: every run")
    ] = "succeeded",
    model_params: Annotated[
        int | None, Query(gt=0, le=2**63 - 1, description="only the runs at this scale")
    ] = None,
    train_tokens: Annotated[int | None, Query(gt=0, le=2**63 - 1)] = None,
    train_steps: Annotated[int | None, Query(gt=0, le=2**31 - 1)] = None,
) -> Response:
    """Write runs back: JSON, or CSV in the RegMix or olmix layout (a zip of both files, or one
    part), optionally the runs of one scale (the CSV layouts have no scale column). Streamed
    from the database a page of runs at a time, so any number of runs is exported in bounded
    memory."""
    query = run_export.ExportQuery.of(
        project,
        status=None if status in (None, "all") else status,
        model_params=model_params,
        train_tokens=train_tokens,
        train_steps=train_steps,
    )
    if format == "json":
        return StreamingResponse(
            _primed(run_export.stream_json(query)), media_type="application/json"
        )
    if part is None:
        return StreamingResponse(
            _primed(run_export.stream_zip(query, layout)),
            media_type="application/zip",
            headers={
                "Content-Disposition": f'attachment; filename="project-{project.id}-{layout}.zip"'
            },
        )
    return StreamingResponse(
        _primed(run_export.stream_csv(query, layout, part)), media_type="text/csv"
    )


def _primed(chunks: Iterator[Any]) -> Iterator[Any]:
    """The stream with its first chunk already made, here, before the response starts: an
    error in the first queries is an answer with its status (the error handlers'), not a
    connection dropped after a 200."""
    first = next(chunks, None)
    return chain([] if first is None else [first], chunks)


@router.get("/{run_id:int}", response_model=RunPublic)
def get_run(project: ProjectDep, run_id: IdPath, session: SessionDep, token: CurrentToken) -> Any:
    return runs.get_run(session, project, run_id)


@router.patch("/{run_id:int}", response_model=RunPublic)
def update_run(
    project: WritableProjectDep,
    run_id: IdPath,
    data: RunUpdate,
    session: SessionDep,
    token: CurrentToken,
) -> Any:
    return runs.update_run(session, project, runs.get_run(session, project, run_id), data)


@router.delete("/{run_id:int}", status_code=204)
def delete_run(
    project: WritableProjectDep, run_id: IdPath, session: SessionDep, token: CurrentToken
) -> Response:
    runs.delete_run(session, runs.get_run(session, project, run_id))
    return Response(status_code=204)


@router.post("/{run_id:int}/curve", response_model=CurvePublic)
def add_curve(
    project: WritableProjectDep,
    run_id: IdPath,
    data: CurvePointsCreate,
    session: SessionDep,
    token: CurrentToken,
) -> dict:
    """Append loss-curve points; re-sending a step already stored changes nothing."""
    run = runs.get_run(session, project, run_id)
    added = runs.add_curve_points(session, run, data.points)
    return {"run_id": run.id, "points": runs.curve(session, run), "added": added}


@router.get("/{run_id:int}/curve", response_model=CurvePublic)
def get_curve(
    project: ProjectDep, run_id: IdPath, session: SessionDep, token: CurrentToken
) -> dict:
    run = runs.get_run(session, project, run_id)
    return {"run_id": run.id, "points": runs.curve(session, run)}
