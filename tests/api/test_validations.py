"""Validation trainings through the API on a real Celery worker: every mixture trained with the
same seeds, and a stored paired comparison whose numbers are the runs' own."""

import math
import os
import signal
import statistics
import time

import pytest
from scipy.stats import t as student_t

from mixopt.mixing.compare import paired_comparison
from tests.conftest import start_worker_process, wait_job
from tests.factories import CORPORA, CORPUS_DOMAINS, ingested_project

TINY = {"preset": "tiny", "train_steps": 30, "batch_size": 8, "block_size": 64, "eval_interval": 15}


def test_validation_job_stores_a_paired_comparison_of_its_runs(client, admin, worker):
    p = ingested_project(client, admin, name="val")
    skewed = {"code": 0.7, "docs": 0.1, "legal": 0.1, "prose": 0.1}
    body = {
        **TINY,
        "seeds": [3, 4],
        "mixtures": [{"baseline": "uniform"}, {"mixture": skewed, "label": "skewed"}],
    }
    r = client.post(f"/v1/projects/{p['id']}/validations", json=body, headers=admin)
    assert r.status_code == 202, r.text
    acc = r.json()
    vid = acc["validation"]["id"]
    assert acc["job"]["kind"] == "validate" and acc["job"]["queue"] == "gpu"
    done = wait_job(client, admin, acc["job"]["id"], timeout=400)
    assert done["state"] == "succeeded", done["error"]
    v = client.get(f"/v1/projects/{p['id']}/validations/{vid}", headers=admin).json()
    assert v["status"] == "succeeded"
    res = v["result"]
    # the runs: one per (mixture, seed), the same seeds for both mixtures
    runs = {
        r["id"]: r
        for r in client.get(
            f"/v1/projects/{p['id']}/runs?tag=validation-{vid}", headers=admin
        ).json()["data"]
    }
    assert len(runs) == 4 and all(r["status"] == "succeeded" for r in runs.values())
    assert [[runs[i]["seed"] for i in row] for row in v["run_ids"]] == [[3, 4], [3, 4]]
    assert runs[v["run_ids"][1][0]]["mixture"] == pytest.approx(skewed)

    def objective(run):  # the project's objective: mean validation loss over the domains
        return statistics.fmean(run["metrics"][f"val_loss/{d}"] for d in CORPUS_DOMAINS)

    uni = [objective(runs[i]) for i in v["run_ids"][0]]
    skw = [objective(runs[i]) for i in v["run_ids"][1]]
    assert uni[0] != uni[1]  # different seeds really train differently
    (cmp,) = res["comparisons"]
    assert (cmp["label"], cmp["reference"]) == ("skewed", "uniform")
    diffs = [a - b for a, b in zip(skw, uni, strict=True)]
    assert cmp["differences"] == pytest.approx(diffs, abs=1e-9)
    assert cmp["mean"] == pytest.approx(statistics.fmean(diffs))
    half = student_t.ppf(0.975, 1) * statistics.stdev(diffs) / math.sqrt(2)
    assert cmp["interval_low"] == pytest.approx(statistics.fmean(diffs) - half)
    assert cmp["interval_high"] == pytest.approx(statistics.fmean(diffs) + half)
    assert cmp["wins"] == sum(d < 0 for d in diffs)
    by_label = {m["label"]: m for m in res["mixtures"]}
    assert by_label["uniform"]["objective"] == pytest.approx(uni)
    assert by_label["uniform"]["std"] == pytest.approx(statistics.stdev(uni))
    code = [runs[i]["metrics"]["val_loss/code"] for i in v["run_ids"][1]]
    assert by_label["skewed"]["domains"]["code"]["mean"] == pytest.approx(statistics.fmean(code))
    uni_code = [runs[i]["metrics"]["val_loss/code"] for i in v["run_ids"][0]]
    assert cmp["domains"]["code"] == pytest.approx(
        statistics.fmean(code) - statistics.fmean(uni_code)
    )
    # 70% code trains code better than 25% code does, on both seeds
    assert all(c < u for c, u in zip(code, uni_code, strict=True))
    listed = client.get(f"/v1/projects/{p['id']}/validations", headers=admin).json()
    assert listed["count"] == 1 and listed["data"][0]["id"] == vid


