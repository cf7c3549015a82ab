"""Headless Chromium, without the trained seed (cheap): the swarm coverage chart names every
domain on its x axis, and the jobs page's live table links each job to what it produced
(issue 26)."""

from __future__ import annotations

import httpx
import pytest

from tests.dashboard.conftest import logged_in_context
from tests.dashboard.pages import ready, wait_js

DOMAINS = ["web", "code", "math", "the_pile_arxiv"]

#: the x axis's drawn tick labels of a chart
TICKS = """(id) => {
  const chart = Chart.getChart(document.getElementById(id));
  return chart.scales.x.ticks.map((t) => t.label);
}"""


@pytest.fixture(scope="module")
def small(server, engine):
    from app.services import tokens
    from app.store.db import session_scope
    from tests.conftest import _empty_tables

    _empty_tables(engine)
    with httpx.Client(base_url=server, timeout=30) as http:
        with session_scope() as s:
            _, admin = tokens.create_token(s, "browser-fixes", "admin", [])
        headers = {"Authorization": f"Bearer {admin}"}
        p = http.post(
            "/v1/projects",
            json={"name": "axis", "domains": [{"name": d} for d in DOMAINS]},
            headers=headers,
        ).json()
        runs = [
            {"mixture": dict(zip(DOMAINS, w, strict=True)), "metrics": {"loss": 2.0 + i / 10}}
            for i, w in enumerate(
                [(0.7, 0.1, 0.1, 0.1), (0.1, 0.7, 0.1, 0.1), (0.25, 0.25, 0.25, 0.25)]
            )
        ]
        ids = http.post(f"/v1/projects/{p['id']}/runs", json={"runs": runs}, headers=headers)
        yield {"project": p["id"], "token": admin, "runs": ids.json()["ids"]}
    _empty_tables(engine)


def test_coverage_axis_names_every_domain(browser, server, small):
    ctx = logged_in_context(browser, server, small["token"])
    try:
        page = ctx.new_page()
        page.goto(f"/dashboard/projects/{small['project']}")
        ready(page)
        wait_js(page, "() => !!Chart.getChart(document.getElementById('coverage-chart'))")
        # shortName drops the_pile_: the labels the chart drew, one per domain, in order
        assert page.evaluate(TICKS, "coverage-chart") == ["web", "code", "math", "arxiv"]
    finally:
        ctx.close()


def test_jobs_live_table_links_to_what_a_job_produced(browser, server, small):
    from app.services import jobs as job_service
    from app.store.db import session_scope

    with session_scope() as s:
        job = job_service.create_job(s, kind="suggest", project_id=small["project"], params={})
        job.state, job.result = "succeeded", {"run_ids": small["runs"], "strategy": "swarm"}
        job_id = job.id
    ctx = logged_in_context(browser, server, small["token"])
    try:
        page = ctx.new_page()
        page.goto("/dashboard/jobs")
        ready(page)
        # the live refresh (every 2 s) rebuilds the table from /dashboard/api/jobs
        wait_js(
            page, "() => document.getElementById('jobs-status').textContent.includes('updated')"
        )
        links = page.locator(f"tr[data-job-id='{job_id}'] td.links a")
        assert links.all_inner_texts() == [f"run #{i}" for i in small["runs"]]
        links.first.click()
        page.wait_for_url(f"**/dashboard/projects/{small['project']}/runs/{small['runs'][0]}")
    finally:
        ctx.close()
