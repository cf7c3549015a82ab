from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text

from app.api.deps import SessionDep

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """Liveness: the process answers (no auth, no database)."""
    return {"status": "ok"}


@router.get("/readyz")
def readyz(session: SessionDep) -> JSONResponse:
    """Readiness: the database answers."""
    try:
        session.execute(text("SELECT 1"))
    except Exception as exc:  # any database failure means not ready
        return JSONResponse({"status": "unavailable", "detail": f"database: {type(exc).__name__}"}, status_code=503)
    return JSONResponse({"status": "ok", "database": "ok"})
