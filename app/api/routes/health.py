from __future__ import annotations

from datetime import timedelta

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import select, text

from app.api.deps import SessionDep, SettingsDep
from app.store.models import WorkerBeat, utcnow

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """Liveness: the process answers (no auth, no database)."""
    return {"status": "ok"}


def _workers(session, settings) -> tuple[str | None, list[dict]]:
    """(None or why no worker is alive, the live workers): a worker writes its row every
    heartbeat; one seen within ``MIXOPT_STALE_JOB_SECONDS`` counts as alive."""
    cutoff = utcnow() - timedelta(seconds=settings.stale_job_seconds)
    rows = list(session.scalars(select(WorkerBeat)))
    live = []
    for w in rows:
        seen = w.seen_at if w.seen_at.tzinfo else w.seen_at.replace(tzinfo=cutoff.tzinfo)
        if seen >= cutoff:
            live.append({"name": w.name, "queues": w.queues, "concurrency": w.concurrency,
                         "seen_s_ago": round((utcnow() - seen).total_seconds(), 1)})
    wanted = [q.strip() for q in settings.ready_queues.split(",") if q.strip()]
    served = {q for w in live for q in w["queues"].split(",")}
    missing = [q for q in wanted if q not in served]
    if live and not missing:
        return None, live
    if live:
        return f"no live worker consumes queue(s) {', '.join(missing)}", live
    return (f"no worker heartbeat in the last {settings.stale_job_seconds:g} s"
            + (f" ({len(rows)} known, all silent)" if rows else " (none ever started)")), []


@router.get("/readyz")
def readyz(session: SessionDep, settings: SettingsDep) -> JSONResponse:
    """Readiness: the database answers, the broker answers and at least one worker is alive;
    503 naming what is down otherwise."""
    from app.services.dispatch import broker_ok

    body: dict = {}
    down: dict[str, str] = {}
    try:
        session.execute(text("SELECT 1"))
        body["database"] = "ok"
    except Exception as exc:  # any database failure means not ready
        session.rollback()
        down["database"] = type(exc).__name__
    broker = broker_ok()
    if broker is None:
        body["broker"] = "ok"
    else:
        down["broker"] = broker
    if "database" not in down:
        try:
            why, live = _workers(session, settings)
        except Exception as exc:
            why, live = f"unknown ({type(exc).__name__})", []
        body["workers"] = live
        if why is None:
            body["worker"] = "ok"
        else:
            down["worker"] = why
    else:
        down["worker"] = "unknown (database down)"
    if down:
        body |= down
        body |= {"status": "unavailable", "detail": "; ".join(f"{k}: {v}" for k, v in down.items())}
        return JSONResponse(body, status_code=503)
    return JSONResponse({"status": "ok", **body})
