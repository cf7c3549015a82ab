"""Liveness and readiness probes (no token)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from app.api.deps import SessionDep, SettingsDep
from app.services import health
from app.services.dispatch import broker_ok

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """Liveness: the process answers (no auth, no database)."""
    return {"status": "ok"}


@router.get("/readyz")
def readyz(session: SessionDep, settings: SettingsDep) -> JSONResponse:
    """Readiness: the database answers, the broker answers and at least one worker is alive;
    503 naming what is down otherwise."""

    body: dict = {}
    down: dict[str, str] = {}
    try:
        health.ping(session)
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
            why, live = health.workers(session, settings)
        except Exception as exc:
            why, live = f"unknown ({type(exc).__name__})", []
        body["workers"] = live
        if why is None:
            body["worker"] = "ok"
        else:
            down["worker"] = why
        # housekeeping (MIXOPT_MAINTENANCE_QUEUE) on its own line: reported, and a failure only
        # when listed in MIXOPT_READY_QUEUES (the API and training work without it)
        body["maintenance"] = health.maintenance(live, settings) or "ok"
    else:
        down["worker"] = "unknown (database down)"
    if down:
        body |= down
        body |= {"status": "unavailable", "detail": "; ".join(f"{k}: {v}" for k, v in down.items())}
        return JSONResponse(body, status_code=503)
    return JSONResponse({"status": "ok", **body})
