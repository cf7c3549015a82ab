"""Worker logs in the API's format (``MIXOPT_LOG_FORMAT=json``, app.core.logs), and every line a
task writes while running a job carries the job's id and the request id that created it.

Housekeeping is logged at debug: beat's "Sending due task", the worker's "received" and
"succeeded" lines of the stale-job reaper and of the online ticks (every few seconds, all day:
an idle worker's log grew 900 KB in 80 minutes). What housekeeping does (a job re-sent, a
session re-mixed) and every failure stay at info and above.
"""

from __future__ import annotations

import logging

from celery import signals
from sqlalchemy import select

from app.core import logs
from app.core.celery_config import ONLINE_TICK, REAP_STALE_JOBS
from app.core.config import get_settings
from app.store.db import session_scope
from app.store.models import Job

_tokens: dict[str, tuple] = {}

#: the tasks beat sends on a schedule (MIXOPT_REAP_INTERVAL_SECONDS, MIXOPT_ONLINE_TICK_SECONDS)
HOUSEKEEPING = frozenset({REAP_STALE_JOBS, ONLINE_TICK})
#: the Celery loggers that write a line per scheduled send, receipt and success
ROUTINE_LOGGERS = ("celery.beat", "celery.worker.strategy", "celery.app.trace")


def is_housekeeping(record: logging.LogRecord) -> bool:
    """Whether an info record is Celery's routine line about a housekeeping task: its
    arguments name the task (a dict with ``name`` for the worker's lines, ``(entry, task)``
    for beat's)."""
    if record.levelno != logging.INFO:
        return False
    args = record.args
    if isinstance(args, dict):
        return args.get("name") in HOUSEKEEPING
    return isinstance(args, tuple) and any(isinstance(a, str) and a in HOUSEKEEPING for a in args)


class HousekeepingAtDebug(logging.Filter):
    """Demotes Celery's routine lines about housekeeping tasks to debug (written only when the
    logger is enabled for debug, ``--loglevel DEBUG``), unless
    ``MIXOPT_HOUSEKEEPING_LOG_LEVEL=info`` keeps them at info."""

    def __init__(self) -> None:
        super().__init__()
        self.keep = get_settings().housekeeping_log_level == "info"

    def filter(self, record: logging.LogRecord) -> bool:
        if self.keep or not is_housekeeping(record):
            return True
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)


def install_housekeeping_filter() -> None:
    for name in ROUTINE_LOGGERS:
        lg = logging.getLogger(name)
        if not any(isinstance(f, HousekeepingAtDebug) for f in lg.filters):
            lg.addFilter(HousekeepingAtDebug())


install_housekeeping_filter()


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
