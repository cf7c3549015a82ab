"""Swarms of proxy runs trained by the workers, and domain-data ingestion jobs."""

from __future__ import annotations

import numpy as np
from sqlalchemy.orm import Session

from app.schemas.swarms import SwarmCreate
from app.services import jobs as job_service
from app.services.errors import Invalid
from app.services.runs import validate_mixture
from app.store.models import Job, Project, Run, RunTag, utcnow

#: the trainer's presets (mixopt.training.model.PRESETS; kept here so the API never imports torch,
#: and a test checks the two agree)
TRAINING_PRESETS = ("micro", "tiny", "small", "medium", "base")


def design_mixtures(count: int, strategy: str, *, domains: list[str], prior: np.ndarray | None,
                    constraints: dict, X: np.ndarray | None = None, y: np.ndarray | None = None,
                    temperature: float = 0.5, min_weight: float = 1e-3, seed: int = 0) -> list[list[float]]:
    """Mixtures for new runs: a RegMix swarm (Dirichlet around the tempered token prior),
    its space-filling variant, or GP expected improvement once runs exist (``ei``)."""
    from mixopt.mixing import design, service_api

    if strategy == "hierarchical":  # group share first, then within the group (mixopt.mixing.hierarchy)
        from mixopt.mixing.hierarchy import hierarchical_swarm

        try:
            return hierarchical_swarm(prior if prior is not None else np.full(len(domains), 1 / len(domains)), count,
                                      domains=domains, constraints=constraints, temperature=temperature,
                                      min_weight=min_weight, random_state=seed).tolist()
        except ValueError as exc:
            raise Invalid(f"cannot design {count} runs: {exc}", field="count") from None
    if strategy == "ei":
        return service_api.suggest(count, domains=domains, prior=prior, constraints=constraints, X=X, y=y,
                                   random_state=seed)
    try:
        W = design.regmix_swarm(prior if prior is not None else np.full(len(domains), 1 / len(domains)), count,
                                constraints=constraints, domains=domains, temperature=temperature,
                                min_weight=min_weight, space_filling=strategy == "space_filling", random_state=seed)
    except ValueError as exc:
        raise Invalid(f"cannot design {count} runs: {exc}", field="count") from None
    return np.asarray(W, dtype=float).tolist()


def _prior(project: Project) -> np.ndarray:
    counts = [d.token_count for d in project.domains]
    if not all(counts):
        raise Invalid("every domain needs a token count (declared, or measured by ingestion: POST "
                      ".../domains/ingest) before a swarm can be designed", field="domains")
    c = np.array(counts, dtype=float)
    return c / c.sum()


def create_swarm(session: Session, project: Project, data: SwarmCreate) -> tuple[str, list[Run], list[Job]]:
    """Plan the runs (status ``queued``) and one ``train`` job per run; the caller enqueues."""
    if data.preset not in TRAINING_PRESETS:
        raise Invalid(f"unknown preset {data.preset!r}; available: {list(TRAINING_PRESETS)}", field="preset")
    missing = [d.name for d in project.domains if not d.source]
    if missing:
        raise Invalid(f"domains without a data source cannot be trained on: {missing}", field="domains")
    domains = [d.name for d in project.domains]
    if data.strategy == "fixed":
        mixtures = [list(validate_mixture(m, domains, field=f"mixtures[{i}]").values())
                    for i, m in enumerate(data.mixtures or [])]
    else:
        from app.services.fits import science_constraints

        prior = _prior(project)
        constraints = science_constraints(project.constraints or {}, domains,
                                          [d.token_count for d in project.domains],
                                          {d.name: d.group_path for d in project.domains if d.group_path})
        mixtures = design_mixtures(data.count, data.strategy, domains=domains, prior=prior, constraints=constraints,
                                   temperature=data.temperature, min_weight=data.min_weight,
                                   seed=data.seed if data.design_seed is None else data.design_seed)
    tag = data.tag or f"swarm-{utcnow().strftime('%Y%m%d-%H%M%S')}"
    if not project.objective:
        # trained runs report val_loss/<domain> and val_bpb/<domain>: optimise the mean loss
        project.objective = {f"val_loss/{d}": 1.0 for d in domains}
    runs, jobs = [], []
    for i, m in enumerate(mixtures):
        # "shared" by default: on the demo corpora the initialisation seed alone moves a tiny
        # model's final loss by 0.13-0.22 nats, more than most mixtures do (README, Proxy training)
        seed = data.seed if data.seeds == "shared" else data.seed + i
        run = Run(project_id=project.id, mixture=dict(zip(domains, map(float, m), strict=True)), metrics={},
                  train_steps=data.train_steps, train_tokens=data.train_tokens, seed=seed,
                  tags=[tag], status="queued", origin="trained", domain_version=project.domain_version or 1,
                  details={"preset": data.preset, "swarm": tag})
        session.add(run)
        session.flush()
        session.add(RunTag(run_id=run.id, tag=tag))
        params = {"run_id": run.id, "preset": data.preset, "train_steps": data.train_steps,
                  "train_tokens": data.train_tokens, "seed": seed, "batch_size": data.batch_size,
                  "block_size": data.block_size, "eval_interval": data.eval_interval,
                  "learning_rate": data.learning_rate,
                  "online": data.online.model_dump() if data.online else None}
        job = job_service.create_job(session, kind="train", project_id=project.id, params=params, queue=data.queue)
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
