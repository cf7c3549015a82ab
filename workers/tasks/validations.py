"""The validation tasks: train every (mixture, seed) run of a validation, on as many workers as
are free, then store the paired comparison (:mod:`app.services.validations`).

The runs were planned with the validation (status ``queued``, ``job_id`` the validation's job).
When the validation's job starts it creates up to ``MIXOPT_VALIDATION_PARALLEL - 1`` helper jobs
(kind ``validate_part``, on the validation's queue) and trains runs itself too. Every trainer
takes the next queued run by a conditional update (``queued -> running`` with ``job_id`` its own
job), so each run is trained by one job at a time, by whichever worker is free: with one worker
the validation's job trains them all and its helpers, started later, find nothing left.

- A job first resumes the runs it holds (``running`` under its own id): a message redelivered
  after its worker died resumes from the checkpoint. Checkpoints live under the validation's
  job (``checkpoints/<validation job>/<run>``), so whoever trains a run finds them.
- A helper that dies is re-sent by the reaper like any job; one that ends without storing its
  run gives the run back (``queued``) when cancelled, or fails it when its training raised.
- The validation's job, when nothing is left to take, waits for the runs its helpers hold (and
  takes back a run whose helper ended without it); a failed run fails the validation. A
  validation cancelled or failed stops its helpers at their next check (every 2 s).
- The comparison is stored once, by the validation's job, when every run has succeeded.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from sqlalchemy import select, update

from app.core.celery_config import VALIDATE, VALIDATE_PART
from app.core.config import get_settings
from app.services import dispatch
from app.services import jobs as job_service
from app.services import validations as svc
from app.store.db import session_scope
from app.store.models import Job, Project, Run, Validation, utcnow
from mixopt.api_types import FINAL_STATES
from mixopt.progress import Cancelled
from workers.celery_app import celery_app
from workers.tasks import common
from workers.tasks.training import ingest_project, record_trained

log = logging.getLogger("mixopt.worker")

#: seconds between a helper's looks at its validation's status, and between the validation
#: job's looks at runs its helpers hold
CHECK_SECONDS = 2.0


class _Progress:
    """Trainer callback: the job's progress, ``(done + step / total) / n`` with ``what`` in its
    message; stops the trainer on cancel, on a lost claim, or (``stop_if``, checked every
    CHECK_SECONDS) when the validation ended elsewhere."""

    def __init__(
        self, jr: common.JobRun, what: str, total: int, done: int = 0, n: int = 1, stop_if=None
    ):
        self.jr, self.what, self.total, self.done, self.n = jr, what, max(1, total), done, max(1, n)
        self.stop_if, self.step, self.checked = stop_if, 0, time.monotonic()

    def on_step_end(self, ctx, step: int, info: dict) -> None:
        self.step = step + 1
        try:
            self.jr.progress(
                (self.done + self.step / self.total) / self.n,
                f"{self.what}: step {self.step}/{self.total}, loss {info['loss']:.4f}",
            )
            if self.stop_if is not None and time.monotonic() - self.checked >= CHECK_SECONDS:
                self.checked = time.monotonic()
                reason = self.stop_if()
                if reason:
                    raise Cancelled(reason)
        except (Cancelled, common.Superseded):
            ctx.request_stop()


def mark_validation(validation_id: int, status: str):
    """The validation job's hook (and the reaper's): the validation and its unfinished runs end
    ``status``."""

    def mark(s, reason: str) -> None:
        v = s.get(Validation, validation_id)
        if v is not None and v.status != "succeeded":
            v.status, v.error, v.finished_at = status, reason, utcnow()
            for row in v.run_ids:
                for rid in row:
                    r = s.get(Run, rid)
                    if r is not None and r.status in ("queued", "running"):
                        r.status, r.error = status, reason

    return mark


def release_runs(helper_job_id: str, status: str):
    """A helper's hook: the runs it holds go back to ``queued`` (cancelled: another trainer
    takes them) or end ``failed`` (its training raised: the validation fails)."""

    def release(s, reason: str) -> None:
        for r in s.scalars(select(Run).where(Run.job_id == helper_job_id, Run.status == "running")):
            r.status, r.error = status, (reason if status == "failed" else None)

    return release


def _validation_stopped(vid: int) -> str | None:
    with session_scope() as s:
        status = s.scalar(select(Validation.status).where(Validation.id == vid))
    return None if status in ("pending", "running") else f"validation {vid} is {status}"


class _Trainer:
    """What the validation's job and its helpers share: the plan, the data, training one run."""

    def __init__(self, jr: common.JobRun, project_id: int, vid: int, validation_job_id: str):
        # lazy: mixopt.training needs the train extra (torch, tokenizers)
        from mixopt.training.trainer import set_threads

        settings = get_settings()
        if settings.torch_threads:
            set_threads(settings.torch_threads)
        self.jr, self.vid, self.validation_job_id = jr, vid, validation_job_id
        with session_scope() as s:
            v = s.get(Validation, vid)
            self.domains = [d.name for d in s.get(Project, v.project_id).domains]
            self.plan = {
                rid: (seed, m["label"], m["mixture"])
                for m, row in zip(v.mixtures, v.run_ids, strict=True)
                for seed, rid in zip(v.seeds, row, strict=True)
            }
            self.order = [rid for row in v.run_ids for rid in row]
            self.steps, self.preset, self.cfg = int(v.train_steps), v.preset, dict(v.settings or {})
        data = ingest_project(project_id)
        self.data = {d: data[d] for d in self.domains}
        self.home = Path(settings.home)

    def statuses(self) -> dict[int, tuple[str, str | None, str | None]]:
        with session_scope() as s:
            rows = s.execute(
                select(Run.id, Run.status, Run.job_id, Run.error).where(Run.id.in_(self.order))
            )
            return {rid: (status, job_id, error) for rid, status, job_id, error in rows}

    def take(
        self, states: dict[int, tuple[str, str | None, str | None]] | None = None
    ) -> int | None:
        """A run this job holds (resumed first), else the next queued run, claimed conditionally
        (``states``: :meth:`statuses` when the caller has just read them)."""
        me, states = self.jr.job_id, states if states is not None else self.statuses()
        for rid in self.order:
            if states[rid][0] == "running" and states[rid][1] == me:
                return rid
        for rid in (rid for rid in self.order if states[rid][0] == "queued"):
            with self.jr.write() as s:
                res = s.execute(
                    update(Run)
                    .where(Run.id == rid, Run.status == "queued")
                    .values(status="running", job_id=me, error=None)
                )
                if res.rowcount == 1:
                    return rid
        return None

    def train(self, rid: int, progress: _Progress) -> None:
        # lazy: mixopt.training needs the train extra (torch, tokenizers)
        from mixopt.training.trainer import TrainConfig, train

        seed, _label, mixture = self.plan[rid]
        cfg = self.cfg
        config = TrainConfig(
            preset=self.preset,
            max_steps=self.steps,
            seed=int(seed),
            batch_size=cfg.get("batch_size", 16),
            block_size=cfg.get("block_size", 128),
            eval_interval=cfg.get("eval_interval", 50),
            n_layer=cfg.get("n_layer"),
            n_head=cfg.get("n_head"),
            n_embd=cfg.get("n_embd"),
            weights=[float(mixture.get(d, 0.0)) for d in self.domains],
            checkpoint_dir=str(self.home / "checkpoints" / self.validation_job_id / str(rid)),
            **({"learning_rate": cfg["learning_rate"]} if cfg.get("learning_rate") else {}),
        )
        result = train(config, self.data, [progress], resume=True)
        if self.jr.cancel.is_set():
            raise Cancelled("cancelled by request")
        self.jr.check()
        if result.stopped:  # the validation ended elsewhere (helpers): store nothing
            raise Cancelled(_validation_stopped(self.vid) or "stopped")
        with self.jr.write() as s:
            r = s.get(Run, rid)
            if r.status != "running" or r.job_id != self.jr.job_id:
                return  # taken back (its validation ended): nothing to store
            record_trained(r, result, trained_by_job=self.jr.job_id)


