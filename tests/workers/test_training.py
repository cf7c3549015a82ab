"""Proxy training through the API on real Celery workers: a swarm trains and its runs come back
with metrics; a worker SIGKILLed mid-training is replaced and the job completes, once."""

import os
import signal
import time

from tests.conftest import count_rows, start_worker_process, wait_job
from tests.factories import CORPORA
from tests.factories import CORPUS_DOMAINS as DOMAINS
from tests.factories import ingested_project as _project


def test_swarm_trains_and_runs_come_back_with_metrics(client, admin, worker):
    p = _project(client, admin)
    body = {
        "count": 3,
        "preset": "tiny",
        "train_steps": 40,
        "batch_size": 8,
        "block_size": 64,
        "eval_interval": 20,
        "seed": 1,
        "tag": "s1",
    }
    r = client.post(f"/v1/projects/{p['id']}/swarms", json=body, headers=admin)
    assert r.status_code == 202, r.text
    acc = r.json()
    assert len(acc["run_ids"]) == 3 and all(j["queue"] == "gpu" for j in acc["jobs"])
    for job in acc["jobs"]:
        done = wait_job(client, admin, job["id"], timeout=300)
        assert done["state"] == "succeeded", done["error"]
    runs = client.get(f"/v1/projects/{p['id']}/runs?tag=s1", headers=admin).json()["data"]
    assert len(runs) == 3
    assert [r["seed"] for r in runs] == [1, 1, 1]  # shared seed: runs differ only by mixture
    for run in runs:
        assert run["status"] == "succeeded" and run["origin"] == "trained"
        assert set(run["metrics"]) == {f"val_loss/{d}" for d in DOMAINS} | {
            f"val_bpb/{d}" for d in DOMAINS
        }
        assert all(0 < v < 6 for v in run["metrics"].values())
        assert run["train_steps"] == 40 and run["model_params"] > 0
        curve = client.get(f"/v1/projects/{p['id']}/runs/{run['id']}/curve", headers=admin).json()[
            "points"
        ]
        assert [pt["step"] for pt in curve][:1] == [0] and len(curve) >= 3
        first, last = curve[0]["metrics"], curve[-1]["metrics"]
        assert all(last[k] < first[k] for k in first)  # training lowered every domain's loss
    # the mixtures differ (a swarm, not copies) and sum to 1
    mixtures = [tuple(round(v, 6) for v in r["mixture"].values()) for r in runs]
    assert len(set(mixtures)) == 3
    # ingestion measured entropies: the training-free entropy mixtures (BiMix) are available
    base = client.get(f"/v1/projects/{p['id']}/baselines", headers=admin).json()
    assert {"natural", "uniform", "entropy_conditional", "entropy_shannon"} <= set(base["mixtures"])
    ent = base["mixtures"]["entropy_conditional"]
    assert abs(sum(ent.values()) - 1) < 1e-9 and len(set(round(v, 6) for v in ent.values())) > 1
    # a run trained with an online mixer stores its trajectory and recommends its final weights
    online = {**body, "count": 1, "tag": "odm", "online": {"algorithm": "odm", "params": {}}}
    acc = client.post(f"/v1/projects/{p['id']}/swarms", json=online, headers=admin).json()
    assert wait_job(client, admin, acc["jobs"][0]["id"], timeout=300)["state"] == "succeeded"
    run = client.get(f"/v1/projects/{p['id']}/runs/{acc['run_ids'][0]}", headers=admin).json()
    assert len(run["details"]["weight_trajectory"]) > 1
    recs = client.get(f"/v1/projects/{p['id']}/recommendations", headers=admin).json()["data"]
    assert (
        recs[0]["source"] == "online:odm" and recs[0]["mixture"] == run["details"]["final_weights"]
    )
    # the project's objective became the mean validation loss, so an estimator can be fitted
    assert client.get(f"/v1/projects/{p['id']}", headers=admin).json()["objective"] == {
        f"val_loss/{d}": 1.0 for d in DOMAINS
    }


def test_swarm_validation(client, admin):
    p = client.post(
        "/v1/projects", json={"name": "x", "domains": [{"name": "a"}, {"name": "b"}]}, headers=admin
    ).json()
    url = f"/v1/projects/{p['id']}/swarms"
    r = client.post(url, json={"count": 2, "train_steps": 10}, headers=admin)
    assert r.status_code == 422 and "data source" in r.json()["detail"]
    r = client.post(url, json={"count": 2}, headers=admin)
    assert r.status_code == 422 and "train_steps or train_tokens" in r.json()["detail"]
    r = client.post(url, json={"count": 2, "train_steps": 10, "preset": "huge"}, headers=admin)
    assert r.status_code == 422
    assert count_rows("run") == 0 and count_rows("job") == 0


