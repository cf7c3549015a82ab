"""Fit, recommend and suggest tasks: thin glue between the store and mixopt.mixing."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from app.services import fits as fit_service
from app.services.swarms import design_mixtures
from app.store.db import session_scope
from app.store.models import Fit, Project, Recommendation, Run, RunTag, utcnow
from workers.celery_app import celery_app
from workers.tasks import common


def _fit(job_id: str, fit_id: int, cv_folds: int, random_state: int) -> dict[str, Any]:
    """Fit and store; on any failure the fit and the job are marked failed with the reason
    (then the exception propagates to the task, which stops)."""
    from mixopt.mixing import service_api

    data: dict[str, Any] = {"run_ids": []}
    try:
        with session_scope() as s:
            fit = s.get(Fit, fit_id)
            fit.status = "running"
            data = fit_service.training_data(s, fit)
            estimator, params = fit.estimator, dict(fit.params)
        out = service_api.fit_estimator(
            estimator, params, data["X"], data["Y"], domains=data["domains"], targets=data["targets"],
            objective_weights=data["weights"], cv_folds=cv_folds, random_state=random_state, **data["context"])
        notes = list(out.get("notes") or [])
        if data["skipped"]:
            notes.append(f"{data['skipped']} runs lacked a target metric and were left out.")

        with session_scope() as s:
            f = s.get(Fit, fit_id)
            f.state, f.fidelity, f.timings = out["state"], out["fidelity"], out["timings"]
            f.notes, f.run_ids, f.status, f.finished_at = "\n".join(notes), data["run_ids"], "succeeded", utcnow()
    except Exception as exc:
        reason = f"{type(exc).__name__}: {exc}"

        def mark(s):
            f = s.get(Fit, fit_id)
            f.status, f.error, f.finished_at, f.run_ids = "failed", reason, utcnow(), data["run_ids"]

        common.fail(job_id, exc, also=mark)
        raise
    return {"state": out["state"], "data": data}


def _fidelity_summary(fidelity: dict | None) -> dict[str, Any]:
    """The pooled cross-validated metrics of a fit (spearman, pearson, mae, r2, regret, n)."""
    return dict((fidelity or {}).get("pooled") or {})


@celery_app.task(name="mixopt.fit")
def fit_task(job_id: str) -> None:
    if not common.claim(job_id):
        return
    job = common.load_job(job_id)
    try:
        out = _fit(job_id, job.params["fit_id"], job.params.get("cv_folds", 5), job.params.get("random_state", 0))
    except Exception:
        return
    common.finish(job_id, {"fit_id": job.params["fit_id"], "n_runs": len(out["data"]["run_ids"])}, "fitted")


@celery_app.task(name="mixopt.recommend")
def recommend_task(job_id: str) -> None:
    from mixopt.mixing import service_api

    if not common.claim(job_id):
        return
    job = common.load_job(job_id)
    p = job.params
    fit_id = p["fit_id"]
    try:
        if p.get("fit_first"):
            common.heartbeat(job_id, 0.1, "fitting")
            _fit(job_id, fit_id, p.get("cv_folds", 5), p.get("random_state", 0))
    except Exception:
        return
    try:
        common.heartbeat(job_id, 0.5, "recommending")
        with session_scope() as s:
            fit = s.get(Fit, fit_id)
            if fit.status != "succeeded":
                raise RuntimeError(f"fit {fit_id} is {fit.status}: {fit.error or 'not finished'}")
            project = s.get(Project, fit.project_id)
            data = fit_service.training_data(s, fit)
            counts = [d.token_count for d in project.domains]
            state, fidelity, weights = fit.state, fit.fidelity, [fit.target[t] for t in fit.target]
            domains = list(fit.domains)
        prior = np.array(counts, dtype=float) / sum(counts) if all(counts) else None
        constraints = fit_service.science_constraints(p["constraints"], domains, counts)
        t0 = time.perf_counter()
        rec = service_api.recommend(state, constraints, prior, weights, X=data["X"], Y=data["Y"],
                                    n_boot=p.get("n_boot", 20), random_state=p.get("random_state", 0),
                                    domains=domains)
        elapsed = time.perf_counter() - t0
    except Exception as exc:
        common.fail(job_id, exc)
        return

    def save(s):
        interval = rec.get("interval") or [None, None]
        unconstrained = rec.get("unconstrained_mixture")
        row = Recommendation(
            project_id=job.project_id, fit_id=fit_id, job_id=job_id, source=state["estimator"],
            mixture=dict(zip(domains, map(float, rec["mixture"]), strict=True)),
            predicted=rec.get("predicted_objective"), interval_low=interval[0], interval_high=interval[1],
            binding=list(rec.get("binding") or []), constraints=p["constraints"],
            target_scale=p.get("target_scale") or {},
            details={"unconstrained_mixture": dict(zip(domains, map(float, unconstrained), strict=True))
                     if unconstrained else None,
                     "unconstrained_objective": rec.get("unconstrained_objective"),
                     "interval_method": rec.get("interval_method"), "kl_to_prior": rec.get("kl_to_prior"),
                     "strategy": rec.get("strategy"), "explanation": rec.get("explanation"),
                     "fidelity": _fidelity_summary(fidelity), "recommend_s": elapsed},
        )
        s.add(row)
        s.flush()
        return {"recommendation_id": row.id, "fit_id": fit_id}

    common.finish(job_id, None, "recommended", also=save)


@celery_app.task(name="mixopt.suggest")
def suggest_task(job_id: str) -> None:

    if not common.claim(job_id):
        return
    job = common.load_job(job_id)
    p = job.params
    try:
        with session_scope() as s:
            project = s.get(Project, job.project_id)
            domains = [d.name for d in project.domains]
            counts = [d.token_count for d in project.domains]
            constraints = project.constraints or {}
            done = [r for r in s.query(Run).filter(Run.project_id == project.id, Run.status == "succeeded")]
            target = fit_service.resolve_target(project, None, done) if done else None
            X = np.array([[r.mixture.get(d, 0.0) for d in domains] for r in done if target and
                          all(t in r.metrics for t in target)], dtype=float)
            y = np.array([sum(w * r.metrics[t] for t, w in target.items()) for r in done if target and
                          all(t in r.metrics for t in target)], dtype=float)
        prior = np.array(counts, dtype=float) / sum(counts) if all(counts) else None
        strategy = p["strategy"]
        if strategy == "auto":
            strategy = "ei" if len(y) >= 3 else "swarm"
        constraints = fit_service.science_constraints(constraints, domains, counts)
        mixtures = design_mixtures(p["count"], strategy, domains=domains, prior=prior, constraints=constraints,
                                   X=X if len(y) else None, y=y if len(y) else None, temperature=p["temperature"],
                                   min_weight=p["min_weight"], seed=p["seed"])
    except Exception as exc:
        common.fail(job_id, exc)
        return
    def save(s):
        rows = [Run(project_id=job.project_id, mixture=dict(zip(domains, map(float, m), strict=True)), metrics={},
                    tags=list(p["tags"]), status="planned", origin="reported",
                    details={"suggested_by": strategy, "job_id": job_id}) for m in mixtures]
        s.add_all(rows)
        s.flush()
        s.add_all(RunTag(run_id=r.id, tag=t) for r in rows for t in r.tags)
        return {"run_ids": [r.id for r in rows], "strategy": strategy}

    common.finish(job_id, None, f"{len(mixtures)} runs planned ({strategy})", also=save)
