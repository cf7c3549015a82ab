"""Fit, recommend and suggest tasks: thin glue between the store and mixopt.mixing."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from app.services import domain_sets
from app.services import fits as fit_service
from app.services.swarms import design_mixtures
from app.store.db import session_scope
from app.store.models import Fit, Project, Recommendation, Run, RunTag, utcnow
from workers.celery_app import celery_app
from workers.tasks import common


def _fit(run: common.JobRun, fit_id: int, cv_folds: int, random_state: int, progress=None) -> dict[str, Any]:
    """Fit and store (guarded by the job's claim). Errors propagate: ``common.run_job`` ends the
    job failed or cancelled and ``_mark_fit`` says why on the fit."""
    from mixopt.mixing import service_api

    progress = progress or run.progress
    with run.write() as s:
        fit = s.get(Fit, fit_id)
        fit.status, fit.error = "running", None
        data = fit_service.training_data(s, fit)
        estimator, params = fit.estimator, dict(fit.params)
        target_scale = dict(fit.target_scale) if fit.target_scale else None
    run.progress(0.0, f"fitting {estimator} on {len(data['run_ids'])} runs")
    kw = {"progress": progress} if common.accepts_progress(service_api.fit_estimator) else {}
    out = service_api.fit_estimator(
        estimator, params, data["X"], data["Y"], domains=data["domains"], targets=data["targets"],
        objective_weights=data["weights"], cv_folds=cv_folds, random_state=random_state,
        target_scale=target_scale, **data["context"], **kw)
    run.check()
    notes = list(out.get("notes") or [])
    if data["skipped"]:
        notes.append(f"{data['skipped']} runs lacked a target metric and were left out.")
    line = domain_sets.summary(data["domain_versions"])
    if line:
        notes.append(line)
    with run.write() as s:
        f = s.get(Fit, fit_id)
        f.state, f.fidelity, f.timings = out["state"], out["fidelity"], out["timings"]
        f.scale, f.scaling = out.get("scale"), out.get("scaling")
        f.trusted, f.trust_reasons = out.get("trusted"), out.get("trust_reasons")
        f.notes, f.run_ids, f.status, f.finished_at = "\n".join(notes), data["run_ids"], "succeeded", utcnow()
        f.domain_versions = {**(f.domain_versions or {}), **data["domain_versions"]}
    return {"state": out["state"], "data": data}


def _mark_fit(fit_id: int, status: str):
    def mark(s, reason: str) -> None:
        f = s.get(Fit, fit_id)
        if f is not None and f.status != "succeeded":
            f.status, f.error, f.finished_at = status, reason, utcnow()
    return mark


def _fidelity_summary(fidelity: dict | None) -> dict[str, Any]:
    """The pooled cross-validated metrics of a fit (spearman, pearson, mae, r2, regret, n)."""
    return dict((fidelity or {}).get("pooled") or {})


@celery_app.task(name="mixopt.fit", bind=True)
def fit_task(self, job_id: str) -> None:
    job = common.load_job(job_id)
    if job is None:
        return
    fit_id = job.params["fit_id"]

    def body(run: common.JobRun) -> None:
        p = job.params
        out = _fit(run, fit_id, p.get("cv_folds", 5), p.get("random_state", 0))
        run.finish({"fit_id": fit_id, "n_runs": len(out["data"]["run_ids"])}, "fitted")

    common.run_job(job_id, body, task_id=self.request.id, on_fail=_mark_fit(fit_id, "failed"),
                   on_cancel=_mark_fit(fit_id, "cancelled"))


@celery_app.task(name="mixopt.recommend", bind=True)
def recommend_task(self, job_id: str) -> None:
    from mixopt.progress import scaled

    job = common.load_job(job_id)
    if job is None:
        return
    p = job.params
    fit_id = p["fit_id"]

    def body(run: common.JobRun) -> None:
        from mixopt.mixing import service_api

        if p.get("fit_first"):
            _fit(run, fit_id, p.get("cv_folds", 5), p.get("random_state", 0), progress=scaled(run.progress, 0, 0.5))
        run.progress(0.5 if p.get("fit_first") else 0.0, "recommending")
        with session_scope() as s:
            fit = s.get(Fit, fit_id)
            if fit.status != "succeeded":
                raise RuntimeError(f"fit {fit_id} is {fit.status}: {fit.error or 'not finished'}")
            project = s.get(Project, fit.project_id)
            data = fit_service.training_data(s, fit)
            counts = [d.token_count for d in project.domains]
            group_of = {d.name: d.group_path for d in project.domains if d.group_path}
            state, fidelity, weights = fit.state, fit.fidelity, [fit.target[t] for t in fit.target]
            domains = list(fit.domains)
            if fit.trusted is False and not p.get("allow_untrusted"):
                raise RuntimeError(fit_service.untrusted_reason(fit))
            scaling, fit_scale, trusted = fit.scaling, fit.scale, fit.trusted
            chain = fit_service.chain_summary(fit)
        prior = np.array(counts, dtype=float) / sum(counts) if all(counts) else None
        constraints = fit_service.science_constraints(p["constraints"], domains, counts, group_of)
        kw = {}
        if common.accepts_progress(service_api.recommend):
            kw["progress"] = scaled(run.progress, 0.5, 1.0) if p.get("fit_first") else run.progress
        t0 = time.perf_counter()
        rec = service_api.recommend(state, constraints, prior, weights, X=data["X"], Y=data["Y"],
                                    n_boot=p.get("n_boot", 20), random_state=p.get("random_state", 0),
                                    domains=domains, scaling=scaling, **(p.get("options") or {}), **kw)
        elapsed = time.perf_counter() - t0
        run.check()

        def save(s):
            interval = rec.get("interval") or [None, None]
            unconstrained = rec.get("unconstrained_mixture")
            row = Recommendation(
                project_id=job.project_id, fit_id=fit_id, job_id=job_id, source=state["estimator"],
                mixture=dict(zip(domains, map(float, rec["mixture"]), strict=True)),
                predicted=rec.get("predicted_objective"), interval_low=interval[0], interval_high=interval[1],
                binding=list(rec.get("binding") or []), constraints=p["constraints"],
                target_scale=fit_scale or p.get("target_scale") or {},
                details={"unconstrained_mixture": dict(zip(domains, map(float, unconstrained), strict=True))
                         if unconstrained else None,
                         "unconstrained_objective": rec.get("unconstrained_objective"),
                         "interval_method": rec.get("interval_method"), "kl_to_prior": rec.get("kl_to_prior"),
                         "strategy": rec.get("strategy"), "explanation": rec.get("explanation"),
                         "fidelity": _fidelity_summary(fidelity), "recommend_s": elapsed,
                         "scale": fit_scale, "chain": chain, "trusted": trusted,
                         "cross_scale": {k: v for k, v in ((scaling or {}).get("cross_scale") or {}).items()
                                         if k != "predictions"},
                         "extrapolation": rec.get("extrapolation"), "group_totals": rec.get("group_totals"),
                         "reference": rec.get("reference"), "staged": rec.get("staged")},
            )
            s.add(row)
            s.flush()
            return {"recommendation_id": row.id, "fit_id": fit_id}

        run.finish(None, "recommended", also=save)

    # a fit started here (fit_first) says why it stopped; a fit that already succeeded is kept
    mark = (lambda status: _mark_fit(fit_id, status)) if p.get("fit_first") else (lambda status: None)
    common.run_job(job_id, body, task_id=self.request.id, on_fail=mark("failed"), on_cancel=mark("cancelled"))


@celery_app.task(name="mixopt.suggest", bind=True)
def suggest_task(self, job_id: str) -> None:
    job = common.load_job(job_id)
    if job is None:
        return
    p = job.params

    def body(run: common.JobRun) -> None:
        with session_scope() as s:
            project = s.get(Project, job.project_id)
            domains = [d.name for d in project.domains]
            counts = [d.token_count for d in project.domains]
            constraints = project.constraints or {}
            group_of = {d.name: d.group_path for d in project.domains if d.group_path}
            version = project.domain_version or 1
            done = [r for r in s.query(Run).filter(Run.project_id == project.id, Run.status == "succeeded")]
            # runs of older domain sets count where they map into the current one (domain_sets.map_runs)
            rows, old_runs = domain_sets.map_runs(s, project, done, version=version, domains=domains)
            done, rows = [r for r, x in zip(done, rows, strict=True) if x is not None], [x for x in rows if x is not None]
            target = fit_service.resolve_target(project, None, done) if done else None
            ok = [i for i, r in enumerate(done) if target and all(t in r.metrics for t in target)]
            X = np.array([rows[i] for i in ok], dtype=float).reshape(len(ok), len(domains))
            y = np.array([sum(w * done[i].metrics[t] for t, w in target.items()) for i in ok], dtype=float)
        prior = np.array(counts, dtype=float) / sum(counts) if all(counts) else None
        strategy = p["strategy"]
        if strategy == "auto":
            strategy = "ei" if len(y) >= 3 else "swarm"
        run.progress(0.0, f"designing {p['count'] or 'the default number of'} mixtures ({strategy})")
        constraints = fit_service.science_constraints(constraints, domains, counts, group_of)
        extra: dict = {}
        if strategy == "reuse":  # olmix's mixture reuse: unchanged domains frozen at the old ratios
            from mixopt.mixing.reuse import reuse_design

            out = reuse_design(p["old_mixture"], domains, prior=prior, count=p["count"], temperature=p["temperature"],
                               min_weight=p["min_weight"], random_state=p["seed"])
            mixtures = out.pop("mixtures")
            out["count_source"] = p.get("count_source") or "requested"
            out["saved"] = out["fresh_count"] - out["count"]
            # what a later fit can reuse of the runs already stored
            out["old_runs"] = {k: old_runs[k] for k in ("by_version", "runs", "reused", "mapped", "dropped")}
            extra = out
        else:
            mixtures = design_mixtures(p["count"], strategy, domains=domains, prior=prior, constraints=constraints,
                                       X=X if len(y) else None, y=y if len(y) else None,
                                       temperature=p["temperature"], min_weight=p["min_weight"], seed=p["seed"])
        run.check()

        def save(s):
            rows = [Run(project_id=job.project_id, mixture=dict(zip(domains, map(float, m), strict=True)),
                        metrics={}, tags=list(p["tags"]), status="planned", origin="reported",
                        domain_version=p.get("domain_version") or version,
                        details={"suggested_by": strategy, "job_id": job_id}) for m in mixtures]
            s.add_all(rows)
            s.flush()
            s.add_all(RunTag(run_id=r.id, tag=t) for r in rows for t in r.tags)
            return {"run_ids": [r.id for r in rows], "strategy": strategy, **extra}

        run.finish(None, f"{len(mixtures)} runs planned ({strategy})", also=save)

    common.run_job(job_id, body, task_id=self.request.id)
