"""What every task does around its science: claim the job row for one attempt, heartbeat from a
thread while it runs, report progress, stop on cancel, and finish, fail or cancel it, with every
write conditional on still holding the claim.

The rules that make a job finish exactly once (Celery's guidance: idempotent tasks under late
acks; the stale-job reaper in :mod:`workers.tasks.maintenance` is the other half):

- :func:`claim` moves a ``pending`` job (or a ``running`` one whose heartbeat stopped) to
  ``running`` with ``attempts + 1``, conditional on the attempt it read, so of two copies of a
  message only one claims it.
- While the task runs, a thread writes ``heartbeat_at`` (and the latest progress) every
  ``MIXOPT_HEARTBEAT_SECONDS``, whatever the task computes; the stale threshold
  (``MIXOPT_STALE_JOB_SECONDS``) is a few missed heartbeats, so only a dead worker's job goes
  stale, never a long healthy one.
- Every write (heartbeat, results, final state) requires ``attempts`` to still be this claim's:
  a copy that lost its claim (its job was taken over after a database outage, or cancelled and
  ended) stores nothing and stops at its next progress check (:class:`Superseded`).
- Cancel: the thread sees ``cancel_requested``; the task's progress callback raises
  :class:`mixopt.progress.Cancelled` at its next check (between candidates, folds, restarts,
  simulation batches, training steps). A task that has not stopped ``MIXOPT_CANCEL_GRACE_SECONDS``
  later is terminated: the thread ends the job ``cancelled`` and kills its pool process (Celery
  replaces it; the redelivered message finds the job ended and does nothing).
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import socket
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

from sqlalchemy import and_, func, or_, select, update

from app.core.config import get_settings
from app.store.db import session_scope
from app.store.models import Job, utcnow
from mixopt.progress import Cancelled

log = logging.getLogger("mixopt.worker")

#: set by the worker_process_init handler in workers.celery_app: this is a prefork pool process
#: (which may be killed to terminate a task that ignores its cancel)
IN_POOL_CHILD = False

#: ``hook(session, reason)``: mark the job's fit or run when the job fails or is cancelled
Hook = Callable[[Any, str], None]


class Superseded(Exception):  # noqa: N818 - a state, like Cancelled
    """This copy of the task no longer holds its job's claim: it must store nothing and stop."""


def worker_name() -> str:
    return f"{socket.gethostname()}/{os.getpid()}"


def _stale_cutoff():
    return utcnow() - timedelta(seconds=get_settings().stale_job_seconds)


def _is_stale(job: Job) -> bool:
    hb = job.heartbeat_at
    if hb is None:
        return True
    cutoff = _stale_cutoff()
    if hb.tzinfo is None:  # SQLite returns naive datetimes
        cutoff = cutoff.replace(tzinfo=None)
    return hb < cutoff


