"""The proposed-mixtures page for pretraining teams (no browser): each recommendation shows its
group totals, its comparison with the reference (gain per metric with interval, or "no
improvement possible"), its phases and the domains it repeats beyond their epoch cap; the
baselines show their predicted objective by the newest fit and their availability warnings."""

from __future__ import annotations

import numpy as np

from tests.dashboard.pages import login

DOMAINS = [
    {"name": "web:news", "token_count": 1_000_000},
    {"name": "web:blog", "token_count": 1_000_000},
    {"name": "enron", "token_count": 20_000},
]
NAMES = [d["name"] for d in DOMAINS]


def test_mixtures_page_shows_groups_reference_phases_and_epoch_warnings(
    client, admin, admin_token, session
):
    from app.store.models import Fit, Recommendation
    from mixopt.mixing import pipeline

    p = client.post(
        "/v1/projects",
        json={
            "name": "teams",
            "domains": DOMAINS,
            "objective": {"loss": 1.0},
            "constraints": {"target_tokens": 1_000_000, "max_epochs": 4},
        },
        headers=admin,
    ).json()
    rng = np.random.default_rng(0)
    X = rng.dirichlet(np.ones(3), size=12)
    y = 2 + X @ np.array([-0.3, -0.1, -0.5])
    state = pipeline.fit_estimator(
        "regmix_linear", {}, X, y[:, None], domains=NAMES, targets=["loss"], cv_folds=2
    )["state"]
    fit = Fit(
        project_id=p["id"],
        estimator="regmix_linear",
        target={"loss": 1.0},
        status="succeeded",
        domains=NAMES,
        state=state,
    )
    session.add(fit)
    session.flush()
    reference = {
        "label": "baseline natural",
        "status": "no_improvement",
        "objective_gain": 0.0,
        "reason": "no mixture under the constraints is predicted to beat the reference",
        "metrics": [{"metric": "loss", "gain": 0.0, "interval": [-0.01, 0.01]}],
    }
    staged = {
        "phases": [
            {
                "name": "main",
                "tokens": 900_000,
                "mixture_by_domain": {"web:news": 0.7, "web:blog": 0.3, "enron": 0.0},
            },
            {
                "name": "anneal",
                "tokens": 100_000,
                "mixture_by_domain": {"web:news": 0.2, "web:blog": 0.2, "enron": 0.6},
            },
        ]
    }
    rec = Recommendation(
        project_id=p["id"],
        fit_id=fit.id,
        source="regmix_linear",
        mixture={"web:news": 0.2, "web:blog": 0.3, "enron": 0.5},
        predicted=2.5,
        constraints={},
        target_scale={},
        binding=["group_max:web"],
        details={"group_totals": {"web": 0.5}, "reference": reference, "staged": staged},
    )
    session.add(rec)
    session.commit()
    login(client, admin_token)
    page = client.get(f"/dashboard/projects/{p['id']}/mixtures")
    assert page.status_code == 200, page.text
    html = page.text
    assert "web 0.500" in html and "group_max:web" in html
    assert (
        "no improvement possible" in html
        and "Against baseline natural" in html
        and "[-0.0100, +0.0100]" in html
    )
    assert "anneal" in html and "enron 0.600" in html
    # the staged recommendation reads enron only in its anneal (0.6 of 100k tokens: 3 epochs
    # of its 20k, within the 4-epoch cap); its stored mixture (0.5) over the whole budget
    # (25 epochs) is not what it trains on and is not flagged (issue 26)
    assert "enron: 25.00 epochs" not in html and "enron: 3.00 epochs" not in html
    # baselines: predicted by the fit (natural = token share), and uniform's enron warning
    natural = np.array([1e6, 1e6, 2e4]) / 2.02e6
    expected = 2 + natural @ np.array([-0.3, -0.1, -0.5])
    assert f'predicted">{expected:.4g}<' in html and f"(fit #{fit.id})" in html
    assert "enron: 16.67 epochs at weight 0.333" in html
