"""Swarms of proxy runs trained by the workers, and domain-data ingestion jobs."""

from __future__ import annotations

import numpy as np
from sqlalchemy.orm import Session

from app.schemas.swarms import SwarmCreate
from app.services import jobs as job_service
from app.services.constraints import check_target_tokens, project_constraints
from app.services.domain_rules import natural_prior
from app.services.errors import Invalid
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


def create_swarm(
    session: Session, project: Project, data: SwarmCreate
) -> tuple[str, list[Run], list[Job]]:
    """Plan the runs (status ``queued``) and one ``train`` job per run; the caller enqueues."""
    check_trainable(project, data.preset)
    domains = [d.name for d in project.domains]
    if data.strategy == "fixed":
        mixtures = [
            list(validate_mixture(m, domains, field=f"mixtures[{i}]").values())
            for i, m in enumerate(data.mixtures or [])
        ]
    else:
        prior = _prior(project)
        constraints = project_constraints(project)
        # target_tokens without max_epochs: the design would refuse it (a 422 naming `count`)
        check_target_tokens(project.constraints or {}, project)
        mixtures = design_mixtures(
            data.count,
            data.strategy,
            domains=domains,
            prior=prior,
            constraints=constraints,
            temperature=data.temperature,
            min_weight=data.min_weight,
            seed=data.seed if data.design_seed is None else data.design_seed,
        )
    tag = data.tag or f"swarm-{utcnow().strftime('%Y%m%d-%H%M%S')}"
    if not project.objective:
        # trained runs report val_loss/<domain> and val_bpb/<domain>: optimise the mean loss
        project.objective = {f"val_loss/{d}": 1.0 for d in domains}
    runs, jobs = [], []
    for i, m in enumerate(mixtures):
        # "shared" by default: on the demo corpora the initialisation seed alone moves a tiny
        # model's final loss by 0.13-0.22 nats, more than most mixtures do (README, Proxy training)
        seed = data.seed if data.seeds == "shared" else data.seed + i
        run = Run(
            project_id=project.id,
            mixture=dict(zip(domains, map(float, m), strict=True)),
            metrics={},
            train_steps=data.train_steps,
            train_tokens=data.train_tokens,
            seed=seed,
            tags=[tag],
            status="queued",
            origin="trained",
            domain_version=project.domain_version or 1,
            details={"preset": data.preset, "swarm": tag},
        )
        session.add(run)
        session.flush()
        session.add(RunTag(run_id=run.id, tag=tag))
        params = {
            "run_id": run.id,
            "preset": data.preset,
            "train_steps": data.train_steps,
            "train_tokens": data.train_tokens,
            "seed": seed,
            "batch_size": data.batch_size,
            "block_size": data.block_size,
            "eval_interval": data.eval_interval,
            "learning_rate": data.learning_rate,
            "online": data.online.model_dump() if data.online else None,
        }
        job = job_service.create_job(
            session, kind="train", project_id=project.id, params=params, queue=data.queue
        )
        run.job_id = job.id
        runs.append(run)
        jobs.append(job)
    session.commit()
    return tag, runs, jobs


def create_ingest_job(session: Session, project: Project) -> Job:
    if not any(d.source for d in project.domains):
        raise Invalid("no domain has a data source to ingest", field="domains")
    job = job_service.create_job(session, kind="ingest", project_id=project.id, params={})
    session.commit()
    return job
