"""Dashboard fixes of issue 26: the recommend form, what-if and Pareto start from the BEST fit
(highest cross-validated Spearman, newest on ties: the criterion of ``mixopt best``), not the
newest; the jobs page links each job to what it produced."""

from __future__ import annotations

import re

from app.services import jobs as job_service
from app.store.models import Job
from tests.dashboard.pages import login
from tests.dashboard.test_analysis_pages import _fit, _project, _rec


def _selected(html: str, select_id: str) -> str | None:
    block = re.search(rf'<select id="{select_id}"[^>]*>(.*?)</select>', html, re.S)
    assert block, f"no select {select_id}"
    chosen = re.search(r'<option value="(\d+)"\s*selected', block.group(1))
    return chosen.group(1) if chosen else None


def test_forms_whatif_and_pareto_start_from_the_best_fit(client, admin, admin_token, session):
    p = _project(client, admin)
    best = _fit(session, p["id"])
    best.fidelity = {"pooled": {"spearman": 0.95, "r2": 0.9}}
    newer = _fit(session, p["id"])  # newer, worse: the old default
    newer.fidelity = {"pooled": {"spearman": 0.40, "r2": 0.2}}
    unknown = _fit(session, p["id"])  # newest, no CV at all: never the best
    unknown.fidelity = {}
    failed = _fit(session, p["id"])
    failed.status, failed.fidelity = "failed", {"pooled": {"spearman": 0.99}}
    session.commit()
    assert newer.id > best.id
    login(client, admin_token)
    base = f"/dashboard/projects/{p['id']}"

    fits_page = client.get(f"{base}/fits").text
    assert _selected(fits_page, "rec-fit") == str(best.id)
    assert f"#{best.id} regmix_linear (best CV Spearman)" in fits_page
    assert _selected(client.get(f"{base}/whatif").text, "whatif-fit") == str(best.id)
    pareto = client.get(f"{base}/pareto").text
    assert _selected(pareto, "pareto-fit") == str(best.id)
    assert f"predicted by fit #{best.id}" in pareto
    # an explicit choice still wins
    assert _selected(client.get(f"{base}/whatif?fit={newer.id}").text, "whatif-fit") == str(
        newer.id
    )
    # ties: the newest of the best
    newer.fidelity = {"pooled": {"spearman": 0.95}}
    session.commit()
    assert _selected(client.get(f"{base}/whatif").text, "whatif-fit") == str(newer.id)


def _job(session, project_id: int, kind: str, params: dict, result: dict | None) -> Job:
    job = job_service.create_job(session, kind=kind, project_id=project_id, params=params)
    job.state, job.result = ("succeeded", result) if result is not None else ("running", None)
    session.commit()
    return job


def test_jobs_page_links_each_job_to_what_it_produced(client, admin, admin_token, session):
    p = _project(client, admin)
    pid = p["id"]
    fit = _fit(session, pid)
    rec = _rec(session, pid, fit.id, {"web:news": 0.4, "web:blog": 0.4, "code": 0.2})
    session.commit()
    runs = client.post(
        f"/v1/projects/{pid}/runs",
        json={"runs": [{"mixture": {"code": 1.0}, "metrics": {"web": 2.0}} for _ in range(5)]},
        headers=admin,
    ).json()["ids"]
    jobs = {
        "fit": _job(session, pid, "fit", {"fit_id": fit.id}, {"fit_id": fit.id, "n_runs": 16}),
        "recommend": _job(
            session,
            pid,
            "recommend",
            {"fit_id": fit.id},
            {"recommendation_id": rec.id, "fit_id": fit.id},
        ),
        "suggest": _job(session, pid, "suggest", {}, {"run_ids": runs, "strategy": "swarm"}),
        "train": _job(session, pid, "train", {"run_id": runs[0]}, None),  # still running
    }
    login(client, admin_token)
    html = client.get("/dashboard/jobs").text
    base = f"/dashboard/projects/{pid}"

    def row(job: Job) -> str:
        m = re.search(rf'<tr data-job-id="{job.id}">(.*?)</tr>', html, re.S)
        assert m, f"job {job.id} not listed"
        return m.group(1)

    def hrefs(fragment: str) -> list[str]:
        return re.findall(r'href="([^"]+)"', fragment)

    assert hrefs(row(jobs["fit"]))[1:] == [f"{base}/fits#fit-{fit.id}"]
    assert hrefs(row(jobs["recommend"]))[1:] == [
        f"{base}/mixtures#rec-{rec.id}",
        f"{base}/fits#fit-{fit.id}",
    ]
    suggest = hrefs(row(jobs["suggest"]))[1:]
    assert suggest == [f"{base}/runs/{i}" for i in runs[:3]] + [f"{base}#runs"]
    assert "5 runs in all" in row(jobs["suggest"])
    assert hrefs(row(jobs["train"]))[1:] == [f"{base}/runs/{runs[0]}"]
    # every link opens a page (the anchors exist on it)
    for href in {h for j in jobs.values() for h in hrefs(row(j))[1:]}:
        page = client.get(href.split("#")[0])
        assert page.status_code == 200, href
        if "#" in href and not href.endswith("#runs"):
            assert f'id="{href.split("#")[1]}"' in page.text, href
    # the live table's JSON carries the same links
    live = {j["id"]: j["links"] for j in client.get("/dashboard/api/jobs").json()["data"]}
    assert [x["href"] for x in live[jobs["recommend"].id]] == hrefs(row(jobs["recommend"]))[1:]
    assert live[jobs["train"].id] == [
        {"label": f"run #{runs[0]}", "href": f"{base}/runs/{runs[0]}"}
    ]


def test_job_links_of_validations_online_sessions_and_rounds():
    from app.services.dashboard import job_links

    def hrefs(job: dict) -> list[str]:
        return [x["href"] for x in job_links(job)]

    base = "/dashboard/projects/4"
    assert hrefs({"project_id": 4, "params": {"validation_id": 7}, "result": None}) == [
        f"{base}/validations?validation=7"
    ]
    remix = {"project_id": 4, "params": {"session_id": 3}, "result": {"session_id": 3}}
    assert hrefs(remix) == [f"{base}/online?session=3"]
    # a swarm in rounds lists its runs in its params while it runs, in its result at the end
    rounds = {"project_id": 4, "params": {"rounds": [{"round": 1, "run_ids": [5, 6]}]}}
    assert hrefs(rounds) == [f"{base}/runs/5", f"{base}/runs/6"]
    # nothing produced, no project, or ids of the wrong type: no links
    assert job_links({"project_id": 4, "params": {}, "result": None}) == []
    assert job_links({"project_id": None, "params": {"fit_id": 1}}) == []
    assert job_links({"project_id": 4, "params": {"fit_id": "1", "run_id": True}}) == []
