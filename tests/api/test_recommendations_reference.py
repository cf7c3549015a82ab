"""A baseline to beat through the API: reference = baseline / stored recommendation / explicit
mixture, refused with a 4xx naming reference.* when it cannot be resolved, and a real worker's
recommendation whose every objective metric, predicted by the fit's own predict route, is no
worse than the reference's."""

import numpy as np
import pytest

from tests.conftest import wait_job

D = ["a", "b", "c", "d"]
T = np.array([[-2.0, -0.5, -0.3, -0.1], [-0.2, -1.5, -0.3, -0.1], [-0.1, -0.2, -1.8, -0.4]])


def _project(client, headers):
    p = client.post(
        "/v1/projects",
        json={
            "name": "ref",
            "objective": {"x": 1.0, "y": 1.0, "z": 1.0},
            "domains": [
                {"name": d, "token_count": c}
                for d, c in zip(D, [1000, 3000, 4000, 2000], strict=True)
            ],
        },
        headers=headers,
    ).json()
    rng = np.random.default_rng(0)
    X = rng.dirichlet(np.ones(4), size=30)
    Y = 2 + np.exp(X @ T.T) + rng.normal(0, 0.002, (30, 3))
    runs = [
        {
            "mixture": dict(zip(D, map(float, x), strict=True)),
            "metrics": dict(zip("xyz", map(float, y), strict=True)),
        }
        for x, y in zip(X, Y, strict=True)
    ]
    assert (
        client.post(
            f"/v1/projects/{p['id']}/runs", json={"runs": runs}, headers=headers
        ).status_code
        == 201
    )
    return p


def _recommend(client, headers, pid, **body):
    r = client.post(
        f"/v1/projects/{pid}/recommendations",
        json={"estimator": "regmix_linear", "n_boot": 5, "allow_untrusted": True, **body},
        headers=headers,
    )
    return r


@pytest.mark.parametrize(
    "reference,status,field",
    [
        ({"baseline": "natural", "mixture": {"a": 1.0}}, 422, "reference"),
        ({"baseline": "nope"}, 422, "reference.baseline"),
        ({"mixture": {"zz": 1.0}}, 422, "reference.mixture.zz"),
        ({"mixture": {"a": 0.5}}, 422, "reference.mixture"),
        ({"recommendation_id": 999999}, 404, "reference.recommendation_id"),
        ({"baseline": "natural", "tolerance": -1}, 422, "reference.tolerance"),
    ],
)
def test_bad_reference_refused(client, admin, reference, status, field):
    p = _project(client, admin)
    r = _recommend(client, admin, p["id"], reference=reference)
    assert r.status_code == status, r.text
    assert field in r.text, r.text


def test_reference_never_predicted_worse(client, admin, worker):
    p = _project(client, admin)
    r = _recommend(client, admin, p["id"], reference={"baseline": "natural"})
    assert r.status_code == 202, r.text
    job = wait_job(client, admin, r.json()["job"]["id"], timeout=300)
    assert job["state"] == "succeeded", job["error"]
    rec = client.get(
        f"/v1/projects/{p['id']}/recommendations/{job['result']['recommendation_id']}",
        headers=admin,
    ).json()
    ref = rec["details"]["reference"]
    assert ref["label"] == "baseline natural" and ref["status"] == "improves"
    assert ref["mixture"] == pytest.approx({"a": 0.1, "b": 0.3, "c": 0.4, "d": 0.2})
    pred = client.post(
        f"/v1/projects/{p['id']}/fits/{rec['fit_id']}/predict",
        json={"mixtures": [ref["mixture"], rec["mixture"]]},
        headers=admin,
    ).json()
    P = np.array(pred["predictions"])
    assert np.all(P[1] <= P[0] + 1e-7)
    assert [m["metric"] for m in ref["metrics"]] == pred["targets"]
    assert [m["gain"] for m in ref["metrics"]] == pytest.approx(list(P[0] - P[1]), abs=1e-6)
    assert all(m["interval"][0] <= m["gain"] <= m["interval"][1] for m in ref["metrics"])
    # a stored recommendation as the reference of the next one (from the same fit)
    r = client.post(
        f"/v1/projects/{p['id']}/recommendations",
        json={
            "fit_id": rec["fit_id"],
            "n_boot": 0,
            "allow_untrusted": True,
            "reference": {"recommendation_id": rec["id"]},
        },
        headers=admin,
    )
    assert r.status_code == 202, r.text
    job = wait_job(client, admin, r.json()["job"]["id"], timeout=300)
    assert job["state"] == "succeeded", job["error"]
    rec2 = client.get(
        f"/v1/projects/{p['id']}/recommendations/{job['result']['recommendation_id']}",
        headers=admin,
    ).json()
    ref2 = rec2["details"]["reference"]
    assert ref2["label"] == f"recommendation {rec['id']}"
    assert ref2["mixture"] == pytest.approx(rec["mixture"])
    assert all(m["gain"] >= -1e-7 for m in ref2["metrics"])