# -- the validation's job -------------------------------------------------------------------------
@celery_app.task(name=VALIDATE, bind=True)
def validate_task(self, job_id: str) -> None:
    job = common.load_job(job_id)
    if job is None:
        return
    vid = job.params["validation_id"]
    common.run_job(
        job_id,
        lambda jr: _validate(jr, job, vid),
        task_id=self.request.id,
        on_fail=mark_validation(vid, "failed"),
        on_cancel=mark_validation(vid, "cancelled"),
    )


def _start_helpers(jr: common.JobRun, job, vid: int, queued: int) -> list[str]:
    """Create and send the helper jobs (once per validation: their ids are kept in the job's
    params, so a redelivered message creates none)."""
    wanted = min(get_settings().validation_parallel - 1, queued - 1)
    with jr.write() as s:
        row = s.get(Job, job.id)
        if "helpers" in (row.params or {}):
            return list(row.params["helpers"])
        helpers = [
            job_service.create_job(
                s,
                kind="validate_part",
                project_id=job.project_id,
                params={"validation_id": vid, "validation_job": job.id},
                queue=job.queue,
            )
            for _ in range(max(0, wanted))
        ]
        row.params = {**(row.params or {}), "helpers": [h.id for h in helpers]}
        ids = [h.id for h in helpers]
    for hid in ids:
        try:
            dispatch.send_job(hid)
        except Exception as exc:  # the broker is down: this job trains the runs itself
            log.warning(
                "validation %s: helper job %s not sent (%s: %s)", vid, hid, type(exc).__name__, exc
            )
    return ids


