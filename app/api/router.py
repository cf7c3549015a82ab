"""The API's router tree: one router per concept (``/v1/...``) and the health probes.

The dashboard is mounted next to it by :mod:`app.main`; nothing in ``app.api`` imports it.
"""

from fastapi import APIRouter

from app.api.routes import (
    domains,
    experts,
    exports,
    fits,
    health,
    jobs,
    online,
    projects,
    recommendations,
    runs,
    suggestions,
    swarms,
    tokens,
    validations,
)

api_router = APIRouter()
for module in (
    health,
    tokens,
    projects,
    domains,
    runs,
    fits,
    recommendations,
    suggestions,
    swarms,
    validations,
    experts,
    online,
    jobs,
    exports,
):
    api_router.include_router(module.router)
api_router.include_router(fits.estimators_router)
