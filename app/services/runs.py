"""Proxy runs: validation, batch creation, listing with cursor pagination, curves."""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import and_, func, insert, or_, select, text
from sqlalchemy.orm import Session

from app.core.config import get_settings
from app.schemas.runs import CurvePointCreate, RunCreate, RunUpdate
from app.services import domains as domain_service
from app.services import idempotency
from app.services.errors import BadRequest, Conflict, Invalid, NotFound, TooLarge
from app.store.models import CurvePoint, Project, Run, RunTag, utcnow
from mixopt.api_types import RUN_STATES

SUM_TOLERANCE = 1e-6
NORMALIZE_TOLERANCE = 1e-2
RUN_STATUSES = RUN_STATES  # defined once, in mixopt.api_types (the API contract)
ORDERINGS = {"id": Run.id, "created_at": Run.created_at}
#: ``order_by=metric:NAME``: by a final metric's value
METRIC_ORDER = "metric:"


def metric_value(name: str) -> Any:
    """A run's final metric ``name`` as a number (NULL when the run does not report it)."""
    return Run.metrics[name].as_float()


def _ordering(key: str) -> Any:
    """The column or expression ``order_by`` (without its ``-``) sorts by; 400 naming it."""
    if key in ORDERINGS:
        return ORDERINGS[key]
    name = key.removeprefix(METRIC_ORDER)
    if key.startswith(METRIC_ORDER) and name:
        return metric_value(name)
    raise BadRequest(
        f"order_by must be one of {sorted(ORDERINGS)} or metric:NAME (optionally prefixed with -)",
        field="order_by",
    )


def _metric_filter(name: str | None, low: float | None, high: float | None) -> list[Any]:
    """Conditions keeping runs that report metric ``name``, within ``[low, high]``."""
    if name is None:
        if low is not None or high is not None:
            raise Invalid("metric_min and metric_max bound a metric: pass metric", field="metric")
        return []
    if low is not None and high is not None and low > high:
        raise Invalid(f"metric_min ({low}) is above metric_max ({high})", field="metric_min")
    value = metric_value(name)
    conds = [value.is_not(None)]
    if low is not None:
        conds.append(value >= low)
    if high is not None:
        conds.append(value <= high)
    return conds


def validate_mixture(
    mixture: dict[str, float],
    domains: Sequence[str],
    *,
    normalize: bool = False,
    field: str = "mixture",
) -> dict[str, float]:
    """Check a mixture against the project's domains and return it in domain order.

    Omitted domains get weight 0. Weights must be finite and >= 0 and sum to 1 within
    ``SUM_TOLERANCE`` (or within ``NORMALIZE_TOLERANCE`` when ``normalize``, then rescaled).
    """
    known = set(domains)
    for name, w in mixture.items():
        if name not in known:
            raise Invalid(
                f"unknown domain {name!r}; the project's domains are {list(domains)}",
                field=f"{field}.{name}",
            )
        if not isinstance(w, (int, float)) or isinstance(w, bool) or not math.isfinite(w) or w < 0:
            raise Invalid(f"weight {w!r} must be a finite number >= 0", field=f"{field}.{name}")
    try:
        total = math.fsum(mixture.values())
    except OverflowError:  # finite weights whose sum is not (1e308 twice)
        raise Invalid(
            "weights sum beyond the largest float; they must sum to 1", field=field
        ) from None
    tol = NORMALIZE_TOLERANCE if normalize else SUM_TOLERANCE
    if abs(total - 1.0) > tol:
        hint = "" if normalize else " (pass normalize=true to accept sums within 1e-2 and rescale)"
        raise Invalid(f"weights sum to {total:.9g}, not 1 within {tol:g}{hint}", field=field)
    scale = 1.0 / total if normalize else 1.0
    return {name: float(mixture.get(name, 0.0)) * scale for name in domains}


def check_batch_size(n: int, field: str) -> None:
    """At most ``MIXOPT_MAX_BATCH_RUNS`` runs per request (a batch, an import): 413 above."""
    limit = get_settings().max_batch_runs
    if n > limit:
        raise TooLarge(
            f"{n} runs in one request; at most {limit} (MIXOPT_MAX_BATCH_RUNS): split the batch",
            field=field,
        )


def _status_for(spec: RunCreate) -> str:
    if spec.status:
        return spec.status
    return "succeeded" if spec.metrics else "planned"


