"""The recommend task: load the fit (fitting it first when the request named an estimator),
recommend a mixture (mixopt.mixing), store the recommendation with the job's end."""

from __future__ import annotations

import time

from app.core.celery_config import RECOMMEND
from app.services import experts as expert_service
from app.services import recommendations as rec_service
from app.store.db import session_scope
from mixopt.mixing import pipeline
from mixopt.progress import scaled
from workers.celery_app import celery_app
from workers.tasks import common
from workers.tasks.fits import mark_fit, run_fit


@celery_app.task(name=RECOMMEND, bind=True)
def recommend_task(self, job_id: str) -> None:
    job = common.load_job(job_id)
    if job is None:
        return
    p, fit_id, fit_first = job.params, job.params["fit_id"], bool(job.params.get("fit_first"))

    def body(run: common.JobRun) -> None:
        if fit_first:
            run_fit(
                run,
                fit_id,
                p.get("cv_folds", 5),
                p.get("random_state", 0),
                progress=scaled(run.progress, 0, 0.5),
            )
        run.progress(0.5 if fit_first else 0.0, "recommending")
        with session_scope() as s:
            inputs = rec_service.recommendation_inputs(s, fit_id, p)
            experts = expert_service.experts_for_state(s, fit_id, inputs["state"])
        kw = {}
        if common.accepts_progress(pipeline.recommend):
            kw["progress"] = scaled(run.progress, 0.5, 1.0) if fit_first else run.progress
        t0 = time.perf_counter()
        rec = pipeline.recommend(
            inputs["state"],
            inputs["constraints"],
            inputs["prior"],
            inputs["weights"],
            X=inputs["X"],
            Y=inputs["Y"],
            n_boot=p.get("n_boot", 20),
            random_state=p.get("random_state", 0),
            domains=inputs["domains"],
            scaling=inputs["scaling"],
            fidelity=inputs.get("fidelity"),
            prior_label=inputs["prior_label"],
            experts=experts,
            **(p.get("options") or {}),
            **kw,
        )
        elapsed = time.perf_counter() - t0
        run.check()
        run.finish(
            None,
            "recommended",
            also=lambda s: rec_service.store_recommendation(s, job, inputs, rec, elapsed),
        )

    # a fit started here (fit_first) says why it stopped; a fit that already succeeded is kept
    on_fail = mark_fit(fit_id, "failed") if fit_first else None
    on_cancel = mark_fit(fit_id, "cancelled") if fit_first else None
    common.run_job(job_id, body, task_id=self.request.id, on_fail=on_fail, on_cancel=on_cancel)
