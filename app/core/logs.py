"""Logs for operators: ``MIXOPT_LOG_FORMAT=json`` writes one JSON object per line (API and
workers alike), each with the request id of the HTTP request it belongs to.

- the API reads ``X-Request-ID`` (or makes one), answers it back, and logs one access line per
  request (method, route, status, duration) in place of uvicorn's;
- a job created during a request stores that request id (``job.request_id``), and a worker
  running the job logs with the same ``request_id`` and the ``job_id``, so one grep follows a
  request from the API into the jobs it started.

``text`` (the default) keeps the usual human format and adds the ids when they are set.
"""

from __future__ import annotations

import contextvars
import json
import logging
import os
import re
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "mixopt_request_id", default=None
)
job_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "mixopt_job_id", default=None
)

#: what a client may send as X-Request-ID (anything else is replaced by a fresh id)
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}
_SKIP = {"request_id", "job_id", "color_message"}


def current_request_id() -> str | None:
    return request_id_var.get()


def new_request_id(given: str | None = None) -> str:
    return given if given and _REQUEST_ID.match(given) else uuid.uuid4().hex


@contextmanager
def log_context(*, request_id: str | None = None, job_id: str | None = None) -> Iterator[None]:
    """Bind ids to every log line written inside (a worker running a job uses it)."""
    tokens = [request_id_var.set(request_id), job_id_var.set(job_id)]
    try:
        yield
    finally:
        job_id_var.reset(tokens[1])
        request_id_var.reset(tokens[0])


class ContextFilter(logging.Filter):
    """Adds ``request_id`` and ``job_id`` to every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            record.request_id = request_id_var.get()
        if getattr(record, "job_id", None) is None:
            record.job_id = job_id_var.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, message, request_id, job_id, extras."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in ("request_id", "job_id"):
            value = getattr(record, key, None)
            if value is not None:
                out[key] = value
        for key, value in record.__dict__.items():
            if (
                key not in _STANDARD
                and key not in out
                and not key.startswith("_")
                and key not in _SKIP
            ):
                out[key] = (
                    value
                    if isinstance(value, str | int | float | bool | type(None))
                    else repr(value)
                )
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        ids = " ".join(
            f"{k}={getattr(record, k)}"
            for k in ("request_id", "job_id")
            if getattr(record, k, None)
        )
        return f"{line} [{ids}]" if ids else line


def log_format() -> str:
    return (os.environ.get("MIXOPT_LOG_FORMAT") or "text").strip().lower()


def configure(
    fmt: str | None = None, level: int = logging.INFO, logger: logging.Logger | None = None
) -> None:
    """Install the formatter on ``logger`` (default: root) and on uvicorn's loggers, so that
    every record is written once, in one format: on the root logger it replaces any plain
    stream handler already there (``logging.basicConfig``'s: with both, each record was written
    twice, plain and JSON), and uvicorn's loggers write through it. uvicorn's access lines are
    dropped: the API writes its own, with the request id (:func:`access_log`)."""
    fmt = fmt or log_format()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(ContextFilter())
    target = logger or logging.getLogger()
    for h in list(target.handlers):
        # type(...) is: pytest's capture handlers subclass StreamHandler and stay
        if getattr(h, "_mixopt", False) or (logger is None and type(h) is logging.StreamHandler):
            target.removeHandler(h)
    handler._mixopt = True  # type: ignore[attr-defined]
    target.addHandler(handler)
    target.setLevel(level)
    if logger is None:
        for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
            lg = logging.getLogger(name)
            lg.handlers = []
            lg.propagate = name != "uvicorn.access"


access = logging.getLogger("mixopt.access")


def access_log(method: str, path: str, route: str, status: int, started: float) -> None:
    access.info(
        "%s %s %s",
        method,
        path,
        status,
        extra={
            "method": method,
            "path": path,
            "route": route,
            "status": status,
            "duration_ms": round(1000 * (time.perf_counter() - started), 2),
        },
    )
