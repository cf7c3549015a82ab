"""Fits answer at a scale and say how far to trust them (issue 11), through the API with a
real worker: the nested pipeline's prediction at a target scale equals the generating law's
value; runs of several sizes without a target are a 422; an untrusted fit is flagged and its
recommendation refused with 409; unknown or out-of-range parameters are 422 at POST."""

import numpy as np

from tests.conftest import make_project, wait_job
from tests.science.test_nested_scale import STEPS, law, synthetic_runs

DOMAINS = ("web", "code", "math")


def _post_runs(client, headers, pid, X, Y, P, S, curves=None):
    body = {
        "runs": [
            {
                "mixture": dict(zip(DOMAINS, map(float, x), strict=True)),
                "metrics": {"loss": float(y[0])},
                "model_params": int(p),
                "train_steps": int(s),
            }
            for x, y, p, s in zip(X, Y, P, S, strict=True)
        ]
    }
    r = client.post(f"/v1/projects/{pid}/runs", json=body, headers=headers)
    assert r.status_code in (200, 201), r.text
    ids = r.json()["ids"]
    for rid, curve in zip(ids, curves or [], strict=False):
        pts = [{"step": s, "metrics": m} for s, m in curve]
        assert client.post(
            f"/v1/projects/{pid}/runs/{rid}/curve", json={"points": pts}, headers=headers
        ).status_code in (200, 201)
    return ids


def test_multi_size_fit_without_target_scale_is_422_and_bad_params_too(client, admin):
    p = make_project(client, admin, domains=DOMAINS)
    X, Y, P, S, _ = synthetic_runs(n_mix=3, sizes=[2e7, 8e7])
    _post_runs(client, admin, p["id"], X, Y, P, S)
    url = f"/v1/projects/{p['id']}/fits"
    r = client.post(url, json={"estimator": "mixing_law"}, headers=admin)
    assert (
        r.status_code == 422
        and "target_scale" in r.json()["detail"]
        and "2 scales" in r.json()["detail"]
    )
    # one scale selected by the filter: accepted (no worker here: only the 202 matters)
    r = client.post(
        url,
        json={"estimator": "regmix_linear", "run_filter": {"model_params": 20_000_000}},
        headers=admin,
    )
    assert r.status_code == 202, r.text
    for params, word in (
        ({"n_restart": 3}, "n_restart: unknown"),
        ({"delta": -1.0}, "delta: must be >="),
        ({"n_restarts": "many"}, "n_restarts: must be an integer"),
    ):
        r = client.post(
            url,
            json={
                "estimator": "mixing_law",
                "params": params,
                "target_scale": {"model_params": 10**9},
            },
            headers=admin,
        )
        assert r.status_code == 422 and word in r.json()["detail"], r.text
    r = client.post(
        url,
        json={
            "estimator": "mixing_law",
            "target": {"nope": 1.0},
            "target_scale": {"model_params": 10**9},
        },
        headers=admin,
    )
    assert r.status_code == 422 and "nope" in r.json()["detail"] and "'loss'" in r.json()["detail"]
    r = client.post(
        f"/v1/projects/{p['id']}/recommendations",
        json={"estimator": "gp", "params": {"warp": "cube"}},
        headers=admin,
    )
    assert r.status_code == 422 and "warp" in r.json()["detail"]
    r = client.post(
        f"/v1/projects/{p['id']}/recommendations",
        json={"estimator": "gp", "trust_region": 3},
        headers=admin,
    )
    assert r.status_code == 422 and "trust_region" in r.json()["detail"]
    cat = client.get("/v1/estimators", headers=admin).json()
    ml = next(e for e in cat["estimators"] if e["name"] == "mixing_law")
    assert ml["params"]["delta"]["default"] == 0.05 and ml["params"]["delta"]["range"][0] > 0
    assert "law_gp" in cat["data"]


