"""ASGI middleware in front of every route: the request body's size is checked before anything
parses it (413); a JSON body then gets one bounded pass (:mod:`app.api.json_limits`: nesting
depth, string length, keys per object, items per array, and strict numbers: NaN, Infinity and
numbers that overflow to infinity are a 422 naming the field, whichever field, free-form
``details`` included, and at most ``MIXOPT_MAX_JSON_NODES`` values), in a worker thread for a
large body so the event loop keeps answering, which also parses it there in pieces (the GIL
changes hands between them) and hands the object to the route (:data:`PARSED_JSON`); and at
most ``MIXOPT_REQUEST_THREADS`` requests are inside the app at once
(:class:`InFlightLimit`)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import anyio
import anyio.to_thread
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api import json_limits
from app.core.config import get_settings

#: a JSON body larger than this is checked in a worker thread (a 1 MiB body takes milliseconds)
THREAD_BYTES = 2**20
#: scope key of a large JSON body parsed with its check (in pieces, in a worker thread), read by
#: the routes' request class (app.api.deps.ProjectRoute) instead of parsing the body again
PARSED_JSON = "mixopt.parsed_json"
#: at most this many large bodies are checked at once per process (CPU-bound; each pass holds a
#: few times its body in memory): the others wait, the event loop does not
CHECKS_AT_ONCE = 2


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
    while reading a chunked body) and JSON bodies over a ``MIXOPT_MAX_JSON_*`` bound or with
    non-finite numbers (413/422 naming the path), before any route parses them."""

    def __init__(self, app: ASGIApp):
        self.app = app
        self._limiter: anyio.CapacityLimiter | None = None

    async def _check(self, body: bytes) -> tuple[json_limits.Refusal | None, Any]:
        limits = json_limits.JsonLimits.from_settings(get_settings())
        if len(body) <= THREAD_BYTES:
            return json_limits.check(body, limits), json_limits.NOT_PARSED
        if self._limiter is None:  # created in the server's event loop
            self._limiter = anyio.CapacityLimiter(CHECKS_AT_ONCE)
        return await anyio.to_thread.run_sync(
            json_limits.check_and_parse, body, limits, limiter=self._limiter
        )

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
        del chunks
        ctype = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
        if ctype == b"application/json" or ctype.endswith(b"+json"):
            refusal, parsed = await self._check(body)
            if parsed is not json_limits.NOT_PARSED:  # the route takes it (never parsed twice)
                scope[PARSED_JSON] = parsed
            if refusal:
                field, msg = refusal.field, refusal.message
                await _json(
                    send, refusal.status, f"{field}: {msg}", [{"field": field, "message": msg}]
                )
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
