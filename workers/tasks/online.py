"""Online re-mixing: beat ticks, the tick reads the due sessions from the database (so a new
session needs no restart) and each due session is re-mixed by its own task; a "re-mix now"
request is a ``remix`` job, claimed and ended like every other job."""

from __future__ import annotations

from app.core.celery_config import ONLINE_TICK, REMIX, REMIX_SESSION
from app.services import online as online_service
from app.store.db import session_scope
from workers.celery_app import celery_app
from workers.tasks import common


@celery_app.task(name=ONLINE_TICK)
def online_tick() -> list[int]:
    with session_scope() as s:
        due = online_service.due_sessions(s)
    for sid in due:
        remix_session.apply_async(args=[sid])
    return due


@celery_app.task(name=REMIX_SESSION)
def remix_session(session_id: int) -> int | None:
    """A scheduled re-mix (beat's tick); also serves messages queued before remix jobs existed."""
    with session_scope() as s:
        return online_service.remix(s, session_id)


@celery_app.task(name=REMIX, bind=True)
def remix_task(self, job_id: str) -> None:
    job = common.load_job(job_id)
    if job is None:
        return
    sid = job.params["session_id"]

    def body(run: common.JobRun) -> None:
        with session_scope() as s:  # remix commits itself (row lock, retried on a collision)
            version = online_service.remix(s, sid)
        message = f"version {version}" if version is not None else "nothing pending to re-mix"
        run.finish({"session_id": sid, "version": version}, message)

    common.run_job(job_id, body, task_id=self.request.id)