def test_predict_at_target_scale_equals_the_law_and_untrusted_recommendation_409(
    client, admin, worker
):
    p = make_project(client, admin, domains=DOMAINS)
    X, Y, P, S, curves = synthetic_runs(n_mix=8)
    _post_runs(client, admin, p["id"], X, Y, P, S, curves)
    target = {"model_params": 1_000_000_000, "train_steps": 100_000}
    r = client.post(
        f"/v1/projects/{p['id']}/fits",
        json={"estimator": "mixing_law", "target_scale": target, "params": {"n_restarts": 600}},
        headers=admin,
    )
    assert r.status_code == 202, r.text
    job = wait_job(client, admin, r.json()["job"]["id"], timeout=240)
    assert job["state"] == "succeeded", job["error"]
    fit = client.get(f"/v1/projects/{p['id']}/fits/{r.json()['fit']['id']}", headers=admin).json()
    assert fit["scale"]["model_params"] == 1e9 and fit["scale"]["train_steps"] == 100_000
    assert [c["law"] for c in fit["scaling"]["chain"]] == ["steps", "size", "mixing_law"]
    assert fit["scaling"]["cross_scale"]["status"] == "ok" and fit["trusted"] is True
    probe = np.array([[0.2, 0.5, 0.3], [0.6, 0.1, 0.3]])
    pred = client.post(
        f"/v1/projects/{p['id']}/fits/{fit['id']}/predict",
        json={
            "mixtures": [dict(zip(DOMAINS, map(float, x), strict=True)) for x in probe],
            "target_scale": target,
        },
        headers=admin,
    )
    assert pred.status_code == 200, pred.text
    body = pred.json()
    np.testing.assert_allclose(body["objective"], law(probe, 1e9, 1e5), atol=0.01)
    assert body["scale"]["model_params"] == 1e9 and body["chain"][0]["law"] == "steps"
    other = client.post(
        f"/v1/projects/{p['id']}/fits/{fit['id']}/predict",
        json={"mixtures": [{"web": 1.0}], "target_scale": {"model_params": 10**10}},
        headers=admin,
    )
    assert other.status_code == 422 and "target_scale" in other.json()["detail"]
    # a recommendation through the laws carries the whole chain's interval (issue 23, item 3)
    r = client.post(
        f"/v1/projects/{p['id']}/recommendations",
        json={"fit_id": fit["id"], "n_boot": 4, "allow_extrapolation": True},
        headers=admin,
    )
    assert r.status_code == 202, r.text
    job = wait_job(client, admin, r.json()["job"]["id"], timeout=240)
    assert job["state"] == "succeeded", job["error"]
    chained = client.get(
        f"/v1/projects/{p['id']}/recommendations/{job['result']['recommendation_id']}",
        headers=admin,
    ).json()
    assert chained["details"]["interval_method"] == "chain"
    assert chained["interval_low"] < chained["predicted"] < chained["interval_high"]

    # an untrusted fit: LightGBM that cannot split (min_child_samples above the run count)
    small = {"model_params": int(P[0]), "train_steps": int(S[0])}
    r = client.post(
        f"/v1/projects/{p['id']}/fits",
        json={
            "estimator": "regmix_lgbm",
            "params": {"min_child_samples": 50, "n_estimators": 20},
            "run_filter": small,
        },
        headers=admin,
    )
    job = wait_job(client, admin, r.json()["job"]["id"], timeout=120)
    assert job["state"] == "succeeded", job["error"]
    bad = client.get(f"/v1/projects/{p['id']}/fits/{r.json()['fit']['id']}", headers=admin).json()
    assert bad["status"] == "succeeded" and bad["trusted"] is False
    assert any("constant model" in why for why in bad["trust_reasons"])
    rec = client.post(
        f"/v1/projects/{p['id']}/recommendations", json={"fit_id": bad["id"]}, headers=admin
    )
    assert rec.status_code == 409 and "not trusted" in rec.json()["detail"]
    rec = client.post(
        f"/v1/projects/{p['id']}/recommendations",
        json={"fit_id": bad["id"], "allow_untrusted": True, "n_boot": 0, "n_samples": 2000},
        headers=admin,
    )
    assert rec.status_code == 202, rec.text
    job = wait_job(client, admin, rec.json()["job"]["id"], timeout=120)
    assert job["state"] == "succeeded", job["error"]
    row = client.get(
        f"/v1/projects/{p['id']}/recommendations/{job['result']['recommendation_id']}",
        headers=admin,
    ).json()
    assert row["details"]["trusted"] is False and row["target_scale"]["model_params"] == P[0]
    assert STEPS[-1] == row["target_scale"]["train_steps"]
