"""The typed client and the async client through the whole workflow, against a real server and
a real worker: import -> fit -> recommend -> export, pagination beyond one page, get-or-create,
a failed job raising JobFailed with its reason."""

from __future__ import annotations

import asyncio
import json

import pytest

from mixopt.api_types import Fit, Job, Project, Recommendation, Run
from mixopt.client import AsyncClient, ConnectionFailed, JobFailed, MixoptClient, MixoptError
from tests.conftest import count_rows
from tests.factories import WORKFLOW_DOMAINS, synthetic_runs


def test_client_workflow(live_server, worker, admin_token):
    c = MixoptClient(live_server, admin_token)
    p = c.get_or_create_project(
        "wf", domains=WORKFLOW_DOMAINS, constraints={"bounds": {"web": {"max": 0.8}}}
    )
    assert isinstance(p, Project) and p.domain_names == WORKFLOW_DOMAINS
    again = c.get_or_create_project("wf", domains=WORKFLOW_DOMAINS)
    assert again.id == p.id and count_rows("project") == 1
    with pytest.raises(MixoptError) as exc:
        c.get_or_create_project("wf", domains=["web", "books"])
    assert exc.value.status == 409 and exc.value.field == "domains"

    ids = c.add_runs(p.id, synthetic_runs(250), chunk_size=100)
    assert len(ids) == 250 and count_rows("run") == 250
    runs = list(c.iter_runs(p.id, page_size=100))  # three pages
    assert [r.id for r in runs] == ids and all(isinstance(r, Run) for r in runs)
    frame = c.runs_frame(p.id)
    assert frame.shape[0] == 250 and {"mixture.web", "metrics.val/web", "status"} <= set(
        frame.columns
    )
    assert abs(frame[["mixture.web", "mixture.code", "mixture.math"]].sum(axis=1) - 1).max() < 1e-9

    seen: list[float] = []
    accepted = c.fit(p.id, "regmix_linear", target={"val/web": 1.0}, cv_folds=3)
    job = c.wait(accepted, timeout=300, progress=lambda j: seen.append(j.progress))
    assert isinstance(job, Job) and job.state == "succeeded" and seen and seen[-1] == 1.0
    fit = c.get_fit(p.id, accepted.fit.id)
    assert (
        isinstance(fit, Fit)
        and fit.status == "succeeded"
        and fit.fidelity["pooled"]["spearman"] > 0.5
    )

    rec_job = c.wait(c.recommend(p.id, fit_id=fit.id, n_boot=0), timeout=300)
    rec = c.get_recommendation(p.id, rec_job.result["recommendation_id"])
    assert isinstance(rec, Recommendation) and rec.mixture["web"] <= 0.8 + 1e-6
    assert abs(sum(rec.mixture.values()) - 1) < 1e-6
    best, best_fit = c.best(p.id)
    assert best.id == rec.id and best_fit.id == fit.id
    name, data = c.export_mixture(p.id, rec.id, format="json")
    assert json.loads(data)["mixture"] if b"mixture" in data else json.loads(data)
    # every job of the project, as models, with the one state vocabulary
    assert {j.kind for j in c.list_jobs(project_id=p.id)} >= {"fit"}
    assert (
        c.page_jobs(project_id=p.id, state="queued").count
        == c.page_jobs(project_id=p.id, state="pending").count
    )

    # errors carry status, field and message
    with pytest.raises(MixoptError) as exc:
        c.add_run(p.id, {"web": 0.3, "code": 0.3})
    assert exc.value.status == 422 and exc.value.field == "mixture" and "sum" in exc.value.message


def test_pagination_beyond_one_page_for_offset_lists(live_server, admin_token):
    c = MixoptClient(live_server, admin_token)
    made = {c.create_project(f"p{i:03d}", domains=["a", "b"]).id for i in range(105)}
    assert c.page_projects().count == 105 and len(c.page_projects().data) == 100
    assert {p.id for p in c.list_projects()} == made  # 2 pages, nothing dropped


def test_failed_job_raises_job_failed_with_its_reason(live_server, worker, admin_token):
    c = MixoptClient(live_server, admin_token)
    p = c.create_project("few", domains=WORKFLOW_DOMAINS)
    # five runs of mixtures distinct only below the law's 1e-12 rounding: enough for the
    # request's checks, one distinct mixture for mixing_law (K + 2), which only the fit can
    # tell: the job fails
    (run,) = synthetic_runs(1)
    first, second = list(run["mixture"])[:2]
    runs = [
        {
            **run,
            "mixture": {
                **run["mixture"],
                first: run["mixture"][first] - i * 1e-14,
                second: run["mixture"][second] + i * 1e-14,
            },
        }
        for i in range(5)
    ]
    c.add_runs(p.id, runs)
    accepted = c.fit(p.id, "mixing_law", cv_folds=2)
    with pytest.raises(JobFailed) as exc:
        c.wait(accepted, timeout=120)
    assert exc.value.job.state == "failed" and exc.value.job.id == accepted.job.id
    assert "runs" in exc.value.reason and exc.value.reason == exc.value.job.error


def test_connection_failure_is_one_exception():
    with pytest.raises(ConnectionFailed) as exc:
        MixoptClient("http://127.0.0.1:9", "x", timeout=2).list_projects()
    assert "cannot reach the mixopt API at http://127.0.0.1:9" in str(exc.value)


def test_async_client(live_server, worker, admin_token):
    async def main():
        async with AsyncClient(live_server, admin_token) as c:
            p = await c.get_or_create_project("async", domains=WORKFLOW_DOMAINS)
            assert (await c.get_or_create_project("async", domains=WORKFLOW_DOMAINS)).id == p.id
            ids = await c.add_runs(p.id, synthetic_runs(30, seed=1), chunk_size=20)
            got = [r.id async for r in c.iter_runs(p.id, page_size=7)]
            assert got == ids
            acc = await c.fit(p.id, "regmix_linear", cv_folds=3)
            job = await c.wait(acc, timeout=300)
            assert job.state == "succeeded"
            fits = await c.list_fits(p.id)
            assert [f.id for f in fits] == [acc.fit.id]
            with pytest.raises(MixoptError) as exc:
                await c.get_project(99999)
            assert exc.value.status == 404

    asyncio.run(main())


def test_client_round_trip(live_server, admin_token):
    c = MixoptClient(live_server, admin_token)
    assert c.health() == {"status": "ok"}
    p = c.create_project("c", domains=["a", "b"], constraints={"bounds": {"a": {"max": 0.9}}})
    ids = c.add_runs(
        p["id"],
        [
            {"mixture": {"a": i / 25, "b": 1 - i / 25}, "metrics": {"l": float(i)}}
            for i in range(25)
        ],
        chunk_size=10,
    )
    assert len(ids) == 25 and count_rows("run") == 25
    assert [r["id"] for r in c.iter_runs(p["id"], page_size=7)] == ids
    with pytest.raises(MixoptError) as exc:
        c.add_run(p["id"], {"a": 0.3, "b": 0.3})
    assert exc.value.status == 422 and "sum" in exc.value.detail
    with pytest.raises(MixoptError) as exc:
        c.get_project(9999)
    assert exc.value.status == 404


def test_client_retried_batch_is_stored_once(live_server, admin_token):
    c = MixoptClient(live_server, admin_token)
    p = c.create_project("c", domains=["a", "b"])
    runs = [{"mixture": {"a": 0.5, "b": 0.5}}] * 5
    c.add_runs(p["id"], runs, idempotency_key="same")
    c.add_runs(p["id"], runs, idempotency_key="same")  # a retry after a lost response
    assert count_rows("run") == 5
