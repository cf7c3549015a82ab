"""Swarms of proxy runs trained by the workers, and domain-data ingestion jobs."""

from __future__ import annotations

import numpy as np
from sqlalchemy.orm import Session

from app.api.schemas.swarms import SwarmCreate
from app.services import jobs as job_service
from app.services.errors import Invalid
from app.services.runs import validate_mixture
from app.store.models import Job, Project, Run, RunTag, utcnow

TRAINING_PRESETS = ("tiny", "small", "medium", "base")


def _prior(project: Project) -> np.ndarray:
    counts = [d.token_count for d in project.domains]
    if not all(counts):
        raise Invalid("every domain needs a token count (declared, or measured by ingestion: POST "
                      ".../domains/ingest) before a swarm can be designed", field="domains")
    c = np.array(counts, dtype=float)
    return c / c.sum()


def create_swarm(session: Session, project: Project, data: SwarmCreate) -> tuple[str, list[Run], list[Job]]:
    """Plan the runs (status ``queued``) and one ``train`` job per run; the caller enqueues."""
    from workers.training.model import PRESETS

    if data.preset not in PRESETS:
        raise Invalid(f"unknown preset {data.preset!r}; available: {sorted(PRESETS)}", field="preset")
    missing = [d.name for d in project.domains if not d.source]
    if missing:
        raise Invalid(f"domains without a data source cannot be trained on: {missing}", field="domains")
    domains = [d.name for d in project.domains]
    if data.strategy == "fixed":
        mixtures = [list(validate_mixture(m, domains, field=f"mixtures[{i}]").values())
                    for i, m in enumerate(data.mixtures or [])]
    else:
        from workers.mixing import service_api

        mixtures = service_api.suggest(
            data.count, domains=domains, prior=_prior(project), constraints=project.constraints or {},
            X=None, y=None, random_state=data.seed, strategy=data.strategy, temperature=data.temperature,
            min_weight=data.min_weight)
    tag = data.tag or f"swarm-{utcnow().strftime('%Y%m%d-%H%M%S')}"
    if not project.objective:
        # trained runs report val_loss/<domain> and val_bpb/<domain>: optimise the mean loss
        project.objective = {f"val_loss/{d}": 1.0 for d in domains}
    runs, jobs = [], []
    for i, m in enumerate(mixtures):
        run = Run(project_id=project.id, mixture=dict(zip(domains, map(float, m), strict=True)), metrics={},
                  train_steps=data.train_steps, train_tokens=data.train_tokens, seed=data.seed + i,
                  tags=[tag], status="queued", origin="trained",
                  details={"preset": data.preset, "swarm": tag})
        session.add(run)
        session.flush()
        session.add(RunTag(run_id=run.id, tag=tag))
        params = {"run_id": run.id, "preset": data.preset, "train_steps": data.train_steps,
                  "train_tokens": data.train_tokens, "seed": data.seed + i, "batch_size": data.batch_size,
                  "block_size": data.block_size, "eval_interval": data.eval_interval,
                  "learning_rate": data.learning_rate,
                  "online": data.online.model_dump() if data.online else None}
        job = job_service.create_job(session, kind="train", project_id=project.id, params=params, queue="gpu")
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
