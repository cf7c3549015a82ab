"""Suggestions: mixtures for the next runs (a RegMix swarm, its space-filling variant, a
hierarchical design, GP expected improvement, or olmix's reuse after a domain change).

Designing runs in a worker (``suggest`` jobs): :func:`create_suggestion_job` plans the job;
the task loads :func:`suggestion_inputs`, designs the mixtures and stores them with
:func:`store_suggestions` (planned runs), in one transaction. Swarms use
:func:`design_mixtures` too.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.schemas.suggestions import SuggestionCreate
from app.services import domains as domain_service
from app.services import jobs as job_service
from app.services import rows
from app.services.constraints import check_target_tokens, project_constraints
from app.services.domain_rules import natural_prior
from app.services.errors import Invalid, NotFound
from app.services.fits import resolve_target
from app.store.models import Job, Project, Recommendation, Run, RunTag


def design_mixtures(
    count: int,
    strategy: str,
    *,
    domains: list[str],
    prior: np.ndarray | None,
    constraints: dict,
    X: np.ndarray | None = None,
    y: np.ndarray | None = None,
    temperature: float = 0.5,
    min_weight: float = 1e-3,
    seed: int = 0,
) -> list[list[float]]:
    """Mixtures for new runs: a RegMix swarm (Dirichlet around the tempered token prior),
    its space-filling variant, or GP expected improvement once runs exist (``ei``)."""
    from mixopt.mixing import design, pipeline  # lazy: mixopt.mixing loads every estimator

    if strategy == "hierarchical":  # group share first, then within the group
        try:
            return design.hierarchical_swarm(
                prior if prior is not None else np.full(len(domains), 1 / len(domains)),
                count,
                domains=domains,
                constraints=constraints,
                temperature=temperature,
                min_weight=min_weight,
                random_state=seed,
            ).tolist()
        except ValueError as exc:
            raise Invalid(f"cannot design {count} runs: {exc}", field="count") from None
    if strategy == "rounds":
        return _next_round(count, domains, prior, constraints, X, y, seed)
    if strategy == "ei":
        return pipeline.suggest(
            count,
            domains=domains,
            prior=prior,
            constraints=constraints,
            X=X,
            y=y,
            random_state=seed,
        )
    try:
        W = design.regmix_swarm(
            prior if prior is not None else np.full(len(domains), 1 / len(domains)),
            count,
            constraints=constraints,
            domains=domains,
            temperature=temperature,
            min_weight=min_weight,
            space_filling=strategy == "space_filling",
            random_state=seed,
        )
    except ValueError as exc:
        raise Invalid(f"cannot design {count} runs: {exc}", field="count") from None
    return np.asarray(W, dtype=float).tolist()


def _next_round(
    count: int,
    domains: list[str],
    prior: np.ndarray | None,
    constraints: dict,
    X: np.ndarray | None,
    y: np.ndarray | None,
    seed: int,
) -> list[list[float]]:
    """The next round of a swarm in rounds, by hand (:func:`mixopt.mixing.rounds.next_round`):
    after ``n`` runs, rounds of ``count`` with a first round of twice that are at round
    ``n / count``; the region is that round's."""
    from mixopt.mixing import rounds  # lazy: mixopt.mixing loads every estimator

    if X is None or y is None or len(y) < 3:
        raise Invalid(
            "strategy rounds needs at least 3 runs with the objective's metrics "
            "(start with strategy space_filling)",
            field="strategy",
        )
    plan = rounds.next_round(
        X,
        y,
        count,
        round_index=max(2, round(len(y) / count)),
        prior=prior,
        constraints=constraints,
        domains=domains,
        random_state=seed,
    )
    return np.asarray(plan.mixtures, dtype=float).tolist()


