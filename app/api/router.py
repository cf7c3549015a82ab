"""The one router tree mounted by the app."""

from fastapi import APIRouter

from app.api.routes import (
    domain_sets,
    exports,
    fits,
    health,
    jobs,
    online,
    projects,
    runs,
    tokens,
    training,
    validations,
)
from app.dashboard import routes as dashboard

api_router = APIRouter()
for module in (health, tokens, projects, domain_sets, runs, fits, training, validations, online, jobs, exports):
    api_router.include_router(module.router)
api_router.include_router(fits.estimators_router)
api_router.include_router(dashboard.router)
