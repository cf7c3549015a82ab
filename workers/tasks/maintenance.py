"""Periodic housekeeping (run by beat every ``MIXOPT_REAP_INTERVAL_SECONDS``): nothing stays
``running`` or ``pending`` for ever.

- A ``running`` job whose heartbeat stopped (older than ``MIXOPT_STALE_JOB_SECONDS``: its
  worker died) is sent again; the new copy's claim is conditional on the attempt, so it runs
  once. If its cancel was requested, it is ended ``cancelled`` instead.
- A ``running`` job whose cancel is older than twice ``MIXOPT_CANCEL_GRACE_SECONDS`` (its own
  heartbeat thread terminates it after one grace period; this is the backstop when that thread is
  stuck too) is revoked with terminate and ended ``cancelled``.
- A ``pending`` job whose message was last sent more than ``MIXOPT_PENDING_RESEND_SECONDS`` ago
  is sent again when its queue holds fewer messages than the queue has pending jobs (a broker
  restarted without persistence lost them), as many as are missing (all of them on the
  housekeeping queue, whose depth counts beat's messages too), at most
  ``MIXOPT_RESEND_BATCH`` per tick, oldest first; each send is counted on the job (``sends``,
  ``sent_at``).
"""

from __future__ import annotations

import logging
from datetime import timedelta

from sqlalchemy import func, select, update

from app.core.celery_config import REAP_STALE_JOBS
from app.core.config import get_settings
from app.services.dispatch import queue_depth, send_job
from app.store.db import session_scope
from app.store.models import Fit, Job, Run, utcnow
from workers.celery_app import celery_app
from workers.tasks.experts import mark_experts
from workers.tasks.validations import mark_validation, release_runs

log = logging.getLogger("mixopt.reaper")


def _mark_target(s, job: Job, reason: str) -> None:
    """Say on the job's run or fit why it stopped."""
    p = job.params or {}
    if job.kind == "train" and p.get("run_id"):
        r = s.get(Run, p["run_id"])
        if r is not None and r.status != "succeeded":
            r.status, r.error = "cancelled", reason
    elif (
        job.kind in ("fit", "recommend")
        and p.get("fit_id")
        and (job.kind == "fit" or p.get("fit_first"))
    ):
        f = s.get(Fit, p["fit_id"])
        if f is not None and f.status != "succeeded":
            f.status, f.error, f.finished_at = "cancelled", reason, utcnow()
    elif job.kind == "validate" and p.get("validation_id"):
        mark_validation(p["validation_id"], "cancelled")(s, reason)
    elif job.kind == "validate_part":
        release_runs(job.id, "queued")(s, reason)  # the validation's job takes its runs back
    elif job.kind == "train_experts":
        mark_experts(job.id, "cancelled")(s, reason)


def _cancel_ended(s, job: Job, reason: str) -> bool:
    res = s.execute(
        update(Job)
        .where(Job.id == job.id, Job.attempts == job.attempts, Job.state == "running")
        .values(state="cancelled", message=reason, finished_at=utcnow())
    )
    if res.rowcount == 1:
        _mark_target(s, job, reason)
        return True
    return False


@celery_app.task(name=REAP_STALE_JOBS)
def reap_stale_jobs() -> dict[str, int]:
    """One pass of the reaper; returns how many jobs it re-sent, resent while pending, or
    cancelled."""
    settings = get_settings()
    now = utcnow()
    stale_cutoff = now - timedelta(seconds=settings.stale_job_seconds)
    cancel_cutoff = now - timedelta(seconds=2 * settings.cancel_grace_seconds)
    pending_cutoff = now - timedelta(seconds=settings.pending_resend_seconds)
    counts = {"stale": 0, "pending": 0, "cancelled": 0}
    to_send: list[tuple[str, str]] = []
    to_revoke: list[str] = []
    with session_scope() as s:
        # a stale job is sent again at most once per stale period (until a worker claims it)
        stale = list(
            s.scalars(
                select(Job).where(
                    Job.state == "running",
                    Job.heartbeat_at < stale_cutoff,
                    func.coalesce(Job.sent_at, Job.created_at) < stale_cutoff,
                )
            )
        )
        for job in stale:
            if job.cancel_requested:
                if _cancel_ended(s, job, "cancelled: its worker died"):
                    counts["cancelled"] += 1
            else:
                to_send.append((job.id, "stale"))
        stuck = list(
            s.scalars(
                select(Job).where(
                    Job.state == "running",
                    Job.cancel_requested.is_(True),
                    Job.cancel_requested_at < cancel_cutoff,
                )
            )
        )
        for job in stuck:
            if _cancel_ended(
                s,
                job,
                f"cancelled: did not stop within {settings.cancel_grace_seconds:.0f} s, terminated",
            ):
                counts["cancelled"] += 1
                if job.task_id:
                    to_revoke.append(job.task_id)
        pending = dict(
            s.execute(
                select(Job.queue, func.count())
                .where(Job.state == "pending", Job.cancel_requested.is_(False))
                .group_by(Job.queue)
            ).all()
        )
    # per queue: as many messages waiting as pending jobs means they are waiting their turn; the
    # shortfall is re-sent, oldest first. Chosen per queue so that old jobs on a queue nobody
    # consumes (their messages are all there) never hide newer lost ones on another queue
    last_sent = func.coalesce(Job.sent_at, Job.created_at)
    budget = settings.resend_batch
    for queue, count in sorted(pending.items(), key=lambda kv: kv[0] or ""):
        if budget <= 0:
            break
        # on the housekeeping queue the depth counts beat's own reaper and tick messages too, which
        # can hide lost jobs for good (a busy worker lets them pile up): untrusted there, like a
        # broker that cannot say, so every pending job past the cutoff is sent again (a duplicate
        # message is harmless: claims are conditional)
        name = queue or "default"
        depth = None if name == settings.maintenance_queue else queue_depth(name)
        missing = count if depth is None else max(0, count - depth)
        if not missing:
            continue
        in_queue = Job.queue.is_(None) if queue is None else Job.queue == queue
        with session_scope() as s:
            ids = list(
                s.scalars(
                    select(Job.id)
                    .where(
                        Job.state == "pending",
                        Job.cancel_requested.is_(False),
                        in_queue,
                        last_sent < pending_cutoff,
                    )
                    .order_by(last_sent, Job.id)
                    .limit(min(missing, budget))
                )
            )
        to_send.extend((job_id, "pending") for job_id in ids)
        budget -= len(ids)
    for job_id, why in to_send:
        try:
            send_job(job_id)
        except Exception as exc:  # broker down: the next tick tries again
            log.warning("could not re-send job %s (%s)", job_id, exc)
            continue
        counts[why] += 1
        log.info("re-sent %s job %s", why, job_id)
    for task_id in to_revoke:
        try:
            celery_app.control.revoke(task_id, terminate=True, signal="SIGKILL")
        except (
            Exception
        ) as exc:  # transports without broadcast (SQLAlchemy): the thread's kill is the path
            log.info("revoke of %s not delivered (%s)", task_id, exc)
    return counts
