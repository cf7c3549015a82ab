"""Rounds by hand (ask/tell): ``POST .../suggestions`` with ``strategy: "rounds"`` plans the next
round of a swarm in rounds from the project's runs (a real worker); on a known-truth world the
planned runs are truly better on average than the runs told so far; with fewer than 3 runs the
job fails saying why."""

from __future__ import annotations

import numpy as np

from bench.rounds_synthetic import make_world
from mixopt.mixing.rounds import first_round
from tests.conftest import wait_job


def test_next_round_by_hand_moves_toward_the_optimum(client, admin, worker):
    names = ["web", "code", "math"]
    domains = [{"name": d, "token_count": 1000} for d in names]
    p = client.post("/v1/projects", json={"name": "ask", "domains": domains}, headers=admin).json()
    url = f"/v1/projects/{p['id']}"
    world = make_world(3, 0, noise=0.0)
    X = first_round(np.ones(3), 2, random_state=0)

    def tell(W):
        for w, loss in zip(W, world.truth(W), strict=True):
            run = {"mixture": dict(zip(names, w.tolist(), strict=True)), "metrics": {"loss": loss}}
            assert client.post(f"{url}/runs", json=run, headers=admin).status_code == 201

    tell(X)  # two runs: too few for a round
    acc = client.post(
        f"{url}/suggestions", json={"count": 4, "strategy": "rounds"}, headers=admin
    ).json()
    job = wait_job(client, admin, acc["job"]["id"], timeout=120)
    assert job["state"] == "failed" and "at least 3 runs" in job["error"]
    X = first_round(np.ones(3), 8, random_state=1)
    tell(X)
    acc = client.post(
        f"{url}/suggestions", json={"count": 4, "strategy": "rounds", "seed": 3}, headers=admin
    ).json()
    job = wait_job(client, admin, acc["job"]["id"], timeout=120)
    assert job["state"] == "succeeded", job["error"]
    planned = [
        client.get(f"{url}/runs/{rid}", headers=admin).json() for rid in job["result"]["run_ids"]
    ]
    assert len(planned) == 4 and all(r["status"] == "planned" for r in planned)
    W = np.array([[r["mixture"][d] for d in names] for r in planned])
    assert np.allclose(W.sum(axis=1), 1) and len({tuple(np.round(w, 6)) for w in W}) == 4
    told = np.vstack([first_round(np.ones(3), 2, random_state=0), X])
    assert world.truth(W).mean() < world.truth(told).mean()
