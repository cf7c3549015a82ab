"""Build the FastAPI app: settings, error handlers, one router tree."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from app.api import errors
from app.api.router import api_router

log = logging.getLogger("mixopt")


@asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    """Embedded mode migrates and makes sure the admin token exists; deployments migrate with
    ``mixopt db upgrade`` and pass MIXOPT_ADMIN_TOKEN."""
    from app.bootstrap import prepare

    prepare()
    yield


def create_app() -> FastAPI:
    app = FastAPI(
        lifespan=lifespan,
        title="mixopt",
        version="0.1.0",
        description="Data-mixture optimisation for language-model pretraining: proxy runs, fitted mixing "
        "laws, recommendations and online re-mixing.",
    )
    errors.install(app)
    app.include_router(api_router)
    return app


app = create_app()
