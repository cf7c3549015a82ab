"""The validation task: train every (mixture, seed) run of a validation, then store the paired
comparison (:mod:`app.services.validations`).

The runs were planned with the validation (status ``queued``). Each is trained in turn in this
task; a run that already succeeded (a redelivered message after a worker died) is not trained
again, and the run being trained resumes from its checkpoint, so a validation is stored once.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from app.core.config import get_settings
from app.services import validations as svc
from app.store.models import Project, Run, Validation, utcnow
from mixopt.progress import Cancelled
from workers.celery_app import celery_app
from workers.tasks import common
from workers.tasks.training import ingest_project


class _Progress:
    """Trainer callback: the validation's overall progress; stops the trainer on cancel."""

    def __init__(self, jr: common.JobRun, done: int, n_runs: int, total_steps: int, label: str, seed: int):
        self.jr, self.done, self.n, self.total = jr, done, max(1, n_runs), max(1, total_steps)
        self.label, self.seed, self.step = label, seed, 0

    def on_step_end(self, ctx, step: int, info: dict) -> None:
        self.step = step + 1
        try:
            self.jr.progress((self.done + (step + 1) / self.total) / self.n,
                             f"run {self.done + 1}/{self.n} ({self.label}, seed {self.seed}): step "
                             f"{step + 1}/{self.total}, loss {info['loss']:.4f}")
        except (Cancelled, common.Superseded):
            ctx.request_stop()


def _mark(validation_id: int, status: str):
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


@celery_app.task(name="mixopt.validate", bind=True)
def validate_task(self, job_id: str) -> None:
    job = common.load_job(job_id)
    if job is None:
        return
    vid = job.params["validation_id"]
    common.run_job(job_id, lambda jr: _validate(jr, job, vid), task_id=self.request.id,
                   on_fail=_mark(vid, "failed"), on_cancel=_mark(vid, "cancelled"))


def _validate(jr: common.JobRun, job, vid: int) -> None:
    from mixopt.training.trainer import TrainConfig, set_threads, train

    settings = get_settings()
    if settings.torch_threads:
        set_threads(settings.torch_threads)
    with jr.write() as s:
        v = s.get(Validation, vid)
        v.status, v.error = "running", None
        domains = [d.name for d in s.get(Project, v.project_id).domains]
        plan = [(i, seed, rid, m["label"], m["mixture"])
                for i, (m, row) in enumerate(zip(v.mixtures, v.run_ids, strict=True))
                for seed, rid in zip(v.seeds, row, strict=True)]
        done_ids = {rid for _, _, rid, _, _ in plan if s.get(Run, rid).status == "succeeded"}
        steps, preset, cfg = int(v.train_steps), v.preset, dict(v.settings or {})
    data = ingest_project(job.project_id)
    data = {d: data[d] for d in domains}
    t0 = time.perf_counter()
    for n_done, (_i, seed, rid, label, mixture) in enumerate(plan):
        if rid in done_ids:
            continue
        with jr.write() as s:
            r = s.get(Run, rid)
            r.status, r.error = "running", None
        config = TrainConfig(
            preset=preset, max_steps=steps, seed=int(seed), batch_size=cfg.get("batch_size", 16),
            block_size=cfg.get("block_size", 128), eval_interval=cfg.get("eval_interval", 50),
            n_layer=cfg.get("n_layer"), n_head=cfg.get("n_head"), n_embd=cfg.get("n_embd"),
            weights=[float(mixture.get(d, 0.0)) for d in domains],
            checkpoint_dir=str(Path(settings.home) / "checkpoints" / job.id / str(rid)),
            **({"learning_rate": cfg["learning_rate"]} if cfg.get("learning_rate") else {}))
        progress = _Progress(jr, n_done, len(plan), config.total_steps(), label, int(seed))
        result = train(config, data, [progress], resume=True)
        if jr.cancel.is_set():
            raise Cancelled(f"cancelled by request in run {n_done + 1}/{len(plan)}")
        jr.check()
        with jr.write() as s:
            r = s.get(Run, rid)
            r.metrics = {**{f"val_loss/{k}": float(x) for k, x in result.final_val_losses.items()},
                         **{f"val_bpb/{k}": float(x) for k, x in result.final_val_bpb.items()}}
            r.status, r.model_params, r.updated_at = "succeeded", int(result.n_params), utcnow()
            r.train_steps, r.train_tokens = int(result.steps), int(result.tokens)
            r.details = {**(r.details or {}), "tokens_per_s": result.tokens_per_s, "device": result.device}

    def save(s) -> dict[str, Any]:
        v = s.get(Validation, vid)
        runs = {rid: s.get(Run, rid) for row in v.run_ids for rid in row}
        v.result = svc.compare_runs(v, runs)
        v.status, v.finished_at = "succeeded", utcnow()
        return {"validation_id": vid, "train_s": time.perf_counter() - t0,
                "comparisons": [{k: c[k] for k in ("label", "reference", "mean", "interval_low", "interval_high",
                                                     "wins", "seeds")} for c in v.result["comparisons"]]}

    jr.finish(None, "validated", also=save)