def run_rows(
    project: Project, specs: Sequence[RunCreate], *, normalize: bool, field: str = "runs"
) -> list[dict[str, Any]]:
    """Validate specs and build insert rows; raises Invalid naming the first bad field."""
    domains = [d.name for d in project.domains]
    if not domains:
        raise Invalid("the project has no domains; add domains before adding runs", field="domains")
    now = utcnow()
    rows = []
    for i, spec in enumerate(specs):
        prefix = f"{field}[{i}]" if field else ""
        mfield = f"{prefix}.mixture" if prefix else "mixture"
        try:
            mixture = validate_mixture(spec.mixture, domains, normalize=normalize, field=mfield)
        except Invalid:
            _retired_weight(project, spec.mixture, mfield)
            raise
        status = _status_for(spec)
        if status == "succeeded" and not spec.metrics:
            raise Invalid(
                "a succeeded run needs metrics", field=f"{prefix}.metrics" if prefix else "metrics"
            )
        rows.append(
            {
                "project_id": project.id,
                "name": spec.name,
                "external_id": spec.external_id,
                "mixture": mixture,
                "metrics": dict(spec.metrics),
                "model_params": spec.model_params,
                "train_tokens": spec.train_tokens,
                "train_steps": spec.train_steps,
                "seed": spec.seed,
                "tags": list(dict.fromkeys(spec.tags)),
                "status": status,
                "origin": spec.origin,
                "details": spec.details,
                "created_at": now,
                "updated_at": now,
                "domain_version": project.domain_version or 1,
                # an imported export carries the run's error (RunImport); a new run has none
                "error": getattr(spec, "error", None),
            }
        )
    return rows


def _retired_weight(project: Project, mixture: dict[str, float], field: str) -> None:
    """A weight on a domain that left the set: 422 naming it and the version that last had it."""
    from sqlalchemy.orm import object_session

    session = object_session(project)
    gone = domain_service.retired(session, project) if session is not None else {}
    for name in mixture:
        if name in gone:
            raise Invalid(
                f"domain {name!r} was retired: "
                f"domain-set version {gone[name]} was the last to have it, "
                f"the project is at version {project.domain_version}; "
                "new runs give weights over the "
                f"current domains {[d.name for d in project.domains]}",
                field=f"{field}.{name}",
            )


def insert_runs(session: Session, rows: list[dict[str, Any]]) -> list[int]:
    """Bulk insert (one statement per chunk) and return the new ids in input order."""
    ids: list[int] = []
    if session.get_bind().dialect.name == "postgresql":
        # take the ids from the sequence first: a plain executemany is ~3x faster than RETURNING
        ids = list(
            session.scalars(
                text(
                    "SELECT nextval(pg_get_serial_sequence('run', 'id')) "
                    "FROM generate_series(1, :n)"
                ),
                {"n": len(rows)},
            )
        )
        session.execute(
            insert(Run), [{**row, "id": rid} for row, rid in zip(rows, ids, strict=True)]
        )
    else:
        for start in range(0, len(rows), 2000):
            chunk = rows[start : start + 2000]
            ids.extend(
                session.scalars(insert(Run).returning(Run.id, sort_by_parameter_order=True), chunk)
            )
    tag_rows = [
        {"run_id": rid, "tag": t} for rid, row in zip(ids, rows, strict=True) for t in row["tags"]
    ]
    for start in range(0, len(tag_rows), 5000):
        session.execute(insert(RunTag), tag_rows[start : start + 5000])
    return ids


def get_run(session: Session, project: Project, run_id: int) -> Run:
    run = session.get(Run, run_id)
    if run is None or run.project_id != project.id:
        raise NotFound(f"run {run_id} not found in project {project.id}")
    return run


def update_run(session: Session, project: Project, run: Run, data: RunUpdate) -> Run:
    fields = data.model_fields_set
    if "metrics" in fields and data.metrics is not None:
        run.metrics = {**(run.metrics or {}), **data.metrics}
        if "status" not in fields and run.status in ("planned", "queued", "running"):
            run.status = "succeeded"
    if "status" in fields and data.status is not None:
        if data.status == "succeeded" and not run.metrics:
            raise Invalid("a succeeded run needs metrics", field="status")
        run.status = data.status
    for name in ("name", "model_params", "train_tokens", "train_steps", "seed", "error"):
        if name in fields:
            setattr(run, name, getattr(data, name))
    if "tags" in fields and data.tags is not None:
        run.tags = list(dict.fromkeys(data.tags))
        session.query(RunTag).filter(RunTag.run_id == run.id).delete()
        session.add_all(RunTag(run_id=run.id, tag=t) for t in run.tags)
    run.updated_at = utcnow()
    session.commit()
    session.refresh(run)
    return run


