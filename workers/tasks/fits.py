"""The fit task: load the runs, fit the estimator (mixopt.mixing), store the fit."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from app.core.celery_config import FIT
from app.services import experts as expert_service
from app.services import fits as fit_service
from mixopt.mixing import pipeline
from workers.celery_app import celery_app
from workers.tasks import common


def run_fit(
    run: common.JobRun,
    fit_id: int,
    cv_folds: int,
    random_state: int,
    progress: Callable[..., Any] | None = None,
) -> dict[str, Any]:
    """Fit and store (guarded by the job's claim). Errors propagate: ``common.run_job`` ends the
    job failed or cancelled and :func:`mark_fit` says why on the fit."""
    progress = progress or run.progress
    with run.write() as s:
        inputs = fit_service.start_fit(s, fit_id)
        experts = expert_service.experts_for_fit(s, fit_id, inputs["estimator"])
    data = inputs["data"]
    run.progress(0.0, f"fitting {inputs['estimator']} on {len(data['run_ids'])} runs")
    kw = {"progress": progress} if common.accepts_progress(pipeline.fit_estimator) else {}
    out = pipeline.fit_estimator(
        inputs["estimator"],
        inputs["params"],
        data["X"],
        data["Y"],
        domains=data["domains"],
        targets=data["targets"],
        objective_weights=data["weights"],
        cv_folds=cv_folds,
        random_state=random_state,
        target_scale=inputs["target_scale"],
        **data["context"],
        **({"experts": experts} if experts is not None else {}),
        **kw,
    )
    run.check()
    with run.write() as s:
        fit_service.store_fit(s, fit_id, out, data)
    return {"state": out["state"], "data": data}


def mark_fit(fit_id: int, status: str) -> common.Hook:
    """The hook that ends the fit ``status`` with the job's reason."""
    return lambda s, reason: fit_service.end_fit(s, fit_id, status, reason)


@celery_app.task(name=FIT, bind=True)
def fit_task(self, job_id: str) -> None:
    job = common.load_job(job_id)
    if job is None:
        return
    p, fit_id = job.params, job.params["fit_id"]

    def body(run: common.JobRun) -> None:
        out = run_fit(run, fit_id, p.get("cv_folds", 5), p.get("random_state", 0))
        run.finish({"fit_id": fit_id, "n_runs": len(out["data"]["run_ids"])}, "fitted")

    common.run_job(
        job_id,
        body,
        task_id=self.request.id,
        on_fail=mark_fit(fit_id, "failed"),
        on_cancel=mark_fit(fit_id, "cancelled"),
    )
