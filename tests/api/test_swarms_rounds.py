"""A swarm in rounds through the API: what the request must say (422s naming the field, nothing
stored), and what is planned at once (round 1, twice the round size, and the rounds job)."""

from __future__ import annotations

import pytest

from tests.conftest import count_rows
from tests.factories import CORPORA
from tests.factories import CORPUS_DOMAINS as DOMAINS

_BASE = {"strategy": "rounds", "train_steps": 10, "preset": "micro"}
#: a queue of MIXOPT_QUEUES (tests/conftest.py) that no worker of the test session consumes
IDLE_QUEUE = "idle"


def _trainable(client, admin) -> dict:
    """Domains with a data source and a declared token count: designed without ingesting."""
    domains = [
        {"name": d, "source": {"path": str(CORPORA / d), "format": "jsonl"}, "token_count": c}
        for d, c in zip(DOMAINS, (1000, 2000, 3000, 4000), strict=False)
    ]
    r = client.post("/v1/projects", json={"name": "rounds", "domains": domains}, headers=admin)
    assert r.status_code == 201, r.text
    return r.json()


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"round_size": 4}, "total_budget"),
        ({"total_budget": 12}, "round_size"),
        ({"total_budget": 4, "round_size": 6}, "round_size"),
        ({"total_budget": 12, "round_size": 4, "count": 8}, "count"),
        ({"total_budget": 12, "round_size": 0}, "round_size"),
        ({"total_budget": 0, "round_size": 1}, "total_budget"),
        ({"total_budget": 5000, "round_size": 4}, "total_budget"),
        ({"total_budget": 12, "round_size": 4, "acquisition": "ucb"}, "acquisition"),
        (
            {"total_budget": 12, "round_size": 4, "online": {"algorithm": "odm"}},
            "online",
        ),
    ],
)
def test_rounds_requests_name_the_field_and_store_nothing(client, admin, extra, field):
    p = _trainable(client, admin)
    r = client.post(f"/v1/projects/{p['id']}/swarms", json={**_BASE, **extra}, headers=admin)
    assert r.status_code == 422, r.text
    assert field in [e["field"] for e in r.json()["errors"]], r.text
    assert count_rows("run") == 0 and count_rows("job") == 0


def test_other_strategies_still_need_count(client, admin):
    p = _trainable(client, admin)
    r = client.post(f"/v1/projects/{p['id']}/swarms", json={"train_steps": 10}, headers=admin)
    assert r.status_code == 422 and [e["field"] for e in r.json()["errors"]] == ["count"]
    assert count_rows("run") == 0


def test_a_rounds_swarm_plans_round_one_and_its_rounds_job(client, admin):
    p = _trainable(client, admin)
    body = {**_BASE, "total_budget": 10, "round_size": 3, "tag": "r", "acquisition": "lcb"}
    r = client.post(f"/v1/projects/{p['id']}/swarms", json=body, headers=admin)
    assert r.status_code == 202, r.text
    acc = r.json()
    # round 1 is twice the round size; the rest (3 + 1) is planned round by round
    assert len(acc["run_ids"]) == 6 and len(acc["jobs"]) == 6
    rj = acc["rounds_job"]
    assert rj["kind"] == "swarm_rounds" and rj["queue"] == "gpu"
    assert rj["params"]["sizes"] == [6, 3, 1] and rj["params"]["acquisition"] == "lcb"
    assert rj["params"]["rounds"] == [{"round": 1, "run_ids": acc["run_ids"]}]
    assert all(j["params"]["rounds_job"] == rj["id"] for j in acc["jobs"])
    runs = client.get(f"/v1/projects/{p['id']}/runs?tag=r", headers=admin).json()["data"]
    assert {r["details"]["round"] for r in runs} == {1}
    mixtures = {tuple(round(v, 6) for v in r["mixture"].values()) for r in runs}
    assert len(mixtures) == 6  # a space-filling draw, not copies
    assert count_rows("job") == 7


def test_round_one_has_at_least_one_run_more_than_the_domains(client, admin):
    p = _trainable(client, admin)
    K = len(p["domains"])
    body = {**_BASE, "total_budget": K + 3, "round_size": 1, "tag": "k1"}
    r = client.post(f"/v1/projects/{p['id']}/swarms", json=body, headers=admin)
    assert r.status_code == 202, r.text
    acc = r.json()
    # twice the round size would be 2 runs: fewer than K + 1, where a fit is not identified
    assert len(acc["run_ids"]) == K + 1
    assert acc["rounds_job"]["params"]["sizes"] == [K + 1, 1, 1]


def test_cancelling_a_rounds_swarm_cancels_its_rounds_training_and_their_runs(client, admin):
    """On a queue no worker consumes every job stays pending. Cancelling the rounds job cancels
    the training jobs of its round and their runs, which would otherwise stay queued for ever."""
    p = _trainable(client, admin)
    body = {**_BASE, "total_budget": 10, "round_size": 3, "tag": "c", "queue": IDLE_QUEUE}
    acc = client.post(f"/v1/projects/{p['id']}/swarms", json=body, headers=admin).json()
    r = client.post(f"/v1/jobs/{acc['rounds_job']['id']}/cancel", headers=admin)
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "cancelled"
    for j in acc["jobs"]:
        job = client.get(f"/v1/jobs/{j['id']}", headers=admin).json()
        assert job["state"] == "cancelled", job
        assert acc["rounds_job"]["id"] in job["message"]
    runs = client.get(f"/v1/projects/{p['id']}/runs?tag=c", headers=admin).json()["data"]
    assert sorted(r["id"] for r in runs) == sorted(acc["run_ids"])
    assert {r["status"] for r in runs} == {"cancelled"}
    # a second cancel is a conflict, not a 500
    again = client.post(f"/v1/jobs/{acc['rounds_job']['id']}/cancel", headers=admin)
    assert again.status_code == 409, again.text


def test_cancelling_one_pending_training_job_cancels_its_run(client, admin):
    p = _trainable(client, admin)
    body = {"count": 2, "train_steps": 10, "preset": "micro", "tag": "one", "queue": IDLE_QUEUE}
    acc = client.post(f"/v1/projects/{p['id']}/swarms", json=body, headers=admin).json()
    first, second = acc["jobs"][0], acc["jobs"][1]
    assert client.post(f"/v1/jobs/{first['id']}/cancel", headers=admin).status_code == 200
    runs = {
        r["id"]: r["status"]
        for r in client.get(f"/v1/projects/{p['id']}/runs?tag=one", headers=admin).json()["data"]
    }
    assert runs[first["params"]["run_id"]] == "cancelled"
    assert runs[second["params"]["run_id"]] == "queued"
    assert client.get(f"/v1/jobs/{second['id']}", headers=admin).json()["state"] == "pending"