def delete_run(session: Session, run: Run) -> None:
    session.delete(run)
    session.commit()


# -- listing ----------------------------------------------------------------------------
def _encode_cursor(values: list[Any]) -> str:
    raw = json.dumps([v.isoformat() if isinstance(v, datetime) else v for v in values])
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _decode_cursor(cursor: str, order: str) -> tuple[Any, int]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        value, last_id = json.loads(raw)
        if order == "created_at":
            value = datetime.fromisoformat(value)
        if not isinstance(last_id, int) or not 0 <= last_id <= 2**31 - 1:
            raise ValueError
        if order.startswith(METRIC_ORDER):  # a metric's value: a finite number
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError
            if not math.isfinite(value) or abs(value) > 1e300:
                raise ValueError
        elif order != "created_at" and (not isinstance(value, int) or not 0 <= value <= 2**31 - 1):
            raise ValueError  # ids are 32-bit: a forged cursor must not reach the database
        return value, last_id
    except (ValueError, TypeError, json.JSONDecodeError) as exc:
        raise Invalid(
            "cursor is not valid; use next_cursor from a previous page", field="cursor"
        ) from exc


def list_runs(
    session: Session,
    project: Project,
    *,
    cursor: str | None = None,
    limit: int = 100,
    order_by: str = "id",
    status: str | None = None,
    tag: str | None = None,
    origin: str | None = None,
    model_params: int | None = None,
    train_tokens: int | None = None,
    train_steps: int | None = None,
    with_metrics: bool | None = None,
    metric: str | None = None,
    metric_min: float | None = None,
    metric_max: float | None = None,
) -> tuple[list[Run], int, str | None]:
    """One page of runs, with the total count of matching runs and the next page's cursor.

    ``order_by`` is ``id``, ``created_at`` or ``metric:NAME`` (by that final metric; runs
    without it are left out), each with a ``-`` prefix for descending order; ``metric`` keeps
    the runs reporting that metric, within ``[metric_min, metric_max]`` when given. Pagination
    is keyset-based, so pages stay consistent while runs are being added.
    """
    desc = order_by.startswith("-")
    key = order_by.removeprefix("-")
    col = _ordering(key)
    if status is not None and status not in RUN_STATUSES:
        raise BadRequest(f"status must be one of {list(RUN_STATUSES)}", field="status")
    q = select(Run).where(
        Run.project_id == project.id, *_metric_filter(metric, metric_min, metric_max)
    )
    if key.startswith(METRIC_ORDER):
        q = q.where(col.is_not(None))
    if status:
        q = q.where(Run.status == status)
    if origin:
        q = q.where(Run.origin == origin)
    if tag:
        q = q.where(Run.id.in_(select(RunTag.run_id).where(RunTag.tag == tag)))
    for c, v in (
        (Run.model_params, model_params),
        (Run.train_tokens, train_tokens),
        (Run.train_steps, train_steps),
    ):
        if v is not None:
            q = q.where(c == v)
    count = session.scalar(select(func.count()).select_from(q.subquery())) or 0
    if cursor:
        value, last_id = _decode_cursor(cursor, key)
        if key == "id":
            q = q.where(Run.id < last_id if desc else Run.id > last_id)
        elif desc:
            q = q.where(or_(col < value, and_(col == value, Run.id < last_id)))
        else:
            q = q.where(or_(col > value, and_(col == value, Run.id > last_id)))
    if key == "id":
        q = q.order_by(Run.id.desc() if desc else Run.id)
    else:
        q = q.order_by(col.desc(), Run.id.desc()) if desc else q.order_by(col, Run.id)
    rows = list(session.scalars(q.limit(limit + 1)))
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        last = rows[-1]
        value = (
            getattr(last, key) if key in ORDERINGS else last.metrics[key.removeprefix(METRIC_ORDER)]
        )
        next_cursor = _encode_cursor([value, last.id])
    return rows, count, next_cursor


