""" "Re-mix now" is a job like every other asynchronous action: a ``remix`` job row sent by the
common dispatch path and ended by a real worker, visible at ``GET /v1/jobs/{id}``; the route's
answer keeps ``{"session_id", "queued"}`` and carries the job as every 202 does (``job``,
``job_url``, ``Location``), which is what the client's ``remix`` reads."""

from __future__ import annotations

from mixopt.api_types import JobAccepted
from tests.conftest import make_project, wait_job

DOMAINS = ("web", "code", "math")


def test_remix_now_is_a_tracked_job(client, admin, worker):
    p = make_project(client, admin, domains=DOMAINS)
    url = f"/v1/projects/{p['id']}/online-sessions"
    # a schedule that never fires during the test: only the request re-mixes
    schedule = {"every_seconds": None, "every_observations": 1000}
    s = client.post(url, json={"algorithm": "odm", "schedule": schedule, "seed": 1}, headers=admin)
    assert s.status_code == 201, s.text
    sid = s.json()["id"]
    obs = [{"step": t, "train_losses": {"web": 2.0, "code": 5.0, "math": 2.0}} for t in (1, 2, 3)]
    r = client.post(f"{url}/{sid}/observations", json={"observations": obs}, headers=admin)
    assert r.json()["accepted"] == 3

    r = client.post(f"{url}/{sid}/remix", headers=admin)
    body = r.json()
    assert r.status_code == 202 and body["session_id"] == sid and body["queued"] is True, body
    job_url = r.headers["Location"]
    assert body["job_url"] == job_url and body["job"]["kind"] == "remix", body
    assert JobAccepted.model_validate(body).job.id == body["job"]["id"]  # the client's model
    job = wait_job(client, admin, job_url.rsplit("/", 1)[1])
    assert job["kind"] == "remix" and job["project_id"] == p["id"], job
    assert job["state"] == "succeeded" and job["result"] == {"session_id": sid, "version": 2}, job
    assert job["sends"] == 1
    assert client.get(f"{url}/{sid}/weights", headers=admin).json()["version"] == 2

    # nothing pending: the job still ends, and says so
    r = client.post(f"{url}/{sid}/remix", headers=admin)
    job = wait_job(client, admin, r.headers["Location"].rsplit("/", 1)[1])
    assert job["state"] == "succeeded" and job["result"]["version"] is None
    assert "nothing pending" in job["message"]
