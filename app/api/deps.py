"""Request dependencies as Annotated aliases, so route signatures read like functions."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Coroutine, Iterator
from typing import Annotated, Any

from fastapi import Depends, Header, HTTPException, Path, Query, Request, Response
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from app.api import csrf, ratelimit
from app.api.middleware import PARSED_JSON
from app.core.config import Settings, get_settings
from app.services import projects as project_service
from app.services.errors import ServiceError
from app.store.db import get_sessionmaker
from app.store.models import ApiToken, Project


def get_session() -> Iterator[Session]:
    session = get_sessionmaker()()
    try:
        yield session
    except Exception:
        session.rollback()
        raise
    finally:
        session.close()


SessionDep = Annotated[Session, Depends(get_session)]
SettingsDep = Annotated[Settings, Depends(get_settings)]


#: the API's security scheme in the OpenAPI document (``HTTPBearer``); the dependency reads the
#: header itself so that a wrong scheme gets a message saying what is expected
bearer = HTTPBearer(auto_error=False, description="an API token: `Authorization: Bearer mxo_...`")


def current_token(
    request: Request,
    session: SessionDep,
    _credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)] = None,
) -> ApiToken:
    authorization = request.headers.get("authorization")
    plain = None
    if authorization:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise HTTPException(
                401,
                "Authorization header must be 'Bearer <token>'",
                headers={"WWW-Authenticate": "Bearer"},
            )
        plain = value.strip()
    else:
        plain = request.cookies.get("mixopt_token")  # dashboard sessions
        if plain:
            csrf.check(request, plain)
    if not plain:
        raise HTTPException(
            401,
            "missing Authorization: Bearer <token> header",
            headers={"WWW-Authenticate": "Bearer"},
        )
    token = ratelimit.authenticate(request, session, plain)  # 429 past the failure budgets
    if token is None:
        raise HTTPException(401, "invalid or revoked token", headers={"WWW-Authenticate": "Bearer"})
    return token


CurrentToken = Annotated[ApiToken, Depends(current_token)]
IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key")]


#: a database id in a URL (out-of-range numbers are a 422, not a database error)
IdPath = Annotated[int, Path(ge=1, le=2**31 - 1)]
#: a list offset (bounded, so a huge number is a 422, not a database overflow)
Offset = Annotated[int, Query(ge=0, le=2**62, description="rows to skip")]
#: a 64-bit count in a query filter (token and parameter counts)
Count64Query = Annotated[int | None, Query(gt=0, le=2**63 - 1)]


class Refusal:
    """What a project dependency answers instead of raising: :class:`ProjectRoute` raises it
    when the route is called, after FastAPI has validated the request's parameters and body, so
    a malformed request is a 422 first (as when each route loaded its project itself)."""

    def __init__(self, error: ServiceError) -> None:
        self.error = error


def project(project_id: IdPath, session: SessionDep, token: CurrentToken) -> Project | Refusal:
    """The project ``project_id`` names, if the token may see it; 404 otherwise."""
    try:
        return project_service.get_project(session, token, project_id)
    except ServiceError as exc:
        return Refusal(exc)


def writable_project(
    project_id: IdPath, session: SessionDep, token: CurrentToken
) -> Project | Refusal:
    """As :func:`project`, and the token may write (403 otherwise)."""
    try:
        return project_service.get_project(session, token, project_id, write=True)
    except ServiceError as exc:
        return Refusal(exc)


class ProjectRoute(APIRoute):
    """The route class of every router whose routes take :data:`ProjectDep`: the endpoint is
    called through a wrapper that raises a dependency's :class:`Refusal` (404, 403) first."""

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        def refuse(values: dict[str, Any]) -> None:
            for value in values.values():
                if isinstance(value, Refusal):
                    raise value.error

        @functools.wraps(endpoint)
        def call(*args: Any, **values: Any) -> Any:
            refuse(values)
            return endpoint(*args, **values)

        @functools.wraps(endpoint)
        async def acall(*args: Any, **values: Any) -> Any:  # an async route stays async
            refuse(values)
            return await endpoint(*args, **values)

        wrapper = acall if inspect.iscoroutinefunction(endpoint) else call
        super().__init__(path, wrapper, **kwargs)

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        """A large JSON body already parsed by the body guard (in a worker thread, in pieces:
        app.api.middleware) is handed to FastAPI as the request's parsed JSON (Starlette's
        ``Request.json`` cache), so the event loop never parses it again."""
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            if PARSED_JSON in request.scope:
                request._json = request.scope.pop(PARSED_JSON)
            return await handler(request)

        return handle


#: the path's project, for reading; every route under ``/v1/projects/{project_id}`` takes one
#: (its router has ``route_class=ProjectRoute``)
ProjectDep = Annotated[Project, Depends(project)]
#: the path's project, for writing (POST, PATCH, DELETE)
WritableProjectDep = Annotated[Project, Depends(writable_project)]