def _validate(jr: common.JobRun, job, vid: int) -> None:
    with jr.write() as s:
        v = s.get(Validation, vid)
        v.status, v.error = "running", None
    t = _Trainer(jr, job.project_id, vid, job.id)
    n = len(t.order)
    queued = sum(1 for status, _, _ in t.statuses().values() if status == "queued")
    helpers = _start_helpers(jr, job, vid, queued)
    t0 = time.perf_counter()
    while True:
        states = t.statuses()
        done = sum(1 for status, _, _ in states.values() if status == "succeeded")
        failed = [
            (rid, err)
            for rid, (status, _, err) in states.items()
            if status in ("failed", "cancelled")
        ]
        if failed:
            raise RuntimeError(
                f"run {failed[0][0]} of the validation did not succeed: {failed[0][1]}"
            )
        if done == n:
            break
        rid = t.take(states)
        if rid is not None:
            seed, label, _ = t.plan[rid]
            t.train(
                rid,
                _Progress(
                    jr,
                    f"run {t.order.index(rid) + 1}/{n} ({label}, seed {seed})",
                    t.steps,
                    done=done,
                    n=n,
                ),
            )
            continue
        _take_back(states, jr.job_id)
        jr.progress(
            done / n,
            f"{done}/{n} runs done; waiting for "
            f"{sum(1 for st, _, _ in states.values() if st == 'running')} trained by helper jobs",
        )
        time.sleep(CHECK_SECONDS)

    def save(s) -> dict[str, Any]:
        v = s.get(Validation, vid)
        runs = {rid: s.get(Run, rid) for row in v.run_ids for rid in row}
        v.result = svc.compare_runs(v, runs)
        v.status, v.finished_at = "succeeded", utcnow()
        trained_by = {r.details.get("trained_by_job") for r in runs.values() if r.details}
        return {
            "validation_id": vid,
            "train_s": time.perf_counter() - t0,
            "helpers": helpers,
            "trained_by_jobs": len(trained_by - {None}),
            "comparisons": [
                {
                    k: c[k]
                    for k in (
                        "label",
                        "reference",
                        "mean",
                        "interval_low",
                        "interval_high",
                        "wins",
                        "seeds",
                    )
                }
                for c in v.result["comparisons"]
            ],
        }

    jr.finish(None, "validated", also=save)


def _take_back(states: dict[int, tuple[str, str | None, str | None]], me: str) -> None:
    """Runs held by a helper job that has ended (without storing them) go back to ``queued``."""
    held = {job_id for status, job_id, _ in states.values() if status == "running" and job_id != me}
    if not held:
        return
    with session_scope() as s:
        ended = set(s.scalars(select(Job.id).where(Job.id.in_(held), Job.state.in_(FINAL_STATES))))
        for helper in ended:
            s.execute(
                update(Run)
                .where(Run.job_id == helper, Run.status == "running")
                .values(status="queued", error=None)
            )


# -- a helper job ---------------------------------------------------------------------------------
@celery_app.task(name=VALIDATE_PART, bind=True)
def validate_part_task(self, job_id: str) -> None:
    job = common.load_job(job_id)
    if job is None:
        return
    common.run_job(
        job_id,
        lambda jr: _help(jr, job),
        task_id=self.request.id,
        on_fail=release_runs(job_id, "failed"),
        on_cancel=release_runs(job_id, "queued"),
    )


def _help(jr: common.JobRun, job) -> None:
    vid, validation_job = job.params["validation_id"], job.params["validation_job"]
    stopped = _validation_stopped(vid)
    if stopped:
        jr.finish({"trained": []}, f"nothing to train: {stopped}")
        return
    t = _Trainer(jr, job.project_id, vid, validation_job)
    trained = []
    while True:
        stopped = _validation_stopped(vid)
        if stopped:
            raise Cancelled(stopped)
        rid = t.take()
        if rid is None:
            break
        seed, label, _ = t.plan[rid]
        t.train(
            rid,
            _Progress(
                jr,
                f"validation {vid}, run {rid} ({label}, seed {seed})",
                t.steps,
                stop_if=lambda: _validation_stopped(vid),
            ),
        )
        trained.append(rid)
    jr.finish(
        {"validation_id": vid, "trained": trained},
        f"trained {len(trained)} run(s) of validation {vid}"
        if trained
        else "nothing left to train",
    )
