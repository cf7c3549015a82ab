"""``ProjectRoute`` raises a project dependency's refusal when the route is called, for sync and
async endpoints alike (an async endpoint must stay a coroutine function, awaited by FastAPI)."""

from __future__ import annotations

from typing import Annotated

import pytest
from fastapi import APIRouter, Depends, FastAPI
from fastapi.testclient import TestClient

from app.api.deps import ProjectRoute, Refusal
from app.services.errors import NotFound


def refused() -> Refusal:
    return Refusal(NotFound("project 7 not found"))


def allowed() -> str:
    return "project 7"


def make_client() -> TestClient:
    router = APIRouter(route_class=ProjectRoute)

    @router.get("/sync-refused")
    def sync_refused(project: Annotated[object, Depends(refused)]) -> dict:
        return {"reached": True}

    @router.get("/async-refused")
    async def async_refused(project: Annotated[object, Depends(refused)]) -> dict:
        return {"reached": True}

    @router.get("/async-allowed")
    async def async_allowed(project: Annotated[str, Depends(allowed)]) -> dict:
        return {"project": project}

    app = FastAPI()
    app.include_router(router)
    return TestClient(app)


@pytest.mark.parametrize("path", ["/sync-refused", "/async-refused"])
def test_a_refusal_is_raised_before_the_endpoint_runs(path):
    with pytest.raises(NotFound, match="project 7 not found"):
        make_client().get(path)


def test_an_async_endpoint_is_awaited():
    r = make_client().get("/async-allowed")
    assert r.status_code == 200 and r.json() == {"project": "project 7"}
