"""Swarms of proxy runs trained by the workers, and domain-data ingestion jobs."""

from __future__ import annotations

from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.schemas.swarms import SwarmCreate
from app.services import jobs as job_service
from app.services.constraints import check_target_tokens, project_constraints
from app.services.domain_rules import natural_prior
from app.services.errors import Invalid
from app.services.fits import resolve_target
from app.services.runs import validate_mixture
from app.services.suggestions import design_mixtures
from app.store.models import Job, Project, Run, RunTag, utcnow

#: the trainer's presets (mixopt.training.model.PRESETS; kept here so the API never imports torch,
#: and a test checks the two agree)
TRAINING_PRESETS = ("micro", "tiny", "small", "medium", "base")


def check_trainable(project: Project, preset: str) -> None:
    """Can the workers train runs of this project with ``preset``? (swarms and validations)"""
    if preset not in TRAINING_PRESETS:
        raise Invalid(
            f"unknown preset {preset!r}; available: {list(TRAINING_PRESETS)}", field="preset"
        )
    missing = [d.name for d in project.domains if not d.source]
    if missing:
        raise Invalid(
            f"domains without a data source cannot be trained on: {missing}", field="domains"
        )


def _prior(project: Project) -> np.ndarray:
    prior = natural_prior([d.token_count for d in project.domains])
    if prior is None:
        raise Invalid(
            "every domain needs a token count (declared, or measured by ingestion: POST "
            ".../domains/ingest) before a swarm can be designed",
            field="domains",
        )
    return prior


#: a run of a rounds swarm in one of these is done with (its round waits for the others)
RUN_DONE = job_service.RUN_DONE
#: kind of the job that plans the later rounds of a rounds swarm
ROUNDS_KIND = job_service.ROUNDS_KIND


def train_params(data: SwarmCreate) -> dict[str, Any]:
    """What every training job of the swarm shares (a rounds swarm keeps it for later rounds)."""
    return {
        "preset": data.preset,
        "train_steps": data.train_steps,
        "train_tokens": data.train_tokens,
        "seed": data.seed,
        "seeds": data.seeds,
        "batch_size": data.batch_size,
        "block_size": data.block_size,
        "eval_interval": data.eval_interval,
        "learning_rate": data.learning_rate,
        "online": data.online.model_dump() if data.online else None,
        "queue": data.queue,
    }


def add_training_runs(
    session: Session,
    project: Project,
    mixtures: list[list[float]],
    *,
    tag: str,
    train: dict[str, Any],
    first_index: int = 0,
    details: dict[str, Any] | None = None,
    job_params: dict[str, Any] | None = None,
) -> tuple[list[Run], list[Job]]:
    """Plan one run (status ``queued``) and one ``train`` job per mixture (the caller commits,
    then enqueues). ``first_index``: the index of the first run in its swarm (per-run seeds)."""
    domains = [d.name for d in project.domains]
    runs, jobs = [], []
    for i, m in enumerate(mixtures, start=first_index):
        # "shared" by default: on the demo corpora the initialisation seed alone moves a tiny
        # model's final loss by 0.13-0.22 nats, more than most mixtures do (README, Proxy training)
        seed = train["seed"] if train["seeds"] == "shared" else train["seed"] + i
        run = Run(
            project_id=project.id,
            mixture=dict(zip(domains, map(float, m), strict=True)),
            metrics={},
            train_steps=train["train_steps"],
            train_tokens=train["train_tokens"],
            seed=seed,
            tags=[tag],
            status="queued",
            origin="trained",
            domain_version=project.domain_version or 1,
            details={"preset": train["preset"], "swarm": tag, **(details or {})},
        )
        session.add(run)
        session.flush()
        session.add(RunTag(run_id=run.id, tag=tag))
        params = {
            "run_id": run.id,
            "seed": seed,
            **{
                k: train[k]
                for k in (
                    "preset",
                    "train_steps",
                    "train_tokens",
                    "batch_size",
                    "block_size",
                    "eval_interval",
                    "learning_rate",
                    "online",
                )
            },
            **(job_params or {}),
        }
        job = job_service.create_job(
            session, kind="train", project_id=project.id, params=params, queue=train["queue"]
        )
        run.job_id = job.id
        runs.append(run)
        jobs.append(job)
    return runs, jobs


def _check_rounds(data: SwarmCreate, n_domains: int) -> list[int]:
    """The rounds' sizes of a rounds swarm; a 422 naming the field that is missing or wrong."""
    from mixopt.mixing.rounds import round_sizes  # lazy: mixopt.mixing loads every estimator

    if data.total_budget is None:
        raise Invalid("strategy rounds needs total_budget (runs, all rounds)", field="total_budget")
    if data.round_size is None:
        raise Invalid("strategy rounds needs round_size (runs per round)", field="round_size")
    if data.round_size > data.total_budget:
        raise Invalid(
            f"round_size {data.round_size} is larger than total_budget {data.total_budget}",
            field="round_size",
        )
    if data.count is not None and data.count != data.total_budget:
        raise Invalid(
            f"count {data.count} differs from total_budget {data.total_budget} (give one)",
            field="count",
        )
    if data.online is not None:
        raise Invalid(
            "strategy rounds fits the runs' fixed mixtures: online mixing is not available",
            field="online",
        )
    return round_sizes(data.total_budget, data.round_size, n_domains=n_domains)


