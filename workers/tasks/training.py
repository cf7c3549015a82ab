"""Training and ingestion tasks: load from the store, call mixopt.training, save.

A training job checkpoints every ``checkpoint_interval`` steps under
``$MIXOPT_HOME/checkpoints/<job id>``; when a worker dies mid-run, the redelivered message (late
acks) or the stale-job reaper runs the task again, it claims the job again and ``train`` resumes
from the last checkpoint, and the run row (created when the swarm was planned) gets its
metrics exactly once.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import select, update

from app.core.celery_config import INGEST_DOMAIN, SWARM_ROUNDS, TRAIN_RUN
from app.core.config import get_settings
from app.schemas.runs import CurvePointCreate
from app.services import dispatch, sources
from app.services import runs as run_service
from app.services import swarms as swarm_service
from app.store.db import session_scope
from app.store.models import Domain, Job, Project, Recommendation, Run, utcnow
from mixopt.mixing.entropy import domain_entropies
from mixopt.online.base import make_mixer
from mixopt.progress import Cancelled
from workers.celery_app import celery_app
from workers.tasks import common


def _load_domains(project_id: int) -> list[dict[str, Any]]:
    with session_scope() as s:
        project = s.get(Project, project_id)
        return [
            {"name": d.name, "source": d.source, "admin": bool(d.source_admin)}
            for d in project.domains
        ]


def ingest_project(project_id: int, run: common.JobRun | None = None) -> dict[str, Any]:
    """Tokenise every domain with a source (cached by content hash) and store measured counts."""
    # lazy: mixopt.training needs the train extra (torch, tokenizers)
    from mixopt.training.data import ingest_domain
    from mixopt.training.tokenizer import load_tokenizer

    settings = get_settings()
    domains = _load_domains(project_id)
    out = {}
    for i, d in enumerate(domains):
        if not d["source"]:
            continue
        src = d["source"]
        # defence in depth: the API checked the paths; check again with the roots of the token
        # that registered the source (roots may have changed, a row may predate them, a file or
        # directory may since have become a symlink) and let ingestion read only files that
        # resolve inside them
        sources.check_source_files(
            src, field=f"domains[{i}].source", admin=d["admin"], settings=settings
        )
        tok = load_tokenizer(src.get("tokenizer"), max_bytes=settings.max_tokenizer_bytes)
        data = ingest_domain(
            d["name"],
            src["path"],
            settings.home / "shards",
            tok,
            text_field=src.get("text_field", "text"),
            roots=sources.allowed_roots(settings, admin=d["admin"]),
        )
        out[d["name"]] = data
        if run is not None:
            run.progress((i + 1) / len(domains), f"ingested {d['name']}")

    # entropy statistics for the training-free entropy mixtures (BiMix), on at most 4M tokens a
    # domain: computed when a domain has none for its current shards (3 s for the 7 demo domains,
    # which every training task paid at its start before they were kept)
    with session_scope() as s:
        known = {
            row.name: (row.stats or {})
            for row in s.scalars(select(Domain).where(Domain.project_id == project_id))
        }

    def shards(d) -> str | None:  # the shard directory is named by the content's hash
        return d.path.name if d.path is not None else None

    todo = {
        name: d
        for name, d in out.items()
        if not known.get(name, {}).get("entropy")
        or shards(d) is None
        or known[name].get("shards") != shards(d)
    }
    entropies = (
        domain_entropies({name: np.asarray(d.train[:4_000_000]) for name, d in todo.items()})
        if todo
        else {}
    )
    with session_scope() as s:
        for row in s.scalars(select(Domain).where(Domain.project_id == project_id)):
            if row.name in out:
                d = out[row.name]
                row.token_count = int(d.n_train_tokens)
                row.token_count_measured = True
                entropy = (
                    entropies.get(row.name, {})
                    if row.name in todo
                    else (row.stats or {}).get("entropy", {})
                )
                row.stats = {
                    "train_tokens": int(d.n_train_tokens),
                    "val_tokens": int(d.n_val_tokens),
                    "bytes": int(d.n_bytes),
                    "shards": shards(d),
                    "entropy": entropy,
                }
    return out


@celery_app.task(name=INGEST_DOMAIN, bind=True)
def ingest_task(self, job_id: str) -> None:
    job = common.load_job(job_id)
    if job is None:
        return

    def body(run: common.JobRun) -> None:
        data = ingest_project(job.project_id, run)
        run.finish(
            {
                "domains": {
                    k: {
                        "train_tokens": int(v.n_train_tokens),
                        "val_tokens": int(v.n_val_tokens),
                        "bytes": int(v.n_bytes),
                    }
                    for k, v in data.items()
                }
            },
            "ingested",
        )

    common.run_job(job_id, body, task_id=self.request.id)


class JobProgress:
    """Trainer callback: progress, tokens/s and loss for the job at every step (written by the
    job's heartbeat thread); stops the trainer between steps on cancel or a lost claim."""

    def __init__(self, run: common.JobRun, run_id: int, total_steps: int):
        self.run, self.run_id, self.total = run, run_id, max(1, total_steps)
        self.t0, self.tokens0, self.step = time.perf_counter(), None, 0

    def on_step_end(self, ctx, step: int, info: dict) -> None:
        now = time.perf_counter()
        self.step = step + 1
        if self.tokens0 is None:
            self.tokens0, self.t0 = info["tokens"], now
        tps = (info["tokens"] - self.tokens0) / max(now - self.t0, 1e-9)
        try:
            self.run.progress(
                (step + 1) / self.total,
                f"step {step + 1}/{self.total}, loss {info['loss']:.4f}, {tps:,.0f} tokens/s",
            )
        except (Cancelled, common.Superseded):
            ctx.request_stop()

    def on_eval(self, ctx, step: int, val_losses: dict[str, float]) -> None:
        if self.run.should_stop:
            return
        point = CurvePointCreate(
            step=step, tokens=None, metrics={f"val_loss/{k}": v for k, v in val_losses.items()}
        )
        try:
            with self.run.write() as s:
                run_service.add_curve_points(s, s.get(Run, self.run_id), [point])
        except common.Superseded:
            ctx.request_stop()


def record_trained(r: Run, result: Any, **details: Any) -> None:
    """Store a finished training's final metrics, size and throughput on its run (``succeeded``)."""
    r.metrics = {
        **{f"val_loss/{k}": float(v) for k, v in result.final_val_losses.items()},
        **{f"val_bpb/{k}": float(v) for k, v in result.final_val_bpb.items()},
    }
    r.status, r.model_params, r.updated_at = "succeeded", int(result.n_params), utcnow()
    r.train_steps, r.train_tokens = int(result.steps), int(result.tokens)
    r.details = {
        **(r.details or {}),
        "tokens_per_s": result.tokens_per_s,
        "device": result.device,
        **details,
    }


def _mark_run(run_id: int, status: str):
    def mark(s, reason: str) -> None:
        r = s.get(Run, run_id)
        if r is not None and r.status != "succeeded":
            r.status, r.error = status, reason

    return mark


@celery_app.task(name=TRAIN_RUN, bind=True)
def train_task(self, job_id: str) -> None:
    job = common.load_job(job_id)
    if job is None:
        return
    run_id = job.params["run_id"]
    common.run_job(
        job_id,
        lambda run: _train(run, job),
        task_id=self.request.id,
        on_fail=_mark_run(run_id, "failed"),
        on_cancel=_mark_run(run_id, "cancelled"),
    )
    if job.params.get("rounds_job"):  # a run of a rounds swarm ended: its round may be done
        notify_rounds(job.params["rounds_job"])


def _train(jr: common.JobRun, job) -> None:
    # lazy: mixopt.training needs the train extra (torch, tokenizers)
    from mixopt.training.trainer import TrainConfig, train

    if get_settings().torch_threads:
        import torch

        torch.set_num_threads(get_settings().torch_threads)
    p = job.params
    run_id = p["run_id"]
    with jr.write() as s:
        run = s.get(Run, run_id)
        run.status, run.error = "running", None
        project = s.get(Project, run.project_id)
        domains = [d.name for d in project.domains]
        lost = sorted(d for d, w in run.mixture.items() if w > 0 and d not in domains)
        if lost:  # planned on an older domain set: training it now would silently drop weight
            raise RuntimeError(
                f"run {run_id} was planned on domain-set version {run.domain_version} "
                f"and gives weight to {lost}, which the project "
                f"(version {project.domain_version}) no longer has; "
                "plan it again on the current domains"
            )
        mixture = np.array([run.mixture.get(d, 0.0) for d in domains])
    data = ingest_project(job.project_id)
    data = {d: data[d] for d in domains}
    config = TrainConfig(
        preset=p["preset"],
        max_steps=p.get("train_steps"),
        max_tokens=p.get("train_tokens"),
        seed=p["seed"],
        batch_size=p["batch_size"],
        block_size=p["block_size"],
        eval_interval=p["eval_interval"],
        weights=mixture.tolist(),
        checkpoint_dir=str(Path(get_settings().home) / "checkpoints" / job.id),
        **({"learning_rate": p["learning_rate"]} if p.get("learning_rate") else {}),
    )
    progress = JobProgress(jr, run_id, config.total_steps())
    callbacks: list[Any] = [progress]
    online = None
    if p.get("online"):
        # lazy: the callback imports torch (the train extra)
        from mixopt.online.callback import OnlineMixingCallback

        mixer = make_mixer(
            p["online"]["algorithm"], domains, p["online"].get("params"), mixture, p["seed"]
        )
        online = OnlineMixingCallback(mixer)
        callbacks.append(online)
    result = train(config, data, callbacks, resume=True)
    if jr.cancel.is_set():
        raise Cancelled(f"cancelled by request at step {progress.step}/{progress.total}")
    jr.check()

    def save(s):
        r = s.get(Run, run_id)
        details = {}
        if online is not None:
            final = dict(zip(domains, map(float, online.mixer.final_weights()), strict=True))
            details["weight_trajectory"] = online.trajectory
            details["final_weights"] = final
            # the online method's final (DoReMi: average) weights are its recommendation
            s.add(
                Recommendation(
                    project_id=r.project_id,
                    fit_id=None,
                    job_id=job.id,
                    source=f"online:{online.mixer.name}",
                    mixture=final,
                    binding=[],
                    constraints={},
                    target_scale={},
                    details={
                        "run_id": run_id,
                        "explanation": f"final weights of {online.mixer.name} "
                        f"trained online in run {run_id}",
                        "final_val_loss": float(np.mean(list(result.final_val_losses.values()))),
                    },
                )
            )
        record_trained(r, result, **details)
        return {
            "run_id": run_id,
            "final_loss": float(np.mean(list(result.final_val_losses.values()))),
        }

    jr.finish(None, "trained", also=save)


# -- swarms in rounds ------------------------------------------------------------------------
# A rounds swarm's ``swarm_rounds`` job plans every round after the first
# (:mod:`mixopt.mixing.rounds`). It holds no worker while runs train: each time it runs it looks at
# the current round; while runs of it are not done it goes back to ``pending`` (the last training
# job of the round sends it again, and the reaper re-sends a pending job whose message was lost);
# when the round is done it fits the swarm's runs, records the best predicted mixture and its
# interval on the round, and either ends (budget spent, or the predicted regret stopped falling)
# or plans the next round: its runs, their training jobs and the round's entry in the job's
# ``params.rounds`` are written in one transaction, so a worker killed at any point neither loses
# a round nor plans one twice, and finished runs are never trained again.


def notify_rounds(rounds_job_id: str) -> None:
    """Send the rounds job when every run of its current round is done (idempotent)."""
    try:
        with session_scope() as s:
            job = s.get(Job, rounds_job_id)
            if job is None or job.state != "pending":
                return
            current = (job.params.get("rounds") or [{}])[-1].get("run_ids", [])
            statuses = s.scalars(select(Run.status).where(Run.id.in_(current))).all()
            if any(st not in swarm_service.RUN_DONE for st in statuses):
                return
        dispatch.send_job(rounds_job_id)
    except Exception as exc:  # the broker is down: the reaper re-sends the pending job
        common.log.warning(
            "rounds job %s not sent (%s: %s)", rounds_job_id, type(exc).__name__, exc
        )


@celery_app.task(name=SWARM_ROUNDS, bind=True)
def rounds_task(self, job_id: str) -> None:
    if common.load_job(job_id) is None:
        return
    common.run_job(job_id, lambda jr: _rounds_step(jr, job_id), task_id=self.request.id)


def _release(jr: common.JobRun, job_id: str, message: str) -> None:
    """Back to ``pending`` until the round's runs are done (no worker held meanwhile)."""
    with jr.write() as s:
        s.execute(
            update(Job)
            .where(Job.id == job_id, Job.attempts == jr.attempt, Job.state == "running")
            .values(state="pending", message=message, heartbeat_at=None)
        )
    jr.ended = True


def _rounds_step(jr: common.JobRun, job_id: str) -> None:
    from mixopt.mixing import rounds  # lazy: mixopt.mixing loads every estimator

    with jr.write() as s:
        p = dict(s.get(Job, job_id).params)
        entries = [dict(e) for e in p["rounds"]]
        current = entries[-1]
        statuses = dict(
            s.execute(select(Run.id, Run.status).where(Run.id.in_(current["run_ids"]))).all()
        )
    k, sizes = len(entries), list(p["sizes"])
    # a run deleted meanwhile counts as done
    waiting = [
        rid
        for rid in current["run_ids"]
        if rid in statuses and statuses[rid] not in swarm_service.RUN_DONE
    ]
    if waiting:
        done = len(current["run_ids"]) - len(waiting)
        _release(
            jr,
            job_id,
            f"round {k} of at most {len(sizes)}: {done}/{len(current['run_ids'])} runs done",
        )
        notify_rounds(job_id)  # the last run may have ended while this step looked
        return
    all_ids = [rid for e in entries for rid in e["run_ids"]]
    with jr.write() as s:
        project = s.get(Project, s.get(Job, job_id).project_id)
        data = swarm_service.rounds_inputs(s, project, all_ids)
        estimator, fit_context, label = _rounds_estimator(s, project, data["domains"])
    current["trained"] = sum(1 for st in statuses.values() if st == "succeeded")
    current["failed"] = sum(1 for st in statuses.values() if st != "succeeded")
    if len(data["y"]) < 3:
        raise RuntimeError(
            f"only {len(data['y'])} run(s) of the swarm succeeded after round {k}: a fit needs 3"
        )
    last = k >= len(sizes)
    plan = rounds.next_round(
        data["X"],
        data["y"],
        0 if last else sizes[k],
        round_index=k + 1,
        prior=data["prior"],
        constraints=data["constraints"],
        domains=data["domains"],
        acquisition=p["acquisition"],
        random_state=int(p["design_seed"]),
        estimator=estimator,
        fit_context=fit_context,
    )
    current["after"] = plan.summary(data["domains"]) | {"estimator": label}
    regrets = [e["after"]["regret"] for e in entries]
    stop = None
    if last:
        stop = f"budget spent: {len(all_ids)} runs in {k} rounds"
    elif rounds.should_stop(regrets):
        stop = (
            f"stopped after round {k}: the predicted regret fell by at most {rounds.DEFAULT_TOL} "
            f"nats in each of the last {rounds.DEFAULT_PATIENCE} rounds"
        )
    if stop is not None:
        result = {"tag": p["tag"], "rounds": entries, "best": current["after"], "reason": stop}
        jr.finish(result, stop, also=lambda s: _store_rounds(s, job_id, p, entries))
        return
    with jr.write() as s:
        job = s.get(Job, job_id)
        if job.cancel_requested:  # cancelled while this round was planned: plan nothing more
            raise Cancelled(f"cancelled by request after round {k}")
        project = s.get(Project, job.project_id)
        runs, jobs = swarm_service.add_training_runs(
            s,
            project,
            plan.mixtures.tolist(),
            tag=p["tag"],
            train=p["train"],
            first_index=len(all_ids),
            details={"round": k + 1, "rounds_job": job_id},
            job_params={"rounds_job": job_id},
        )
        entries.append({"round": k + 1, "run_ids": [r.id for r in runs]})
        _store_rounds(s, job_id, p, entries)
        job.progress = len(all_ids) / float(p["total_budget"])
        job_ids = [j.id for j in jobs]
    for jid in job_ids:
        try:
            dispatch.send_job(jid)
        except Exception as exc:  # the broker is down: the reaper re-sends pending jobs
            common.log.warning("training job %s not sent (%s: %s)", jid, type(exc).__name__, exc)
    _release(jr, job_id, f"round {k + 1} of at most {len(sizes)}: {len(job_ids)} runs queued")


def _rounds_estimator(s, project: Project, domains: list[str]) -> tuple[Any, dict | None, str]:
    """The rounds' model: a GP on the mixtures, or, when the project has one complete expert
    per domain, the GP on the mixture and its MDE losses (``mde_gp``, Belenki et al. 2025)."""
    from app.services import experts as expert_service
    from app.services.errors import ServiceError
    from mixopt.mixing import rounds
    from mixopt.mixing.base import get_estimator

    try:
        probs = expert_service.load_expert_probs(s, project)
    except ServiceError as exc:  # experts of an older validation shard: plain GP, said
        common.log.warning("rounds: experts not used (%s)", exc)
        probs = None
    if probs is None or set(probs.experts) != set(domains):  # the rounds' own GP (MAP fit)
        return None, None, f"gp (hyper_prior={rounds.DEFAULT_HYPER_PRIOR})"
    return get_estimator("mde_gp"), {"experts": probs, "domains": domains}, "mde_gp"


def _store_rounds(s, job_id: str, params: dict, entries: list[dict]) -> None:
    job = s.get(Job, job_id)
    job.params = {**params, "rounds": entries}
