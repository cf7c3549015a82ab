"""Operators: /metrics moves with requests and jobs; JSON logs carry the request id from the API
into the jobs it creates and into the worker's log lines."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import _HOME, start_worker_process, wait_job


def _scrape(url: str) -> dict[tuple[str, tuple], float]:
    r = httpx.get(f"{url}/metrics")  # no token, like /healthz
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    out = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def _value(m: dict, name: str, **labels) -> float:
    return m.get((name, tuple(sorted(labels.items()))), 0.0)


def _fit_body():
    return {"estimator": "regmix_linear", "cv_folds": 3}


def _project(c: httpx.Client) -> int:
    p = c.post("/v1/projects", json={"name": "m", "domains": [{"name": "a"}, {"name": "b"}]}).json()
    runs = [
        {"mixture": {"a": i / 9, "b": 1 - i / 9}, "metrics": {"l": (i / 9 - 0.4) ** 2}}
        for i in range(10)
    ]
    assert c.post(f"/v1/projects/{p['id']}/runs", json={"runs": runs}).status_code == 201
    return p["id"]


def test_metrics_count_requests_and_jobs(live_server, worker, admin_token):
    before = _scrape(live_server)
    with httpx.Client(
        base_url=live_server, headers={"Authorization": f"Bearer {admin_token}"}
    ) as c:
        pid = _project(c)
        for _ in range(3):
            assert c.get("/v1/projects").status_code == 200
        assert c.get("/v1/projects/999").status_code == 404
        job_id = c.post(f"/v1/projects/{pid}/fits", json=_fit_body()).json()["job"]["id"]
        deadline = time.monotonic() + 120
        while (
            c.get(f"/v1/jobs/{job_id}").json()["state"] not in ("succeeded", "failed")
            and time.monotonic() < deadline
        ):
            time.sleep(0.2)
    after = _scrape(live_server)
    route = "/v1/projects"
    assert (
        _value(after, "mixopt_http_requests_total", method="GET", route=route, status="200")
        - _value(before, "mixopt_http_requests_total", method="GET", route=route, status="200")
        == 3
    )
    assert (
        _value(
            after,
            "mixopt_http_requests_total",
            method="GET",
            route="/v1/projects/{project_id}",
            status="404",
        )
        >= 1
    )
    assert (
        _value(
            after,
            "mixopt_http_request_duration_seconds_count",
            method="POST",
            route="/v1/projects/{project_id}/fits",
        )
        >= 1
    )
    assert _value(after, "mixopt_jobs", kind="fit", state="succeeded") == 1
    assert _value(after, "mixopt_job_duration_seconds_count", kind="fit") == 1
    assert _value(after, "mixopt_job_duration_seconds_sum", kind="fit") > 0
    assert ("mixopt_database_up", ()) in after and after[("mixopt_database_up", ())] == 1


def test_queue_depth_counts_waiting_jobs(client, admin, monkeypatch):
    """No worker serves the queue here: the job waits, and /metrics says so."""
    from app.core.config import get_settings

    monkeypatch.setenv("MIXOPT_JOB_QUEUE", "unserved")
    get_settings.cache_clear()
    try:
        pid = _project_tc(client, admin)
        assert (
            client.post(f"/v1/projects/{pid}/fits", json=_fit_body(), headers=admin).status_code
            == 202
        )
    finally:
        get_settings.cache_clear()
    text = client.get("/metrics").text
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
    }
    assert samples[("mixopt_queue_depth", (("queue", "unserved"),))] == 1
    assert samples[("mixopt_jobs", (("kind", "fit"), ("state", "pending")))] == 1


def _project_tc(client, admin) -> int:
    p = client.post(
        "/v1/projects", json={"name": "m", "domains": [{"name": "a"}, {"name": "b"}]}, headers=admin
    ).json()
    runs = [
        {"mixture": {"a": i / 9, "b": 1 - i / 9}, "metrics": {"l": float(i)}} for i in range(10)
    ]
    client.post(f"/v1/projects/{p['id']}/runs", json={"runs": runs}, headers=admin)
    return p["id"]


def test_request_id_in_answers_access_log_and_job(client, admin, capsys):
    from app.core import logs

    access = logging.getLogger("mixopt.access")
    logs.configure("json", logger=access)
    try:
        pid = _project_tc(client, admin)
        r = client.post(
            f"/v1/projects/{pid}/fits",
            json=_fit_body(),
            headers={**admin, "X-Request-ID": "req-42"},
        )
        assert r.status_code == 202 and r.headers["x-request-id"] == "req-42"
        job = client.get(f"/v1/jobs/{r.json()['job']['id']}", headers=admin).json()
        assert job["request_id"] == "req-42"
        fresh = client.get("/healthz")
        assert len(fresh.headers["x-request-id"]) == 32  # made up when the client sends none
        bad = client.get("/healthz", headers={"X-Request-ID": "x" * 500})
        assert bad.headers["x-request-id"] != "x" * 500
    finally:
        for h in list(access.handlers):
            access.removeHandler(h)
    lines = [
        json.loads(line) for line in capsys.readouterr().err.splitlines() if line.startswith("{")
    ]
    fit_line = next(x for x in lines if x.get("request_id") == "req-42")
    assert fit_line["route"] == "/v1/projects/{project_id}/fits" and fit_line["status"] == 202
    assert (
        fit_line["method"] == "POST" and fit_line["duration_ms"] > 0 and fit_line["level"] == "info"
    )


def test_worker_logs_json_with_job_and_request_ids(live_server, admin_token, monkeypatch):
    """A worker started with MIXOPT_LOG_FORMAT=json writes JSON lines; those of the job carry its
    id and the id of the request that created it."""
    from app.core.config import get_settings

    monkeypatch.setenv("MIXOPT_JOB_QUEUE", "jsonlogs")  # only the JSON worker serves it
    get_settings.cache_clear()
    proc = start_worker_process(
        "jsonlog", extra_env={"MIXOPT_LOG_FORMAT": "json"}, queues="jsonlogs"
    )
    try:
        with httpx.Client(
            base_url=live_server,
            headers={"Authorization": f"Bearer {admin_token}", "X-Request-ID": "trace-7"},
        ) as c:
            pid = _project(c)
            job_id = c.post(f"/v1/projects/{pid}/fits", json=_fit_body()).json()["job"]["id"]
            assert wait_job(c, {}, job_id, timeout=120)["state"] == "succeeded"
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        get_settings.cache_clear()
    text = (Path(_HOME) / "worker-jsonlog.log").read_text()
    records = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    assert records, text[-2000:]
    mine = [r for r in records if r.get("job_id") == job_id]
    assert mine and all(r["request_id"] == "trace-7" for r in mine), mine[:3]
    assert any(job_id in r["message"] for r in mine)