def all_runs(session: Session, project: Project, status: str | None = "succeeded") -> list[Run]:
    q = select(Run).where(Run.project_id == project.id)
    if status:
        q = q.where(Run.status == status)
    return list(session.scalars(q.order_by(Run.id)))


# -- curves -----------------------------------------------------------------------------
def add_curve_points(session: Session, run: Run, points: Sequence[CurvePointCreate]) -> int:
    """Append curve points; a step already stored is left as it is (idempotent per step).

    The same step twice in one request with different values is a 409.
    """
    by_step: dict[int, CurvePointCreate] = {}
    for i, p in enumerate(points):
        prev = by_step.get(p.step)
        if prev is not None and (prev.metrics != p.metrics or prev.tokens != p.tokens):
            raise Conflict(
                f"step {p.step} appears twice with different values", field=f"points[{i}].step"
            )
        by_step[p.step] = p
    existing = set(
        session.scalars(
            select(CurvePoint.step).where(
                CurvePoint.run_id == run.id, CurvePoint.step.in_(list(by_step))
            )
        )
    )
    new = [
        {
            "run_id": run.id,
            "step": s,
            "tokens": p.tokens,
            "metrics": dict(p.metrics),
            "created_at": utcnow(),
        }
        for s, p in sorted(by_step.items())
        if s not in existing
    ]
    if new:
        session.execute(insert(CurvePoint), new)
    session.commit()
    return len(new)


def insert_curves(
    session: Session, ids: Sequence[int], curves: Sequence[Sequence[CurvePointCreate]]
) -> None:
    """Curves of newly created runs (``ids[i]`` gets ``curves[i]``), in the caller's transaction."""
    now = utcnow()
    rows = [
        {
            "run_id": rid,
            "step": p.step,
            "tokens": p.tokens,
            "metrics": dict(p.metrics),
            "created_at": now,
        }
        for rid, points in zip(ids, curves, strict=True)
        for p in points
    ]
    for start in range(0, len(rows), 5000):
        session.execute(insert(CurvePoint), rows[start : start + 5000])


def curve(session: Session, run: Run) -> list[CurvePoint]:
    return list(
        session.scalars(
            select(CurvePoint).where(CurvePoint.run_id == run.id).order_by(CurvePoint.step)
        )
    )


def existing_external_ids(session: Session, project: Project, ids: Sequence[str]) -> set[str]:
    found: set[str] = set()
    ids = list(ids)
    for start in range(0, len(ids), 1000):
        found.update(
            session.scalars(
                select(Run.external_id).where(
                    Run.project_id == project.id, Run.external_id.in_(ids[start : start + 1000])
                )
            )
        )
    return found


def create_runs(
    session: Session,
    project: Project,
    specs: Sequence[RunCreate],
    *,
    normalize: bool,
    field: str,
    token_id: int,
    idempotency_key: str | None,
    endpoint: str,
    fingerprint: str,
    respond: Any,
    after_insert: Any = None,
) -> tuple[int, Any]:
    """Validate and insert runs in one transaction, honouring an Idempotency-Key.

    ``respond(ids) -> (status_code, body)`` builds the response, which is stored with the key
    so that a retried request gets the same answer and creates nothing; ``after_insert(ids)``
    adds related rows (curves of imported runs) in the same transaction.
    """
    if idempotency_key:
        rec = idempotency.replay(session, token_id, idempotency_key, endpoint, fingerprint)
        if rec is not None:
            return rec.status_code, rec.response
    rows = run_rows(project, specs, normalize=normalize, field=field)
    ids = insert_runs(session, rows)
    if after_insert is not None:
        after_insert(ids)
    status_code, body = respond(ids)
    if idempotency_key:
        idempotency.remember(
            session, token_id, idempotency_key, endpoint, fingerprint, status_code, body
        )
    try:
        session.commit()
    except Exception as exc:  # a concurrent request with the same key won the race
        from sqlalchemy.exc import IntegrityError

        session.rollback()
        if idempotency_key and isinstance(exc, IntegrityError):
            rec = idempotency.replay(session, token_id, idempotency_key, endpoint, fingerprint)
            if rec is not None:
                return rec.status_code, rec.response
        raise
    return status_code, body