class JobRun:
    """One task copy's claim on a job: attempt number, heartbeat thread, progress, cancel."""

    def __init__(self, job_id: str, attempt: int, on_cancel: Hook | None = None):
        self.job_id, self.attempt, self.on_cancel = job_id, attempt, on_cancel
        self.cancel = threading.Event()  # a cancel was requested
        self.lost = threading.Event()  # the claim is gone (job ended elsewhere or taken over)
        self.done = threading.Event()  # the task ended: the thread stops
        self._fraction: float | None = None
        self._message: str | None = None
        self._cancel_seen: float | None = None
        self._main_thread = threading.get_ident()
        self._thread: threading.Thread | None = None
        self.ended = False

    # -- the heartbeat thread ---------------------------------------------------------------
    def start(self) -> JobRun:
        self._thread = threading.Thread(
            target=self._beat_loop, name=f"heartbeat-{self.job_id}", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self.done.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=10)

    def __enter__(self) -> JobRun:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _beat_loop(self) -> None:
        settings = get_settings()
        while not self.done.wait(settings.heartbeat_seconds):
            try:
                self.beat()
            except Exception as exc:  # the database may be restarting: keep beating
                log.warning(
                    "job %s: heartbeat failed (%s: %s)", self.job_id, type(exc).__name__, exc
                )
            if self._cancel_seen is not None and not self.done.is_set():
                self._enforce_grace(settings.cancel_grace_seconds)

    def beat(self) -> None:
        """Write the heartbeat and the latest progress; learn about a cancel or a lost claim."""
        values: dict[str, Any] = {"heartbeat_at": utcnow()}
        if self._fraction is not None:
            values["progress"] = self._fraction
        if self._message is not None:
            values["message"] = self._message
        with session_scope() as s:
            res = s.execute(
                update(Job)
                .where(Job.id == self.job_id, Job.attempts == self.attempt, Job.state == "running")
                .values(**values)
            )
            if res.rowcount != 1:
                self.lost.set()
                return
            if s.scalar(select(Job.cancel_requested).where(Job.id == self.job_id)):
                self._saw_cancel()

    def _saw_cancel(self) -> None:
        if self._cancel_seen is None:
            self._cancel_seen = time.monotonic()
            log.info("job %s: cancel requested; stopping at the next check", self.job_id)
        self.cancel.set()

    def _enforce_grace(self, grace: float) -> None:
        """Terminate a task that ignores its cancel: first an exception raised in its thread (it
        lands at the next Python bytecode), then, in a pool process, SIGKILL of the process."""
        waited = time.monotonic() - (self._cancel_seen or time.monotonic())
        if waited < grace:
            return
        if not self.ended:
            log.warning(
                "job %s did not stop within %.0f s of its cancel: terminating it",
                self.job_id,
                grace,
            )
            self.cancelled(f"cancelled: did not stop within {grace:.0f} s, terminated")
            ctypes.pythonapi.PyThreadState_SetAsyncExc(
                ctypes.c_ulong(self._main_thread), ctypes.py_object(Cancelled)
            )
        if IN_POOL_CHILD and waited >= grace + max(2.0, get_settings().heartbeat_seconds):
            log.warning("job %s: killing pool process %d", self.job_id, os.getpid())
            os.kill(os.getpid(), signal.SIGKILL)

    # -- progress -----------------------------------------------------------------------------
    def progress(self, fraction: float, message: str = "") -> None:
        """The ``mixopt.progress`` callback: record progress (written with the next heartbeat),
        raise :class:`Cancelled` when a cancel was requested, :class:`Superseded` when the claim
        is gone."""
        self._fraction = max(0.0, min(1.0, float(fraction)))
        if message:
            self._message = message
        self.check()

    def check(self) -> None:
        if self.lost.is_set():
            raise Superseded(f"job {self.job_id} attempt {self.attempt} no longer holds its claim")
        if self.cancel.is_set():
            raise Cancelled("cancelled by request")

    @property
    def should_stop(self) -> bool:
        return self.cancel.is_set() or self.lost.is_set()

    # -- guarded writes -------------------------------------------------------------------------
    @contextmanager
    def write(self) -> Iterator[Any]:
        """A transaction that commits only while this attempt still holds the job (the job row's
        conditional update comes first, so on PostgreSQL it also locks the row until commit)."""
        with session_scope() as s:
            res = s.execute(
                update(Job)
                .where(Job.id == self.job_id, Job.attempts == self.attempt, Job.state == "running")
                .values(heartbeat_at=utcnow())
            )
            if res.rowcount != 1:
                self.lost.set()
                raise Superseded(
                    f"job {self.job_id} attempt {self.attempt} no longer holds its claim"
                )
            yield s

    def _end(
        self,
        state: str,
        message: str,
        *,
        result: dict | None = None,
        error: str | None = None,
        also: Callable[[Any], dict[str, Any] | None] | None = None,
    ) -> bool:
        try:
            with self.write() as s:
                if also is not None:
                    result = {**(result or {}), **(also(s) or {})}
                values: dict[str, Any] = {
                    "state": state,
                    "message": message,
                    "finished_at": utcnow(),
                    "heartbeat_at": utcnow(),
                }
                if state == "succeeded":
                    values |= {"progress": 1.0, "result": result}
                if error is not None:
                    values["error"] = error
                s.execute(
                    update(Job)
                    .where(Job.id == self.job_id, Job.attempts == self.attempt)
                    .values(**values)
                )
        except Superseded:
            log.info("job %s attempt %d: not stored (claim lost)", self.job_id, self.attempt)
            return False
        self.ended = True
        return True

    def finish(
        self,
        result: dict[str, Any] | None = None,
        message: str = "done",
        also: Callable[[Any], dict[str, Any] | None] | None = None,
    ) -> bool:
        """End ``succeeded``; ``also(session)`` writes the task's results in the same
        transaction and may return more fields for the job's ``result``."""
        return self._end("succeeded", message, result=result, also=also)

    def fail(self, exc: BaseException, also: Hook | None = None) -> bool:
        reason = f"{type(exc).__name__}: {exc}"
        log.error("job %s failed: %s\n%s", self.job_id, reason, traceback.format_exc())
        return self._end(
            "failed", "failed", error=reason, also=(lambda s: also(s, reason)) if also else None
        )

    def cancelled(self, reason: str = "cancelled by request") -> bool:
        hook = self.on_cancel
        return self._end("cancelled", reason, also=(lambda s: hook(s, reason)) if hook else None)