def test_swarm_seeds_shared_or_per_run(client, admin):
    domains = [
        {"name": d, "token_count": 1000, "source": {"path": str(CORPORA / d), "format": "jsonl"}}
        for d in DOMAINS
    ]
    p = client.post(
        "/v1/projects", json={"name": "seeds", "domains": domains}, headers=admin
    ).json()
    url = f"/v1/projects/{p['id']}/swarms"
    seeds = {}
    for policy in ("shared", "per_run"):
        r = client.post(
            url,
            json={"count": 3, "train_steps": 10, "seed": 5, "seeds": policy, "tag": policy},
            headers=admin,
        )
        assert r.status_code == 202, r.text
        runs = client.get(f"/v1/projects/{p['id']}/runs?tag={policy}", headers=admin).json()["data"]
        seeds[policy] = sorted(run["seed"] for run in runs)
        jobs = [client.get(f"/v1/jobs/{j['id']}", headers=admin).json() for j in r.json()["jobs"]]
        assert sorted(j["params"]["seed"] for j in jobs) == seeds[policy]
    assert seeds == {"shared": [5, 5, 5], "per_run": [5, 6, 7]}
    r = client.post(url, json={"count": 2, "train_steps": 10, "seeds": "random"}, headers=admin)
    assert r.status_code == 422 and "seeds" in r.text


def test_design_seed_gives_new_mixtures_with_the_same_training_seed(client, admin, worker):
    """More runs for a shared-seed swarm: ``design_seed`` draws other mixtures, ``seed`` stays
    the training seed. (The project is ingested first: measured token counts move the design's
    prior, and they must not change between the swarms compared.)"""
    p = _project(client, admin, name="design")
    url = f"/v1/projects/{p['id']}/swarms"
    designs = {}
    for tag, extra in (
        ("default", {}),
        ("same", {"design_seed": 5}),
        ("other", {"design_seed": 6}),
    ):
        body = {"count": 3, "train_steps": 10, "preset": "micro", "seed": 5, "tag": tag, **extra}
        r = client.post(url, json=body, headers=admin)
        assert r.status_code == 202, r.text
        runs = client.get(f"/v1/projects/{p['id']}/runs?tag={tag}", headers=admin).json()["data"]
        assert [run["seed"] for run in runs] == [5, 5, 5]
        designs[tag] = sorted(tuple(run["mixture"].values()) for run in runs)
    assert designs["same"] == designs["default"] and designs["other"] != designs["default"]


def test_presets_agree_with_the_trainer():
    from app.services.swarms import TRAINING_PRESETS
    from mixopt.training.model import PRESETS

    assert set(TRAINING_PRESETS) == set(PRESETS)


def test_worker_killed_mid_training_resumes_and_stores_the_run_once(client, admin, engine):
    p = _project_with_own_worker(client, admin)
    body = {
        "count": 1,
        "preset": "micro",
        "train_steps": 300,
        "batch_size": 8,
        "block_size": 64,
        "eval_interval": 10,
        "seed": 3,
        "tag": "kill",
        "queue": "killtest",
    }
    first = start_worker_process("doomed", queues="killtest")
    try:
        acc = client.post(f"/v1/projects/{p['id']}/swarms", json=body, headers=admin).json()
        job_id, run_id = acc["jobs"][0]["id"], acc["run_ids"][0]
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # wait until it has trained (and checkpointed) a while
            job = client.get(f"/v1/jobs/{job_id}", headers=admin).json()
            if job["state"] == "running" and job["progress"] >= 0.15:
                break
            time.sleep(0.2)
        assert job["state"] == "running" and job["progress"] < 1, job
        os.killpg(first.pid, signal.SIGKILL)  # the worker and its pool child, no warning
        first.wait(timeout=10)
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
    second = start_worker_process("rescuer", queues="killtest", beat=True)
    try:
        done = wait_job(client, admin, job_id, timeout=300)
    finally:
        os.killpg(second.pid, signal.SIGTERM)
        second.wait(timeout=30)
    assert done["state"] == "succeeded", done["error"]
    assert done["attempts"] == 2
    runs = client.get(f"/v1/projects/{p['id']}/runs?tag=kill", headers=admin).json()
    assert runs["count"] == 1 and runs["data"][0]["id"] == run_id
    run = runs["data"][0]
    assert (
        run["status"] == "succeeded"
        and run["train_steps"] == 300
        and len(run["metrics"]) == 2 * len(DOMAINS)
    )
    curve = client.get(f"/v1/projects/{p['id']}/runs/{run_id}/curve", headers=admin).json()[
        "points"
    ]
    steps = [pt["step"] for pt in curve]
    assert steps == sorted(set(steps)) and steps[-1] == 300  # one point per step, none twice


def _project_with_own_worker(client, admin):
    """Ingest with a short-lived worker on the default queue (this test must not depend on the
    session worker, whose beat would also re-queue the killed job)."""
    w = start_worker_process("ingest", queues="default")
    try:
        return _project(client, admin, name="kill")
    finally:
        os.killpg(w.pid, signal.SIGTERM)
        w.wait(timeout=30)
