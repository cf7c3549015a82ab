"""ASGI middleware in front of every route: the request body's size is checked before anything
parses it (413), JSON bodies are strict (NaN, Infinity and numbers that overflow to infinity
are a 422 naming the field, whichever field: free-form ``details`` included), and at most
``MIXOPT_REQUEST_THREADS`` requests are inside the app at once (:class:`InFlightLimit`)."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.core.config import get_settings

#: cheap pre-check: only a body matching this can hold a non-finite number, so only such a body
#: is parsed here (the route parses it once more, as usual)
_SUSPECT = re.compile(rb"NaN|Infinity|[eE]\+?0*[1-9][0-9]{2,}|[0-9]{300,}")


class _NonFinite:
    def __init__(self, text: str):
        self.text = text


def _parse_float(text: str) -> Any:
    x = float(text)
    return _NonFinite(text) if x in (float("inf"), float("-inf")) else x


def _find(value: Any, path: str = "") -> tuple[str, str] | None:
    """The location (``runs[0].details.x``) and text of the first non-finite number."""
    if isinstance(value, _NonFinite):
        return path or "body", value.text
    if isinstance(value, dict):
        for k, v in value.items():
            hit = _find(v, f"{path}.{k}" if path else str(k))
            if hit:
                return hit
    elif isinstance(value, list):
        for i, v in enumerate(value):
            hit = _find(v, f"{path}[{i}]")
            if hit:
                return hit
    return None


def non_finite_field(body: bytes) -> tuple[str, str] | None:
    """Where a JSON body holds NaN/Infinity (or a number too large for a float), else None."""
    if not _SUSPECT.search(body):
        return None
    try:
        doc = json.loads(
            body,
            parse_constant=_NonFinite,
            parse_float=_parse_float,
            parse_int=lambda s: _NonFinite(s) if len(s) > 4300 else int(s),
        )
    except ValueError:
        return None  # not JSON at all: the route's parser reports where
    return _find(doc)


async def _json(send: Send, status: int, detail: str, errors: list[dict[str, str]]) -> None:
    body = json.dumps({"detail": detail, "errors": errors}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class BodyGuard:
    """Refuse bodies over ``MIXOPT_MAX_BODY_BYTES`` (413, from Content-Length before reading, or
    while reading a chunked body) and JSON bodies with non-finite numbers (422)."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        limit = get_settings().max_body_bytes
        headers = dict(scope.get("headers") or [])
        too_big = (
            f"the request body is larger than {limit} bytes (MIXOPT_MAX_BODY_BYTES); send fewer "
            "runs per request"
        )
        declared = headers.get(b"content-length")
        if declared is not None:
            try:
                if int(declared) > limit:
                    await _json(send, 413, too_big, [{"field": "body", "message": too_big}])
                    return
            except ValueError:
                await _json(
                    send,
                    400,
                    "Content-Length is not a number",
                    [{"field": "Content-Length", "message": "not a number"}],
                )
                return
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                await _json(send, 413, too_big, [{"field": "body", "message": too_big}])
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        ctype = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
        if ctype == b"application/json" or ctype.endswith(b"+json"):
            hit = non_finite_field(body)
            if hit:
                field, text = hit
                msg = (
                    f"{text} is not a finite number; JSON bodies must use finite numbers (or null)"
                )
                await _json(send, 422, f"{field}: {msg}", [{"field": field, "message": msg}])
                return
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


class InFlightLimit:
    """At most ``MIXOPT_REQUEST_THREADS`` requests inside the app at once; the others wait here,
    before any dependency runs. Without it a request that has authenticated (and so holds a
    pooled database connection) can wait for a free handler thread, and 100 concurrent clients
    exhaust a pool sized to the thread pool (QueuePool timeouts, seen as 500s)."""

    def __init__(self, app: ASGIApp):
        self.app = app
        self._sem: asyncio.Semaphore | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self._sem is None:
            self._sem = asyncio.Semaphore(get_settings().request_threads)
        async with self._sem:
            await self.app(scope, receive, send)
