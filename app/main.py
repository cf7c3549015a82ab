"""Build the FastAPI app: settings, error handlers, one router tree."""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from app.api import docs, errors, metrics, openapi
from app.api.middleware import BodyGuard, InFlightLimit
from app.api.ratelimit import FailureLimiter
from app.api.router import api_router
from app.core import logs
from app.core.config import get_settings
from app.dashboard.routes import router as dashboard_router

log = logging.getLogger("mixopt")


@asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    """Embedded mode migrates and makes sure the admin token exists; deployments migrate with
    ``mixopt db upgrade`` and pass MIXOPT_ADMIN_TOKEN."""
    import anyio.to_thread

    from app.bootstrap import prepare

    # sync handlers run on anyio's thread pool; the database pool is sized to it (app.store.db)
    anyio.to_thread.current_default_thread_limiter().total_tokens = get_settings().request_threads
    prepare()
    yield


def create_app() -> FastAPI:
    if os.environ.get("MIXOPT_LOG_FORMAT"):
        logs.configure()  # MIXOPT_LOG_FORMAT=json: one JSON object per line, with request ids
    app = FastAPI(
        lifespan=lifespan,
        title="mixopt",
        version="0.1.0",
        description="Data-mixture optimisation for language-model pretraining: proxy runs, "
        "fitted mixing laws, recommendations and online re-mixing.",
        docs_url=None,
        redoc_url=None,  # served from local assets by app.api.docs
        generate_unique_id_function=openapi.operation_id,
    )
    errors.install(app)
    app.include_router(api_router)
    app.include_router(dashboard_router)  # pages under /dashboard, not in the document
    # size and strict-JSON checks before any route parses the body (outermost), then at most
    # request_threads requests in flight, so the database pool (sized to it) is never exhausted
    app.add_middleware(InFlightLimit)
    app.add_middleware(BodyGuard)
    metrics.install(app)  # outermost: request id, access log and counts for every answer (413s too)
    settings = get_settings()
    app.state.auth_limiter = FailureLimiter(
        settings.auth_failures_per_window, settings.auth_window_seconds
    )
    docs.install(app)
    openapi.install(app)
    return app


app = create_app()
