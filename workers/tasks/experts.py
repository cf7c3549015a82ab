"""The expert-training task (Mixture of Data Experts, Belenki et al. 2025): train one model per
domain on that domain alone, then store its probability of every observed next token of each
validation domain (:mod:`app.services.experts`).

One job trains the experts it planned one after the other (``params.expert_ids``), each like a
proxy run (the trainer of :mod:`workers.tasks.training`, GPU when there is one, CPU otherwise),
with checkpoints under ``$MIXOPT_HOME/checkpoints/<job id>/expert-<id>``. Resumable: an expert is
``succeeded`` only once its files and losses are stored, in one transaction; a redelivered job
(its worker killed) skips the succeeded experts and resumes the others from their last
checkpoint, so no finished expert is trained again. A training that reached its budget but
died before storing resumes at its last step and only computes the probabilities.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import select

from app.core.celery_config import TRAIN_EXPERTS
from app.core.config import get_settings
from app.services import experts as svc
from app.store.db import session_scope
from app.store.models import Expert, Project
from mixopt.progress import Cancelled
from workers.celery_app import celery_app
from workers.tasks import common
from workers.tasks.training import ingest_project
from workers.tasks.validations import _Progress


class _KeepModel:
    """Trainer callback: keeps the trained model (``ctx.model``) at the end of training."""

    model: Any = None

    def on_train_end(self, ctx, result) -> None:
        self.model = ctx.model


def mark_experts(job_id: str, status: str):
    """The job's hook (and the reaper's): its unfinished experts end ``status``."""

    def mark(s, reason: str) -> None:
        for e in s.scalars(select(Expert).where(Expert.job_id == job_id)):
            if e.status in svc.ACTIVE:
                e.status, e.error = status, reason

    return mark


@celery_app.task(name=TRAIN_EXPERTS, bind=True)
def train_experts_task(self, job_id: str) -> None:
    job = common.load_job(job_id)
    if job is None:
        return
    common.run_job(
        job_id,
        lambda run: _train_all(run, job),
        task_id=self.request.id,
        on_fail=mark_experts(job_id, "failed"),
        on_cancel=mark_experts(job_id, "cancelled"),
    )


def _config(p: dict[str, Any], domains: list[str], domain: str, ckpt: Path):
    # lazy: mixopt.training needs the train extra (torch, tokenizers)
    from mixopt.training.trainer import TrainConfig

    return TrainConfig(
        preset=p["preset"],
        max_steps=p.get("train_steps"),
        max_tokens=p.get("train_tokens"),
        seed=int(p["seed"]),
        batch_size=int(p["batch_size"]),
        block_size=int(p["block_size"]),
        eval_interval=int(p["eval_interval"]),
        eval_batches=svc.EVAL_BATCHES,
        weights=[1.0 if d == domain else 0.0 for d in domains],
        checkpoint_dir=str(ckpt),
        **({"learning_rate": p["learning_rate"]} if p.get("learning_rate") else {}),
    )


def _train_all(jr: common.JobRun, job) -> None:
    from mixopt.training.trainer import set_threads

    if get_settings().torch_threads:
        set_threads(get_settings().torch_threads)
    ids = list(job.params["expert_ids"])
    with session_scope() as s:
        domains = [d.name for d in s.get(Project, job.project_id).domains]
    data = ingest_project(job.project_id)
    data = {d: data[d] for d in domains}
    done = 0
    for i, eid in enumerate(ids):
        with jr.write() as s:
            e = s.get(Expert, eid)
            if e is None or e.job_id != job.id:
                continue  # deleted, or replaced by another request
            if e.status == "succeeded":
                done += 1
                continue  # stored by an earlier attempt: never trained again
            e.status, e.error = "running", None
            domain = e.domain
        if domain not in data:
            raise RuntimeError(f"domain {domain!r} is no longer a domain of the project")
        _train_one(jr, job, eid, domain, domains, data, i, len(ids))
        done += 1
    jr.finish({"experts": done}, f"trained {done} experts")


def _train_one(jr, job, eid: int, domain: str, domains, data, i: int, n: int) -> None:
    from mixopt.training.experts import next_token_probs
    from mixopt.training.trainer import train

    p = job.params
    ckpt = Path(get_settings().home) / "checkpoints" / job.id / f"expert-{eid}"
    config = _config(p, domains, domain, ckpt)
    progress = _Progress(jr, f"expert {domain} ({i + 1}/{n})", config.total_steps(), i, n)
    keep = _KeepModel()
    result = train(config, data, [progress, keep], resume=True)
    if jr.cancel.is_set():
        raise Cancelled(f"cancelled by request while training the expert for {domain!r}")
    jr.check()
    if result.stopped:
        raise Cancelled(f"stopped while training the expert for {domain!r}")
    windows = svc.EVAL_BATCHES * int(p["batch_size"])
    probs = {
        v: np.asarray(
            next_token_probs(
                keep.model,
                data[v].val,
                block_size=int(p["block_size"]),
                n_windows=windows,
                batch_size=int(p["batch_size"]),
                device=result.device,
            )
        )
        for v in domains
    }
    n_val = {v: int(data[v].n_val_tokens) for v in domains}
    with jr.write() as s:
        e = s.get(Expert, eid)
        if e is None or e.job_id != job.id:
            return  # deleted while training: nothing to store
        project = s.get(Project, job.project_id)
        for d in project.domains:
            if d.name in probs:
                svc.store_probs(e, d, probs[d.name], n_val[d.name])
        e.status, e.error = "succeeded", None
        e.train_steps, e.train_tokens = int(result.steps), int(result.tokens)
        e.details = {
            "device": result.device,
            "n_params": int(result.n_params),
            "tokens_per_s": result.tokens_per_s,
            "trainer_val_losses": {k: float(v) for k, v in result.final_val_losses.items()},
            "resumed_from": result.resumed_from,
        }
