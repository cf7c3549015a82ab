"""The OpenAPI document, made truthful.

FastAPI's default document promises ``HTTPValidationError`` for 422 (our handlers answer
:class:`mixopt.api_types.ErrorBody`), lists no other error status, shows the token as a header
parameter and names operations ``create_fit_v1_projects__project_id__fits_post``. This module
post-processes the generated document once per app:

- operationIds are the route functions' names (``create_fit``, ``list_runs``): stable and
  readable; :func:`operation_id` is passed to FastAPI (a duplicate is logged and fails the
  contract test);
- the bearer token is the ``HTTPBearer`` security scheme (``app.api.deps.bearer``);
- ``ErrorBody`` is declared once and referenced by every error status of every operation;
- the error statuses each operation can really answer are derived from what it takes, so a
  route added by anyone gets them without a list to keep in step: 401, 429 (the
  failed-authentication limit, ``app.api.ratelimit``) and 503 (database) with a token, 403
  and 409 for writes (403 also on admin routes), 404 with ids in the path, 422 with
  parameters or a body, 400 and 413 with a body (unparseable multipart, too large); a route
  declares anything else (400 for a bad cursor, ...) in its decorator's ``responses``;
- request models that routes validate by hand (``RunCreate``/``RunBatchCreate`` on ``POST
  .../runs``, referenced in ``openapi_extra``) are found by name in ``app.schemas`` and
  added to the components, so no ``$ref`` dangles;
- the main request bodies carry examples (used by Swagger UI and by schemathesis).
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute
from pydantic import BaseModel

from mixopt.api_types import ErrorBody

log = logging.getLogger("mixopt.api")
ERROR_REF = {"$ref": "#/components/schemas/ErrorBody"}
DESCRIPTIONS = {
    "400": "the body could not be parsed (malformed multipart, an unknown filter value)",
    "401": "no token, or an invalid or revoked one (`Authorization: Bearer <token>`)",
    "403": "the token may not do this (a read-only token writing, a non-admin on admin routes)",
    "404": "no such resource, or one this token cannot see",
    "409": "conflict with stored data",
    "413": "the request body is too large",
    "429": "too many failed authentications from this address: wait `Retry-After` seconds",
    "422": "invalid input: `detail` names the field",
    "503": "the database or the broker is unavailable: retry later",
}

EXAMPLES: dict[str, Any] = {
    "create_project": {
        "name": "pile",
        "domains": [
            {"name": "web", "token_count": 300_000_000_000},
            {"name": "code", "token_count": 40_000_000_000},
            {"name": "math", "token_count": 10_000_000_000},
        ],
        "objective": {"val/web": 1.0, "val/code": 1.0},
        "constraints": {
            "target_tokens": 100_000_000_000,
            "max_epochs": 4,
            "bounds": {"web": {"min": 0.2, "max": 0.8}},
        },
    },
    "create_runs": {
        "mixture": {"web": 0.6, "code": 0.3, "math": 0.1},
        "metrics": {"val/web": 3.21, "val/code": 2.05, "val/math": 2.7},
        "model_params": 1_000_000,
        "train_tokens": 1_000_000_000,
        "tags": ["swarm-1"],
    },
    "create_fit": {"estimator": "auto", "cv_folds": 5},
    "change_domains": {
        "add": [{"name": "papers", "token_count": 20_000_000_000}],
        "remove": ["math"],
        "split": {"web": ["web_news", "web_blog"]},
    },
    "create_recommendation": {
        "estimator": "auto",
        "constraints": {"target_tokens": 100_000_000_000, "max_epochs": 4},
        "n_boot": 20,
    },
}


def operation_id(route: APIRoute) -> str:
    return route.name


def _schema_models() -> dict[str, type[BaseModel]]:
    """Every pydantic model of ``app.schemas``, by class name."""
    import importlib
    import pkgutil

    import app.schemas as package

    models: dict[str, type[BaseModel]] = {}
    for info in pkgutil.iter_modules(package.__path__):
        module = importlib.import_module(f"{package.__name__}.{info.name}")
        for value in vars(module).values():
            if (
                isinstance(value, type)
                and issubclass(value, BaseModel)
                and value.__module__ == module.__name__
            ):
                models.setdefault(value.__name__, value)
    return models


def _refs(node: Any) -> set[str]:
    out: set[str] = set()
    stack = [node]
    while stack:
        n = stack.pop()
        if isinstance(n, dict):
            ref = n.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/components/schemas/"):
                out.add(ref.rsplit("/", 1)[1])
            stack.extend(n.values())
        elif isinstance(n, list):
            stack.extend(n)
    return out


def _resolve_dangling(doc: dict) -> None:
    """Routes that validate a body by hand reference its model in ``openapi_extra``; add every
    such model (found by name in app.schemas) to the components."""
    models = None
    while True:
        schemas = doc["components"]["schemas"]
        missing = _refs(doc) - set(schemas)
        if not missing:
            return
        models = models or _schema_models()
        known = sorted(m for m in missing if m in models)
        if len(known) < len(
            missing
        ):  # tests/api/test_contract.py fails on these; the docs still load
            log.warning(
                "the OpenAPI document references unknown schemas %s",
                sorted(set(missing) - set(known)),
            )
        if not known:
            return
        _add_components(doc, [models[m] for m in known])


def _add_components(doc: dict, models: list[type[BaseModel]]) -> None:
    from pydantic.json_schema import models_json_schema

    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    _, defs = models_json_schema(
        [(m, "validation") for m in models], ref_template="#/components/schemas/{model}"
    )
    for name, schema in defs.get("$defs", {}).items():
        schemas.setdefault(name, schema)


def _error_codes(path: str, method: str, op: dict) -> set[str]:
    params = op.get("parameters", [])
    has_body = "requestBody" in op
    secured = bool(op.get("security"))
    codes: set[str] = set()
    if params or has_body:
        codes.add("422")
    if has_body:
        codes |= {"400", "413"}
    if secured:
        codes |= {"401", "429", "503"}
        if method != "get" or path.startswith("/v1/tokens") and not path.endswith("/me"):
            codes.add("403")
        if method != "get":
            codes.add(
                "409"
            )  # conflicts with stored data (a duplicate, a reused idempotency key, ...)
    if any(p.get("in") == "path" for p in params):
        codes.add("404")
    return codes


def _path_order(path: str, op: dict) -> None:
    """Path parameters in the order the path names them (``project_id`` first), whichever
    dependency declares them (``ProjectDep`` declares ``project_id`` after the route's own)."""
    params = op.get("parameters")
    if not params:
        return
    in_path = sorted(
        (p for p in params if p.get("in") == "path"), key=lambda p: path.find("{" + p["name"] + "}")
    )
    op["parameters"] = in_path + [p for p in params if p.get("in") != "path"]


def build(app: FastAPI) -> dict[str, Any]:
    doc = get_openapi(
        title=app.title,
        version=app.version,
        description=app.description,
        routes=app.routes,
        tags=app.openapi_tags,
    )
    _add_components(doc, [ErrorBody])
    _resolve_dangling(doc)
    schemas = doc["components"]["schemas"]
    where: dict[str, str] = {}
    for path, item in doc["paths"].items():
        for method, op in item.items():
            _path_order(path, op)
            name = op.get("operationId", "")
            if where.setdefault(name, f"{method.upper()} {path}") != f"{method.upper()} {path}":
                # tests/api/test_contract.py fails on this; the document still loads
                log.warning(
                    "two operations are named %r (%s and %s %s): "
                    "route functions' names must be unique",
                    name,
                    where[name],
                    method.upper(),
                    path,
                )
            responses = op.setdefault("responses", {})
            for code in sorted(
                _error_codes(path, method, op) | {c for c in responses if c[0] in "45"}
            ):
                entry = responses.setdefault(code, {})
                entry["description"] = (
                    entry.get("description")
                    if entry.get("description") not in (None, "", "Validation Error")
                    else DESCRIPTIONS.get(code, "error")
                )
                entry["content"] = {"application/json": {"schema": ERROR_REF}}
            if path == "/readyz":
                responses["503"] = {
                    "description": "the database does not answer",
                    "content": {"application/json": {"schema": {"type": "object"}}},
                }
            if (
                op.get("operationId") == "create_runs"
            ):  # one run -> the run, a batch -> {count, ids}
                responses["201"]["content"] = {
                    "application/json": {
                        "schema": {
                            "oneOf": [
                                {"$ref": "#/components/schemas/RunPublic"},
                                {"$ref": "#/components/schemas/RunsCreated"},
                            ]
                        }
                    }
                }
                _resolve_dangling(doc)
            example = EXAMPLES.get(op.get("operationId", ""))
            body = op.get("requestBody", {}).get("content", {}).get("application/json")
            if example is not None and body is not None:
                body["example"] = example
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    return doc


def install(app: FastAPI) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = build(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
