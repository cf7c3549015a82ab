"""Every error is JSON ``{"detail": message, "errors": [{"field", "message"}]}`` with a
message that names the field; no input produces a 500."""

from __future__ import annotations

import logging
import re

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError, IntegrityError, OperationalError, StatementError
from sqlalchemy.exc import TimeoutError as SQLAlchemyTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.services.errors import ServiceError

log = logging.getLogger("mixopt.api")


def _loc(loc: tuple) -> str:
    parts = [p for p in loc if p not in ("body",)]
    out = ""
    for p in parts:
        if isinstance(p, int):
            out += f"[{p}]"
        else:
            out += ("." if out else "") + str(p)
    return out or "body"


def validation_errors(errors: list[dict]) -> list[dict[str, str]]:
    out = []
    for e in errors:
        msg = e.get("msg", "invalid")
        if msg.startswith("Value error, "):
            msg = msg.removeprefix("Value error, ")
        loc = tuple(e.get("loc", ()))
        if e.get("type") == "json_invalid":
            pos = loc[1] if len(loc) > 1 else "?"
            out.append(
                {
                    "field": "body",
                    "message": (
                        f"invalid JSON at character {pos}: {e.get('ctx', {}).get('error', msg)}"
                    ),
                }
            )
            continue
        out.append({"field": _loc(loc), "message": msg})
    return out


def allowed_methods(app: FastAPI, path: str) -> list[str]:
    """Every method the API document lists for this path (Starlette's own 405 names only the
    methods of the first route that matched the path, so ``Allow`` missed the others)."""
    methods: set[str] = set()
    for template, item in app.openapi().get("paths", {}).items():
        for method, op in item.items():
            ints = {
                p["name"]
                for p in op.get("parameters", [])
                if p.get("in") == "path" and p.get("schema", {}).get("type") == "integer"
            }
            pattern = re.sub(
                r"\\\{([^}]+)\\\}",
                lambda m, ints=ints: "[0-9]+" if m.group(1) in ints else "[^/]+",
                re.escape(template),
            )
            if re.fullmatch(pattern, path):
                methods.add(method.upper())
    return sorted(methods)


def install(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = validation_errors(list(exc.errors()))
        summary = "; ".join(f"{e['field']}: {e['message']}" for e in errors[:5])
        if len(errors) > 5:
            summary += f"; and {len(errors) - 5} more"
        return JSONResponse({"detail": summary, "errors": errors[:100]}, status_code=422)

    @app.exception_handler(ServiceError)
    async def _service(_: Request, exc: ServiceError) -> JSONResponse:
        detail = (
            f"{exc.field}: {exc.message}"
            if exc.field and not exc.message.startswith(exc.field)
            else exc.message
        )
        errors = [{"field": exc.field or "", "message": exc.message}]
        return JSONResponse({"detail": detail, "errors": errors}, status_code=exc.status_code)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        headers = dict(getattr(exc, "headers", None) or {})
        detail = exc.detail
        if exc.status_code == 405:
            allowed = allowed_methods(request.app, request.url.path) or [
                m.strip() for m in headers.get("Allow", "").split(",") if m.strip()
            ]
            headers["Allow"] = ", ".join(allowed)
            detail = f"method {request.method} is not allowed here; allowed: {', '.join(allowed)}"
        return JSONResponse(
            {"detail": detail, "errors": []}, status_code=exc.status_code, headers=headers or None
        )

    @app.exception_handler(IntegrityError)
    async def _integrity(_: Request, exc: IntegrityError) -> JSONResponse:
        log.warning("integrity error: %s", exc.orig)
        return JSONResponse(
            {
                "detail": "conflict with stored data: the request would create a duplicate or "
                "break a reference",
                "errors": [],
            },
            status_code=409,
        )

    @app.exception_handler(DataError)
    async def _data(_: Request, exc: DataError) -> JSONResponse:
        return JSONResponse(
            {
                "detail": "a value is out of range for the database: "
                f"{str(exc.orig).splitlines()[0]}",
                "errors": [],
            },
            status_code=422,
        )

    @app.exception_handler(OverflowError)
    async def _overflow(_: Request, exc: OverflowError) -> JSONResponse:
        return JSONResponse(
            {"detail": f"a number is out of range: {exc}", "errors": []}, status_code=422
        )

    @app.exception_handler(StatementError)
    async def _statement(request: Request, exc: StatementError) -> JSONResponse:
        if isinstance(exc.orig, OverflowError | ValueError):
            return JSONResponse(
                {"detail": f"a value is out of range: {exc.orig}", "errors": []}, status_code=422
            )
        raise exc

    @app.exception_handler(SQLAlchemyTimeoutError)
    async def _pool_timeout(_: Request, exc: SQLAlchemyTimeoutError) -> JSONResponse:
        log.error("database pool exhausted: %s", exc)
        return JSONResponse(
            {
                "detail": "the server is busy (no database connection free), retry later",
                "errors": [],
            },
            status_code=503,
            headers={"Retry-After": "1"},
        )

    @app.exception_handler(OperationalError)
    async def _operational(_: Request, exc: OperationalError) -> JSONResponse:
        log.error("database unavailable: %s", exc.orig)
        return JSONResponse(
            {"detail": "database unavailable, retry later", "errors": []},
            status_code=503,
            headers={"Retry-After": "1"},
        )