@pytest.fixture
def two_process_worker():
    """A worker with two pool processes on its own queue (the session worker has one)."""
    w = start_worker_process("valpar", queues="valpar", concurrency=2)
    yield w
    os.killpg(w.pid, signal.SIGTERM)
    w.wait(timeout=30)


def _runs(client, admin, project_id, vid):
    return {
        r["id"]: r
        for r in client.get(
            f"/v1/projects/{project_id}/runs?tag=validation-{vid}&limit=100", headers=admin
        ).json()["data"]
    }


def test_validation_runs_are_spread_over_free_pool_processes(
    client, admin, worker, two_process_worker
):
    """With two pool processes the validation's job and one helper job train its runs at the same
    time; every run is trained once, and the helpers that find nothing left end without work."""
    p = ingested_project(client, admin, name="val-par")
    body = {
        **TINY,
        "train_steps": 120,
        "seeds": [1, 2],
        "queue": "valpar",
        "mixtures": [{"baseline": "uniform"}, {"baseline": "natural"}],
    }
    acc = client.post(f"/v1/projects/{p['id']}/validations", json=body, headers=admin).json()
    vid, job_id = acc["validation"]["id"], acc["job"]["id"]
    done = wait_job(client, admin, job_id, timeout=400)
    assert done["state"] == "succeeded", done["error"]
    helpers = done["params"]["helpers"]
    assert len(helpers) == 3  # MIXOPT_VALIDATION_PARALLEL 4, 4 runs
    helper_jobs = [wait_job(client, admin, h, timeout=120) for h in helpers]
    assert all(
        h["state"] == "succeeded" and h["kind"] == "validate_part" and h["queue"] == "valpar"
        for h in helper_jobs
    ), helper_jobs
    runs = _runs(client, admin, p["id"], vid)
    assert len(runs) == 4 and all(r["status"] == "succeeded" for r in runs.values())
    by_job = {}
    for rid, r in runs.items():
        by_job.setdefault(r["details"]["trained_by_job"], []).append(rid)
    assert set(by_job) <= {job_id, *helpers} and len(by_job) == 2, (
        by_job
    )  # two processes, two trainers
    helper_trained = [rid for h in helper_jobs for rid in h["result"]["trained"]]
    assert sorted(helper_trained + by_job.get(job_id, [])) == sorted(runs)  # each run once
    assert done["result"]["trained_by_jobs"] == 2
    v = client.get(f"/v1/projects/{p['id']}/validations/{vid}", headers=admin).json()
    assert v["status"] == "succeeded" and len(v["result"]["comparisons"]) == 2


def test_cancelled_validation_stops_its_helpers(client, admin, worker, two_process_worker):
    p = ingested_project(client, admin, name="val-cancel")
    body = {
        **TINY,
        "preset": "micro",
        "train_steps": 3000,
        "eval_interval": 1000,
        "seeds": [1, 2],
        "queue": "valpar",
        "mixtures": [{"baseline": "uniform"}, {"baseline": "natural"}],
    }
    acc = client.post(f"/v1/projects/{p['id']}/validations", json=body, headers=admin).json()
    vid, job_id = acc["validation"]["id"], acc["job"]["id"]
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # both processes are training a run
        held = [r for r in _runs(client, admin, p["id"], vid).values() if r["status"] == "running"]
        if len(held) == 2:
            break
        time.sleep(0.2)
    assert len(held) == 2, held
    assert client.post(f"/v1/jobs/{job_id}/cancel", headers=admin).status_code == 200
    done = wait_job(client, admin, job_id, timeout=60)
    assert done["state"] == "cancelled"
    helpers = [wait_job(client, admin, h, timeout=60) for h in done["params"]["helpers"]]
    assert {h["state"] for h in helpers} <= {"cancelled", "succeeded"} and any(
        h["state"] == "cancelled" for h in helpers
    )
    v = client.get(f"/v1/projects/{p['id']}/validations/{vid}", headers=admin).json()
    assert v["status"] == "cancelled" and v["result"] is None
    runs = _runs(client, admin, p["id"], vid)
    assert {r["status"] for r in runs.values()} == {"cancelled"}
    assert all(not r["metrics"] for r in runs.values())


