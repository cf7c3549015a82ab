"""The suggest task: load the project's runs, design the next mixtures (mixopt.mixing), store
them as planned runs with the job's end."""

from __future__ import annotations

from typing import Any

from app.core.celery_config import SUGGEST
from app.services import suggestions as suggestion_service
from app.store.db import session_scope
from mixopt.mixing.reuse import reuse_design
from workers.celery_app import celery_app
from workers.tasks import common


def _reuse(p: dict[str, Any], inputs: dict[str, Any]) -> tuple[list[Any], dict[str, Any]]:
    """olmix's mixture reuse: unchanged domains frozen at the old ratios; the mixtures and what
    the job result says about them."""
    out = reuse_design(
        p["old_mixture"],
        inputs["domains"],
        prior=inputs["prior"],
        count=p["count"],
        temperature=p["temperature"],
        min_weight=p["min_weight"],
        random_state=p["seed"],
    )
    mixtures = out.pop("mixtures")
    out["count_source"] = p.get("count_source") or "requested"
    out["saved"] = out["fresh_count"] - out["count"]
    # what a later fit can reuse of the runs already stored
    old = inputs["old_runs"]
    out["old_runs"] = {k: old[k] for k in ("by_version", "runs", "reused", "mapped", "dropped")}
    return mixtures, out


@celery_app.task(name=SUGGEST, bind=True)
def suggest_task(self, job_id: str) -> None:
    job = common.load_job(job_id)
    if job is None:
        return
    p = job.params

    def body(run: common.JobRun) -> None:
        with session_scope() as s:
            inputs = suggestion_service.suggestion_inputs(s, job)
        X, y = inputs["X"], inputs["y"]
        strategy = p["strategy"]
        if strategy == "auto":
            strategy = "ei" if len(y) >= 3 else "swarm"
        run.progress(
            0.0, f"designing {p['count'] or 'the default number of'} mixtures ({strategy})"
        )
        extra: dict[str, Any] = {}
        if strategy == "reuse":
            mixtures, extra = _reuse(p, inputs)
        else:
            mixtures = suggestion_service.design_mixtures(
                p["count"],
                strategy,
                domains=inputs["domains"],
                prior=inputs["prior"],
                constraints=inputs["constraints"],
                X=X if len(y) else None,
                y=y if len(y) else None,
                temperature=p["temperature"],
                min_weight=p["min_weight"],
                seed=p["seed"],
            )
        run.check()
        run.finish(
            None,
            f"{len(mixtures)} runs planned ({strategy})",
            also=lambda s: suggestion_service.store_suggestions(
                s, job, inputs["domains"], mixtures, strategy, inputs["version"], extra
            ),
        )

    common.run_job(job_id, body, task_id=self.request.id)