def claim(job_id: str, task_id: str | None = None, on_cancel: Hook | None = None) -> JobRun | None:
    """Move the job to ``running`` for a new attempt; None if another copy holds it or it ended.

    A job left ``running`` by a dead worker (heartbeat older than ``MIXOPT_STALE_JOB_SECONDS``)
    can be claimed again: that is how a redelivered message resumes work. A job whose cancel was
    requested is ended ``cancelled`` here when nobody runs it (pending, or its worker died).
    """
    now = utcnow()
    cutoff = _stale_cutoff()
    with session_scope() as s:
        job = s.get(Job, job_id)
        if job is None or job.state not in ("pending", "running"):
            log.info("job %s not claimed (%s)", job_id, "missing" if job is None else job.state)
            return None
        attempt = job.attempts
        free = or_(
            Job.state == "pending",
            and_(
                Job.state == "running", or_(Job.heartbeat_at.is_(None), Job.heartbeat_at < cutoff)
            ),
        )
        if job.cancel_requested:
            reason = (
                "cancelled before it started"
                if job.state == "pending"
                else "cancelled: its worker died"
            )
            res = s.execute(
                update(Job)
                .where(Job.id == job_id, Job.attempts == attempt, free)
                .values(state="cancelled", message=reason, finished_at=now)
            )
            if res.rowcount == 1 and on_cancel is not None:
                on_cancel(s, reason)
            return None
        res = s.execute(
            update(Job)
            .where(Job.id == job_id, Job.attempts == attempt, Job.cancel_requested.is_(False), free)
            .values(
                state="running",
                attempts=attempt + 1,
                heartbeat_at=now,
                worker=worker_name(),
                task_id=task_id,
                started_at=func.coalesce(Job.started_at, now),
                message="started",
                error=None,
            )
        )
        if res.rowcount != 1:
            log.info("job %s not claimed (taken by a live attempt)", job_id)
            return None
    log.info("executing job %s attempt %d", job_id, attempt + 1)
    return JobRun(job_id, attempt + 1, on_cancel=on_cancel)


def run_job(
    job_id: str,
    body: Callable[[JobRun], None],
    *,
    task_id: str | None = None,
    on_fail: Hook | None = None,
    on_cancel: Hook | None = None,
) -> None:
    """Claim the job and run ``body(run)`` with a heartbeat thread; ``body`` ends the job with
    ``run.finish``. A :class:`Cancelled` ends it ``cancelled``, any other error ``failed``
    (``on_fail``/``on_cancel`` mark the fit or run in the same transaction); a copy that lost
    its claim stores nothing."""
    run = claim(job_id, task_id=task_id, on_cancel=on_cancel)
    if run is None:
        return
    with run:
        try:
            body(run)
        except Superseded:
            log.info("job %s attempt %d stopped: claim lost", job_id, run.attempt)
        except Cancelled as exc:
            if not run.ended:
                run.cancelled(str(exc) or "cancelled by request")
        except Exception as exc:
            if not run.ended:
                run.fail(exc, also=on_fail)


def load_job(job_id: str) -> Job | None:
    with session_scope() as s:
        job = s.get(Job, job_id)
        if job is not None:
            s.expunge(job)
        return job


def accepts_progress(fn: Callable[..., Any]) -> bool:
    """Whether ``fn`` takes a named ``progress=`` parameter (the science adds them one by one)."""
    import inspect

    try:
        return "progress" in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
