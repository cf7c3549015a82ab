"""A swarm in rounds on real Celery workers: round 1 trains, the rounds job fits and plans
round 2, and when the worker is SIGKILLed between rounds a new worker finishes the swarm
without training any finished run again (issue 25)."""

from __future__ import annotations

import os
import signal
import time

from tests.conftest import start_worker_process, wait_job
from tests.factories import CORPORA
from tests.factories import CORPUS_DOMAINS as DOMAINS


def _project(client, admin) -> dict:
    domains = [
        {"name": d, "source": {"path": str(CORPORA / d), "format": "jsonl"}, "token_count": c}
        for d, c in zip(DOMAINS, (1000, 2000, 3000, 4000), strict=False)
    ]
    r = client.post("/v1/projects", json={"name": "rounds", "domains": domains}, headers=admin)
    assert r.status_code == 201, r.text
    return r.json()


def _runs(client, admin, pid: int) -> list[dict]:
    return client.get(f"/v1/projects/{pid}/runs?tag=rk&limit=100", headers=admin).json()["data"]


def test_rounds_swarm_resumes_after_its_worker_is_killed_between_rounds(client, admin, engine):
    p = _project(client, admin)
    body = {
        "strategy": "rounds",
        "total_budget": 7,
        "round_size": 2,  # round 1: K + 1 = 5 runs (2 x 2 is fewer), round 2: 2 runs
        "preset": "micro",
        "train_steps": 20,
        "batch_size": 8,
        "block_size": 64,
        "eval_interval": 10,
        "seed": 2,
        "tag": "rk",
        "queue": "killtest",
    }
    first = start_worker_process("rounds-doomed", queues="killtest")
    try:
        acc = client.post(f"/v1/projects/{p['id']}/swarms", json=body, headers=admin).json()
        round1, rounds_job = set(acc["run_ids"]), acc["rounds_job"]["id"]
        assert len(round1) == len(DOMAINS) + 1 == 5
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:  # until round 1 is trained, then kill at once
            done = [r for r in _runs(client, admin, p["id"]) if r["id"] in round1]
            if all(r["status"] == "succeeded" for r in done):
                break
            time.sleep(0.2)
        os.killpg(first.pid, signal.SIGKILL)  # the worker and its pool child, no warning
        first.wait(timeout=10)
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
    before = {r["id"]: r for r in _runs(client, admin, p["id"]) if r["id"] in round1}
    assert all(r["status"] == "succeeded" for r in before.values()), before
    # its beat's reaper runs on the maintenance queue: the rescuer consumes it (no other worker
    # of the session may re-send the swarm's jobs here)
    second = start_worker_process(
        "rounds-rescuer",
        queues="killtest,maintenance",
        beat=True,
        extra_env={"MIXOPT_PENDING_RESEND_SECONDS": "3"},
    )
    try:
        job = wait_job(client, admin, rounds_job, timeout=400)
    finally:
        os.killpg(second.pid, signal.SIGTERM)
        second.wait(timeout=30)
    assert job["state"] == "succeeded", (job["error"], job["message"])
    runs = _runs(client, admin, p["id"])
    # the whole budget, each run once: round 2 was planned once (not again on resume)
    assert len(runs) == 7 and all(r["status"] == "succeeded" for r in runs)
    by_round = {1: set(), 2: set()}
    for r in runs:
        by_round[r["details"]["round"]].add(r["id"])
    assert by_round[1] == round1 and len(by_round[2]) == 2
    # no finished run trained again: same metrics, same update time, their jobs ran once
    for r in runs:
        if r["id"] in round1:
            assert r["metrics"] == before[r["id"]]["metrics"]
            assert r["updated_at"] == before[r["id"]]["updated_at"]
    for j in acc["jobs"]:
        assert client.get(f"/v1/jobs/{j['id']}", headers=admin).json()["attempts"] == 1
    # progress: each round with its runs trained, best predicted mixture and its interval
    rounds = job["params"]["rounds"]
    assert [e["round"] for e in rounds] == [1, 2]
    assert [len(e["run_ids"]) for e in rounds] == [5, 2]
    for e in rounds:
        after = e["after"]
        assert e["trained"] == len(e["run_ids"]) and e["failed"] == 0
        assert set(after["best_mixture"]) == set(DOMAINS)
        assert abs(sum(after["best_mixture"].values()) - 1) < 1e-6
        lo, hi = after["interval"]
        assert lo <= after["best_loss"] <= hi
    assert job["result"]["best"] == rounds[-1]["after"]
    assert "budget spent" in job["result"]["reason"]
    # round 2's runs are new mixtures, none a copy of a round-1 run
    mix = {r["id"]: tuple(round(v, 6) for v in r["mixture"].values()) for r in runs}
    assert not {mix[i] for i in by_round[2]} & {mix[i] for i in round1}


def test_rounds_use_the_mde_features_when_the_project_has_experts(client, admin, session):
    # experts uploaded through the API (each sure of its own domain); runs whose loss is an
    # affine map of their MDE loss (known truth, Belenki et al. 2025): the rounds' model is
    # mde_gp, and the round it plans is feasible and predicted better than the runs
    import numpy as np

    from app.store.models import Project
    from mixopt.mixing import rounds
    from mixopt.mixing.mde import mde_losses
    from tests.api.test_experts import _expected, _npy, _project, _put
    from workers.tasks.training import _rounds_estimator

    p, n_val = _project(client, admin, name="rounds-mde")
    project = session.get(Project, p["id"])
    domains = [d.name for d in project.domains]
    # no experts yet: the rounds' GP, named with the prior its hyper-parameters are fitted under
    assert _rounds_estimator(session, project, domains)[2] == "gp (hyper_prior=dim_scaled)"
    rng = np.random.default_rng(0)
    for j, val in enumerate(DOMAINS):
        for i, expert in enumerate(DOMAINS):
            lo, hi = (0.3, 0.9) if i == j else (0.01, 0.3)
            values = rng.uniform(lo, hi, _expected(n_val[val])).astype(np.float16)
            assert _put(client, admin, p["id"], expert, val, _npy(values)).status_code == 200
    session.expire_all()
    estimator, context, label = _rounds_estimator(session, project, domains)
    assert label == "mde_gp" and context["domains"] == domains
    X = rounds.first_round(np.ones(len(domains)), 10, random_state=0)
    y = 0.3 + 0.8 * mde_losses(context["experts"], X).mean(axis=1)
    plan = rounds.next_round(
        X, y, 3, round_index=2, estimator=estimator, fit_context=context, domains=domains
    )
    assert plan.mixtures.shape == (3, len(domains))
    assert np.allclose(plan.mixtures.sum(axis=1), 1)
    truth = 0.3 + 0.8 * mde_losses(context["experts"], plan.best_mixture[None]).mean()
    assert truth < y.min()  # the best predicted mixture is truly better than every run
