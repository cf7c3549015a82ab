"""Hierarchical domains through the API: declared and parsed group paths, group constraints
validated at the door (422 naming the field), baselines with group totals and the natural
mixture projected onto the groups, and recommendations made by a real worker (smooth
optimiser and tree simulation) that honour the group totals and report them."""

import numpy as np
import pytest

from tests.conftest import wait_job

DOMAINS = [
    {"name": "web:news", "token_count": 4_000_000},
    {"name": "web:blog", "token_count": 3_000_000},
    {"name": "cc", "token_count": 2_000_000, "group": "web/news"},
    {"name": "code:py", "token_count": 500_000},
    {"name": "math", "token_count": 500_000},
]
NAMES = [d["name"] for d in DOMAINS]
GROUPS = {"web": {"min": 0.2, "max": 0.4}, "code": {"fixed": 0.25}}


def _project(client, headers, constraints=None):
    r = client.post(
        "/v1/projects",
        json={
            "name": "hier",
            "domains": DOMAINS,
            "objective": {"loss": 1.0},
            "constraints": constraints or {"groups": GROUPS},
        },
        headers=headers,
    )
    assert r.status_code == 201, r.text
    return r.json()


def test_groups_declared_parsed_and_validated(client, admin):
    p = _project(client, admin)
    assert [d.get("group") for d in p["domains"]] == [None, None, "web/news", None, None]
    assert p["constraints"]["groups"]["code"]["fixed"] == 0.25
    for constraints, field in [
        ({"groups": {"webb": {"max": 0.5}}}, "constraints.groups.webb"),
        ({"groups": {"code": {"min": 0.6, "max": 0.5}}}, "constraints.groups.code"),
        (
            {
                "groups": {"web": {"max": 0.3}},
                "bounds": {"web:news": {"min": 0.2}, "cc": {"min": 0.2}},
            },
            "constraints.groups.web",
        ),
    ]:
        r = client.patch(
            f"/v1/projects/{p['id']}", json={"constraints": constraints}, headers=admin
        )
        assert r.status_code == 422, r.text
        assert field in r.text, r.text
    r = client.post(
        "/v1/projects",
        json={"name": "bad", "domains": [{"name": "a", "group": "web//x"}]},
        headers=admin,
    )
    assert r.status_code == 422 and "group" in r.text


def test_baselines_show_group_totals(client, admin):
    p = _project(client, admin)
    b = client.get(f"/v1/projects/{p['id']}/baselines", headers=admin).json()
    nat = b["group_totals"]["natural"]
    # web:news is the leaf "news" under web; cc declares web/news
    assert nat["web"] == pytest.approx(0.9) and nat["web/news"] == pytest.approx(0.2)
    assert nat["code"] == pytest.approx(0.05)
    assert b["violates_groups"]["natural"] is True
    g = b["group_totals"]["natural_grouped"]
    assert 0.2 - 1e-6 <= g["web"] <= 0.4 + 1e-6 and g["code"] == pytest.approx(0.25, abs=1e-6)
    assert "natural_grouped" not in b["violates_groups"]


def _runs(n=30, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.dirichlet(np.ones(len(NAMES)), size=n)
    y = 2.0 + np.exp(X @ np.array([-2.0, -1.5, -1.8, -0.3, -0.2])) + rng.normal(0, 0.002, n)
    return [
        {"mixture": dict(zip(NAMES, map(float, x), strict=True)), "metrics": {"loss": float(v)}}
        for x, v in zip(X, y, strict=True)
    ]


@pytest.mark.parametrize("estimator", ["regmix_linear", "regmix_lgbm"])
def test_recommendation_honours_groups(client, admin, worker, estimator):
    p = _project(client, admin)
    r = client.post(f"/v1/projects/{p['id']}/runs", json={"runs": _runs()}, headers=admin)
    assert r.status_code == 201, r.text
    body = {"estimator": estimator, "n_boot": 0, "n_samples": 2000, "allow_untrusted": True}
    if estimator == "regmix_lgbm":
        body["params"] = {"n_estimators": 100}
    r = client.post(f"/v1/projects/{p['id']}/recommendations", json=body, headers=admin)
    assert r.status_code == 202, r.text
    job = wait_job(client, admin, r.json()["job"]["id"], timeout=300)
    assert job["state"] == "succeeded", job["error"]
    rec = client.get(
        f"/v1/projects/{p['id']}/recommendations/{job['result']['recommendation_id']}",
        headers=admin,
    ).json()
    m = rec["mixture"]
    web = m["web:news"] + m["web:blog"] + m["cc"]
    assert (
        0.2 - 1e-6 <= web <= 0.4 + 1e-6
    )  # the law wants web (its exponents are the most negative)
    assert m["code:py"] == pytest.approx(0.25, abs=1e-6)
    gt = rec["details"]["group_totals"]
    assert gt["web"] == pytest.approx(web, abs=1e-9) and gt["web/news"] == pytest.approx(m["cc"])
    assert any(b.startswith("group") for b in rec["binding"])