def create_suggestion_job(session: Session, project: Project, data: SuggestionCreate) -> Job:
    if not project.domains:
        raise Invalid("the project has no domains", field="domains")
    params = data.model_dump()
    if data.strategy == "reuse":
        if data.recommendation_id is None:
            raise Invalid(
                "strategy reuse needs recommendation_id (the mixture chosen on the old domains)",
                field="recommendation_id",
            )
        row = session.get(Recommendation, data.recommendation_id)
        if row is None or row.project_id != project.id:
            raise NotFound(
                f"recommendation {data.recommendation_id} not found", field="recommendation_id"
            )
        params["old_mixture"] = dict(row.mixture)
        if (
            data.count is None
        ):  # olmix-sized: runs per dimension x dimensions explored (said in the 202)
            from mixopt.mixing.reuse import reuse_size  # lazy: mixopt.mixing loads every estimator

            size = reuse_size(row.mixture, [d.name for d in project.domains])
            params.update(
                count=size["count"],
                fresh_count=size["fresh_count"],
                count_source=f"default: {size['runs_per_dim']} runs per dimension x "
                f"{size['dimensions']} dimensions explored",
            )
    elif data.count is None:
        raise Invalid(
            f"count is required for strategy {data.strategy!r} (only reuse has a default: runs per "
            "dimension x dimensions explored)",
            field="count",
        )
    if data.strategy != "reuse":
        # what the worker translates (project_constraints) and the science refuses, said now
        project_constraints(project)
        check_target_tokens(project.constraints or {}, project)
    params["domain_version"] = project.domain_version or 1
    job = job_service.create_job(session, kind="suggest", project_id=project.id, params=params)
    session.commit()
    return job


# -- the worker's side (workers/tasks/suggestions.py) --------------------------------------
def suggestion_inputs(session: Session, job: Job) -> dict[str, Any]:
    """The project's domains, prior and constraints, and the succeeded runs (older domain sets
    mapped in where they can be) as ``X`` (mixtures) and ``y`` (objective)."""
    project = rows.load(session, Project, job.project_id)
    domains = [d.name for d in project.domains]
    version = project.domain_version or 1
    done = list(
        session.scalars(select(Run).where(Run.project_id == project.id, Run.status == "succeeded"))
    )
    # runs of older domain sets count where they map into the current one
    mapped, old_runs = domain_service.map_runs(
        session, project, done, version=version, domains=domains
    )
    done = [r for r, x in zip(done, mapped, strict=True) if x is not None]
    mapped = [x for x in mapped if x is not None]
    target = resolve_target(project, None, done) if done else {}
    ok = [i for i, r in enumerate(done) if target and all(t in r.metrics for t in target)]
    X = np.array([mapped[i] for i in ok], dtype=float).reshape(len(ok), len(domains))
    y = np.array([sum(w * done[i].metrics[t] for t, w in target.items()) for i in ok], dtype=float)
    return {
        "domains": domains,
        "version": version,
        "X": X,
        "y": y,
        "old_runs": old_runs,
        "prior": natural_prior([d.token_count for d in project.domains]),
        "constraints": project_constraints(project),
    }


def store_suggestions(
    session: Session,
    job: Job,
    domains: list[str],
    mixtures: list[Any],
    strategy: str,
    version: int,
    extra: dict[str, Any],
) -> dict[str, Any]:
    """Add the designed mixtures as ``planned`` runs at the project's proxy scale (see
    :func:`proxy_scale`); returns the job result."""
    p = job.params
    scale = proxy_scale(session, job.project_id)
    runs = [
        Run(
            project_id=job.project_id,
            mixture=dict(zip(domains, map(float, m), strict=True)),
            metrics={},
            tags=list(p["tags"]),
            status="planned",
            origin="reported",
            domain_version=p.get("domain_version") or version,
            details={"suggested_by": strategy, "job_id": job.id},
            **scale,
        )
        for m in mixtures
    ]
    session.add_all(runs)
    session.flush()
    session.add_all(RunTag(run_id=r.id, tag=t) for r in runs for t in r.tags)
    return {"run_ids": [r.id for r in runs], "strategy": strategy, **extra}


def proxy_scale(session: Session, project_id: int | None) -> dict[str, int | None]:
    """The scale (model_params, train_tokens, train_steps) of the project's succeeded runs when
    they share one, so a suggested run reported back fits with them (a plain fit refuses runs
    of several scales); none when there are no such runs or they span several scales (the
    user then says which scale a reported run has, in its PATCH)."""
    scales = session.execute(
        select(Run.model_params, Run.train_tokens, Run.train_steps)
        .where(Run.project_id == project_id, Run.status == "succeeded")
        .group_by(Run.model_params, Run.train_tokens, Run.train_steps)
        .limit(2)
    ).all()
    if len(scales) != 1:
        return {}
    model_params, train_tokens, train_steps = scales[0]
    return {
        "model_params": model_params,
        "train_tokens": train_tokens,
        "train_steps": train_steps,
    }
