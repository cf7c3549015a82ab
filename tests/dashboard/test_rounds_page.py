"""The overview page shows each swarm in rounds: its rounds, runs trained, and the best
predicted mixture after each round with its interval."""

from __future__ import annotations

import numpy as np

from tests.dashboard.pages import login
from tests.factories import CORPORA
from tests.factories import CORPUS_DOMAINS as DOMAINS


def test_overview_lists_the_rounds_of_a_swarm(client, admin, admin_token, session):
    from app.store.models import Job
    from mixopt.mixing import rounds

    domains = [
        {"name": d, "source": {"path": str(CORPORA / d), "format": "jsonl"}, "token_count": c}
        for d, c in zip(DOMAINS, (1000, 2000, 3000, 4000), strict=False)
    ]
    p = client.post("/v1/projects", json={"name": "r", "domains": domains}, headers=admin).json()
    login(client, admin_token)
    assert "Swarms in rounds" not in client.get(f"/dashboard/projects/{p['id']}").text
    body = {"strategy": "rounds", "total_budget": 8, "round_size": 2, "train_steps": 5}
    acc = client.post(
        f"/v1/projects/{p['id']}/swarms", json={**body, "tag": "climb"}, headers=admin
    ).json()
    page = client.get(f"/dashboard/projects/{p['id']}").text
    assert "Swarms in rounds" in page and "climb" in page and "training" in page
    # what the rounds job records once round 1 is trained (the science's own summary)
    names = [d["name"] for d in p["domains"]]
    K = len(names)
    X = rounds.first_round(np.ones(K), 4, random_state=0)
    y = X @ np.linspace(3.0, 4.0, K)
    plan = rounds.next_round(X, y, 2, round_index=2, domains=names)
    job = session.get(Job, acc["rounds_job"]["id"])
    entry = {**job.params["rounds"][0], "trained": 4, "failed": 0, "after": plan.summary(names)}
    job.params = {**job.params, "rounds": [entry]}
    session.commit()
    page = client.get(f"/dashboard/projects/{p['id']}").text
    lo, hi = plan.best_interval
    assert f"{plan.best_loss:.4g}" in page and f"[{lo:.4g}, {hi:.4g}]" in page
    assert all(n in page.split("rounds-table")[1] for n in names)
