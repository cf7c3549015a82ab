"""Off-support recommendations through the API (issue 23, items 6-7): a fit whose optimum puts
the weight on a domain no run gave more than 5% is refused by the worker with a message naming
the domain, its weight, the largest weight seen and the option; allowed when asked; every
recommendation stores the share of bootstrap refits still beating natural; ``robust`` needs
n_boot >= 2 at the request."""

import numpy as np

from tests.conftest import wait_job

D = ["a", "b", "c"]


def _project(client, headers):
    p = client.post(
        "/v1/projects",
        json={
            "name": "support",
            "objective": {"x": 1.0},
            "domains": [
                {"name": d, "token_count": n} for d, n in zip(D, [5000, 4000, 1000], strict=True)
            ],
        },
        headers=headers,
    ).json()
    rng = np.random.default_rng(0)
    c = rng.uniform(0, 0.05, 30)
    X = np.column_stack([rng.dirichlet(np.ones(2), 30) * (1 - c)[:, None], c])
    y = 3 - 0.5 * X[:, 0] - 0.2 * X[:, 1] - 3 * X[:, 2] + rng.normal(0, 0.005, 30)
    runs = [
        {"mixture": dict(zip(D, map(float, x), strict=True)), "metrics": {"x": float(v)}}
        for x, v in zip(X, y, strict=True)
    ]
    r = client.post(f"/v1/projects/{p['id']}/runs", json={"runs": runs}, headers=headers)
    assert r.status_code == 201, r.text
    return p, float(X[:, 2].max())


def _recommend(client, headers, pid, **body):
    return client.post(
        f"/v1/projects/{pid}/recommendations",
        json={"estimator": "regmix_linear", "n_boot": 10, **body},
        headers=headers,
    )


def test_robust_needs_two_refits_at_the_request(client, admin):
    p, _ = _project(client, admin)
    r = _recommend(client, admin, p["id"], robust=True, n_boot=1)
    assert r.status_code == 422 and "n_boot" in r.text and "robust" in r.text, r.text


def _done(client, headers, pid, r):
    job = wait_job(client, headers, r.json()["job"]["id"], 300)
    if job["state"] != "succeeded":
        return job, None
    return job, client.get(
        f"/v1/projects/{pid}/recommendations/{job['result']['recommendation_id']}",
        headers=headers,
    ).json()


def test_off_support_refused_then_allowed_with_the_share(client, admin, worker):
    p, seen = _project(client, admin)
    bound = 3 * seen + 0.02
    # the fit's own argmin (robust: false) puts everything on c: refused, naming it
    job, _ = _done(client, admin, p["id"], _recommend(client, admin, p["id"], robust=False))
    assert job["state"] == "failed"
    err = job["error"]
    assert "OffSupportError" in err and "c at 1.000" in err and f"{seen:.3f}" in err, err
    assert f"{bound:.3f}" in err and "allow_extrapolation: true" in err
    # asked for: given, flagged, with the share of refits still beating natural
    r = _recommend(client, admin, p["id"], robust=False, allow_extrapolation=True)
    job, rec = _done(client, admin, p["id"], r)
    assert rec is not None, job["error"]
    assert rec["mixture"]["c"] > 0.99 and rec["details"]["extrapolation"]["flag"] is True
    s = rec["details"]["survival"]
    assert s["against"] == "natural" and s["baseline_mixture"] == [0.5, 0.4, 0.1]
    assert s["n_refits"] == 10 and s["share_beating"] == 1.0 and s["predicted_gain"] > 0
    assert "bootstrap refits" in rec["details"]["explanation"]
    # the default (robust): every refit's argmin searched within the support, never refused
    job, rec = _done(client, admin, p["id"], _recommend(client, admin, p["id"]))
    assert rec is not None, job["error"]
    robust = rec["details"]["robust"]
    assert robust["within_support"] is True and robust["plain_mixture"][2] > 0.99
    assert rec["mixture"]["c"] <= bound + 1e-9