def test_validation_limits_and_bad_input(client, admin):
    domains = [
        {
            "name": d,
            "source": {"path": str(CORPORA / d), "format": "jsonl"},
            "token_count": 1000 * (i + 1),
        }
        for i, d in enumerate(CORPUS_DOMAINS)
    ]
    p = client.post(
        "/v1/projects", json={"name": "val-bad", "domains": domains}, headers=admin
    ).json()
    url = f"/v1/projects/{p['id']}/validations"
    two = [{"baseline": "uniform"}, {"baseline": "natural"}]
    cases = [
        ({"mixtures": two[:1]}, "mixtures"),
        ({"mixtures": two, "seeds": list(range(11))}, "seeds"),
        ({"mixtures": two, "seeds": [1, 1]}, "distinct"),
        ({"mixtures": two, "train_steps": 10**6}, "train_steps"),
        (
            {
                "mixtures": [{"baseline": "uniform", "label": f"m{i}"} for i in range(12)],
                "seeds": list(range(6)),
            },
            "at most 64",
        ),
        ({"mixtures": [{"baseline": "uniform", "mixture": {"code": 1.0}}, two[1]]}, "exactly one"),
        ({"mixtures": [{"baseline": "nope"}, two[1]]}, "nope"),
        ({"mixtures": [{"mixture": {"web": 1.0}}, two[1]]}, "web"),
        ({"mixtures": [{"mixture": {"code": -1.0}}, two[1]]}, "mixture"),
        ({"mixtures": [{"baseline": "uniform"}, {"baseline": "uniform"}]}, "distinct"),
        ({"mixtures": two, "preset": "huge"}, "preset"),
        ({"mixtures": two, "queue": "nobody-consumes-this"}, "queue"),
    ]
    for body, word in cases:
        r = client.post(url, json=body, headers=admin)
        assert r.status_code == 422, (body, r.text)
        assert word in r.text, (word, r.text)
    r = client.post(url, json={"mixtures": [{"recommendation_id": 999}, two[1]]}, headers=admin)
    assert r.status_code == 404 and "recommendation 999" in r.json()["detail"]
    assert client.get(f"{url}/12345", headers=admin).status_code == 404
    # nothing was stored by the refused requests
    assert client.get(url, headers=admin).json()["count"] == 0


def test_paired_comparison_by_hand():
    # two seeds; b is 0.1 better on seed 0 and 0.3 better on seed 1
    out = paired_comparison(
        ["a", "b"], [[2.0, 3.0], [1.9, 2.7]], {"x": [[2.0, 3.0], [1.9, 2.7]]}, [0], [0, 1]
    )
    (c,) = out["comparisons"]
    assert c["differences"] == pytest.approx([-0.1, -0.3])
    assert c["mean"] == pytest.approx(-0.2) and c["wins"] == 2
    sd = math.sqrt(0.02)  # deviations +-0.1 about -0.2, n - 1 = 1
    half = 12.706204736 * sd / math.sqrt(2)  # t_{0.975, 1}
    assert c["interval_low"] == pytest.approx(-0.2 - half) and c["interval_high"] == pytest.approx(
        -0.2 + half
    )
    assert out["mixtures"][0]["std"] == pytest.approx(math.sqrt(0.5))
