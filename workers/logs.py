"""Worker logs in the API's format (``MIXOPT_LOG_FORMAT=json``, app.core.logs), and every line a
task writes while running a job carries the job's id and the request id that created it."""

from __future__ import annotations

import logging

from celery import signals
from sqlalchemy import select

from app.core import logs
from app.store.db import session_scope
from app.store.models import Job

_tokens: dict[str, tuple] = {}


def _format(logger: logging.Logger) -> None:
    if logs.log_format() != "json":
        for handler in logger.handlers:
            handler.addFilter(logs.ContextFilter())
        return
    for handler in logger.handlers:
        handler.setFormatter(logs.JsonFormatter())
        handler.addFilter(logs.ContextFilter())


@signals.after_setup_logger.connect
def _setup_logger(logger: logging.Logger, *args, **kwargs) -> None:
    _format(logger)


@signals.after_setup_task_logger.connect
def _setup_task_logger(logger: logging.Logger, *args, **kwargs) -> None:
    _format(logger)


def _request_id(job_id: str) -> str | None:
    try:
        with session_scope() as s:
            return s.scalar(select(Job.request_id).where(Job.id == job_id))
    except Exception:  # logging must never stop a task
        return None


@signals.task_prerun.connect
def _bind(task_id: str, task, args=(), kwargs=None, **_) -> None:
    job_id = (kwargs or {}).get("job_id") or (
        args[0] if args and isinstance(args[0], str) else None
    )
    if not job_id:
        return
    _tokens[task_id] = (logs.job_id_var.set(job_id), logs.request_id_var.set(_request_id(job_id)))


@signals.task_postrun.connect
def _unbind(task_id: str, *args, **kwargs) -> None:
    tokens = _tokens.pop(task_id, None)
    if tokens:
        logs.request_id_var.reset(tokens[1])
        logs.job_id_var.reset(tokens[0])
