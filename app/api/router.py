"""The one router tree mounted by the app."""

from fastapi import APIRouter

from app.api.routes import fits, health, jobs, online, projects, runs, tokens, training
from app.dashboard import routes as dashboard

api_router = APIRouter()
for module in (health, tokens, projects, runs, fits, training, online, jobs):
    api_router.include_router(module.router)
api_router.include_router(fits.estimators_router)
api_router.include_router(dashboard.router)