def _design(project: Project, data: SwarmCreate, count: int) -> list[list[float]]:
    domains = [d.name for d in project.domains]
    if data.strategy == "fixed":
        return [
            list(validate_mixture(m, domains, field=f"mixtures[{i}]").values())
            for i, m in enumerate(data.mixtures or [])
        ]
    prior = _prior(project)
    constraints = project_constraints(project)
    # target_tokens without max_epochs: the design would refuse it (a 422 naming `count`)
    check_target_tokens(project.constraints or {}, project)
    return design_mixtures(
        count,
        "space_filling" if data.strategy == "rounds" else data.strategy,
        domains=domains,
        prior=prior,
        constraints=constraints,
        temperature=data.temperature,
        min_weight=data.min_weight,
        seed=_design_seed(data),
    )


def _design_seed(data: SwarmCreate) -> int:
    return data.seed if data.design_seed is None else data.design_seed


def create_swarm(
    session: Session, project: Project, data: SwarmCreate
) -> tuple[str, list[Run], list[Job], Job | None]:
    """Plan the runs (status ``queued``) and one ``train`` job per run; the caller enqueues.
    Strategy rounds plans round 1 and the job that plans the later rounds (returned last)."""
    check_trainable(project, data.preset)
    sizes = _check_rounds(data, len(project.domains)) if data.strategy == "rounds" else None
    if sizes is None and data.count is None:
        raise Invalid(f"count is required for strategy {data.strategy!r}", field="count")
    mixtures = _design(project, data, sizes[0] if sizes else int(data.count or 0))
    domains = [d.name for d in project.domains]
    tag = data.tag or f"swarm-{utcnow().strftime('%Y%m%d-%H%M%S')}"
    if not project.objective:
        # trained runs report val_loss/<domain> and val_bpb/<domain>: optimise the mean loss
        project.objective = {f"val_loss/{d}": 1.0 for d in domains}
    train = train_params(data)
    rounds_job = None
    extra: dict[str, Any] = {}
    if sizes is not None:
        rounds_job = job_service.create_job(
            session,
            kind=ROUNDS_KIND,
            project_id=project.id,
            params={
                "tag": tag,
                "total_budget": data.total_budget,
                "round_size": data.round_size,
                "sizes": sizes,
                "acquisition": data.acquisition,
                "design_seed": _design_seed(data),
                "train": train,
                "rounds": [],
            },
            queue=data.queue,
        )
        extra = {"rounds_job": rounds_job.id}
    runs, jobs = add_training_runs(
        session,
        project,
        mixtures,
        tag=tag,
        train=train,
        details={"round": 1, **extra} if extra else None,
        job_params=extra or None,
    )
    if rounds_job is not None:
        rounds_job.params = {
            **rounds_job.params,
            "rounds": [{"round": 1, "run_ids": [r.id for r in runs]}],
        }
        rounds_job.message = f"round 1 of at most {len(sizes or [])}: {len(runs)} runs queued"
    session.commit()
    return tag, runs, jobs, rounds_job


# -- the rounds job's side (workers/tasks/training.py) ----------------------------------------
def rounds_inputs(session: Session, project: Project, run_ids: list[int]) -> dict[str, Any]:
    """The succeeded runs among ``run_ids`` as ``X`` (mixtures in the project's domain order)
    and ``y`` (the project's objective), with the prior and constraints for the next round."""
    domains = [d.name for d in project.domains]
    runs = [
        r
        for r in session.scalars(select(Run).where(Run.id.in_(run_ids)))
        if r.status == "succeeded"
    ]
    target = resolve_target(project, None, runs) if runs else {}
    ok = [r for r in runs if target and all(t in (r.metrics or {}) for t in target)]
    X = np.array([[r.mixture.get(d, 0.0) for d in domains] for r in ok], dtype=float)
    y = np.array([sum(w * r.metrics[t] for t, w in target.items()) for r in ok], dtype=float)
    return {
        "domains": domains,
        "X": X.reshape(len(ok), len(domains)),
        "y": y,
        "prior": natural_prior([d.token_count for d in project.domains]),
        "constraints": project_constraints(project),
    }


def create_ingest_job(session: Session, project: Project) -> Job:
    if not any(d.source for d in project.domains):
        raise Invalid("no domain has a data source to ingest", field="domains")
    job = job_service.create_job(session, kind="ingest", project_id=project.id, params={})
    session.commit()
    return job


def rounds_view(session: Session, project: Project, limit: int = 5) -> list[dict[str, Any]]:
    """The project's newest swarms in rounds for the dashboard: per round its runs, how many
    trained, and the best predicted mixture after it with its interval."""
    jobs = session.scalars(
        select(Job)
        .where(Job.project_id == project.id, Job.kind == ROUNDS_KIND)
        .order_by(Job.created_at.desc())
        .limit(limit)
    )
    out = []
    for job in jobs:
        p = job.params or {}
        out.append(
            {
                "job_id": job.id,
                "tag": p.get("tag"),
                "state": job.state,
                "message": job.error or job.message,
                "total_budget": p.get("total_budget"),
                "rounds": [
                    {
                        "round": e.get("round"),
                        "runs": len(e.get("run_ids") or []),
                        "trained": e.get("trained"),
                        "after": e.get("after"),
                    }
                    for e in p.get("rounds") or []
                ],
            }
        )
    return out
