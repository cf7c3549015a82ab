"""Claims, guarded writes and the reaper on the real database and broker of the run, without a
worker process (tests/workers/test_faults.py has the real workers): seconds in all."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import update

QUEUE = "claims-test"


@pytest.fixture
def job_id(db):
    from app.services import jobs as job_service
    from app.store.db import session_scope

    with session_scope() as s:
        job = job_service.create_job(
            s, kind="fit", project_id=None, params={"fit_id": 0}, queue=QUEUE
        )
        return job.id


def _job(job_id):
    from app.store.db import session_scope
    from app.store.models import Job

    with session_scope() as s:
        job = s.get(Job, job_id)
        s.expunge(job)
        return job


def _age(job_id, **fields_seconds):
    from app.store.db import session_scope
    from app.store.models import Job, utcnow

    with session_scope() as s:
        s.execute(
            update(Job)
            .where(Job.id == job_id)
            .values(**{f: utcnow() - timedelta(seconds=sec) for f, sec in fields_seconds.items()})
        )


def _drain(queue: str) -> None:
    from app.services.dispatch import sender

    with sender().connection_for_write() as conn:
        try:
            conn.default_channel.queue_purge(queue)
        except Exception:
            pass


def test_a_second_copy_cannot_claim_a_live_job_and_a_superseded_copy_stores_nothing(job_id):
    from workers.tasks import common

    first = common.claim(job_id)
    assert first is not None and first.attempt == 1
    assert common.claim(job_id) is None  # a duplicate message while the first copy heartbeats
    first.beat()
    assert not first.lost.is_set()

    _age(job_id, heartbeat_at=3600)  # the first copy's worker went silent
    second = common.claim(job_id)
    assert second is not None and second.attempt == 2

    first.beat()  # the first copy comes back: it learns it lost the claim
    assert first.lost.is_set()
    with pytest.raises(common.Superseded):
        first.progress(0.5, "half")
    stored = []
    assert first.finish({"by": "first"}, also=lambda s: stored.append(1) or {}) is False
    assert stored == []  # the claim check comes first: its results are never written
    assert _job(job_id).state == "running"
    assert second.finish({"by": "second"}) is True
    job = _job(job_id)
    assert job.state == "succeeded" and job.result == {"by": "second"} and job.attempts == 2


def test_cancel_is_seen_by_the_heartbeat_and_raised_at_the_next_progress_check(job_id, session):
    from app.services import jobs as job_service
    from app.store.models import Job
    from mixopt.progress import Cancelled
    from workers.tasks import common

    run = common.claim(job_id)
    run.progress(0.25, "fold 1/4")
    job_service.request_cancel(session, session.get(Job, job_id))
    run.beat()
    assert run.cancel.is_set() and _job(job_id).progress == 0.25
    with pytest.raises(Cancelled):
        run.progress(0.5, "fold 2/4")
    assert run.cancelled("cancelled by request at fold 2/4")
    job = _job(job_id)
    assert job.state == "cancelled" and job.message == "cancelled by request at fold 2/4"


def test_reaper_resends_lost_pending_jobs_bounded_and_cancels_jobs_of_dead_workers(db, monkeypatch):
    from app.core.config import get_settings
    from app.services import dispatch
    from app.services import jobs as job_service
    from app.store.db import session_scope
    from workers.tasks import common
    from workers.tasks.maintenance import reap_stale_jobs

    monkeypatch.setattr(get_settings(), "resend_batch", 2)
    # lost 60 s ago: past this reaper's 30 s, short of the 120 s of the session worker's own reaper
    # (which runs beside this test in the full suite and would otherwise re-send them first)
    monkeypatch.setattr(get_settings(), "pending_resend_seconds", 30.0)
    _drain(QUEUE)
    with session_scope() as s:
        ids = [
            job_service.create_job(
                s, kind="fit", project_id=None, params={"fit_id": 0}, queue=QUEUE
            ).id
            for _ in range(3)
        ]
        dead = job_service.create_job(
            s, kind="fit", project_id=None, params={"fit_id": 0}, queue=QUEUE
        ).id
    for j in ids:  # never sent (as if the broker lost the messages), created a minute ago
        _age(j, created_at=60)
    assert common.claim(dead) is not None
    with session_scope() as s:
        from app.store.models import Job

        job_service.request_cancel(s, s.get(Job, dead))
    _age(dead, heartbeat_at=3600, created_at=3600)  # its worker died with a cancel pending

    out = reap_stale_jobs()
    assert out["pending"] == 2 and out["cancelled"] == 1  # bounded per run
    assert [(_job(j).sends, _job(j).sent_at is not None) for j in ids].count((1, True)) == 2
    assert _job(dead).state == "cancelled" and "worker died" in _job(dead).message
    depth = dispatch.queue_depth(QUEUE)
    assert depth in (None, 2)

    out = reap_stale_jobs()  # the third now; the two re-sent ones are not sent again so soon
    assert out["pending"] == 1
    assert sorted(_job(j).sends for j in ids) == [1, 1, 1]
    _drain(QUEUE)


def test_reaper_resends_lost_jobs_on_a_queue_it_shares_with_housekeeping(db, monkeypatch):
    """Beat's own messages waiting on a job queue that is also MIXOPT_MAINTENANCE_QUEUE must not
    pass for the lost jobs' messages (the cause of a lost job waiting for the 120 s reaper of
    another worker in tests/workers/test_faults.py)."""
    from app.core.celery_config import REAP_STALE_JOBS
    from app.core.config import get_settings
    from app.services import dispatch
    from app.services import jobs as job_service
    from app.store.db import session_scope
    from workers.tasks.maintenance import reap_stale_jobs

    monkeypatch.setattr(get_settings(), "pending_resend_seconds", 30.0)
    monkeypatch.setattr(get_settings(), "maintenance_queue", QUEUE)
    _drain(QUEUE)
    with session_scope() as s:
        lost = job_service.create_job(
            s, kind="fit", project_id=None, params={"fit_id": 0}, queue=QUEUE
        ).id
    _age(lost, created_at=60)
    dispatch.sender().send_task(REAP_STALE_JOBS, queue=QUEUE)  # a housekeeping message waits
    if dispatch.queue_depth(QUEUE) is None:
        _drain(QUEUE)
        pytest.skip("this broker cannot say how many messages a queue holds")
    try:
        out = reap_stale_jobs()
        assert out["pending"] == 1 and _job(lost).sends == 1
        assert dispatch.queue_depth(QUEUE) == 2  # the reaper's message and the job's
    finally:
        _drain(QUEUE)
