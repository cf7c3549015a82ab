"""The analysis views through the real app (no browser): recommendations side by side,
the Pareto front of a two-metric fit, the what-if availability data, overlaid loss curves, and
fits and recommendations started from the page's forms (CSRF, write access, the same jobs as the
API); bad or foreign ids are 404 pages and bad input a 422 page naming the field."""

from __future__ import annotations

import re

import numpy as np
import pytest

from tests.conftest import make_project
from tests.dashboard.pages import login

DOMAINS = [
    {"name": "web:news", "token_count": 1_000_000},
    {"name": "web:blog", "token_count": 1_000_000},
    {"name": "code", "token_count": 20_000},
]
NAMES = [d["name"] for d in DOMAINS]
#: two metrics that pull apart: "web" prefers web text, "code" prefers code
COEF = {"web": np.array([-0.6, -0.4, 0.3]), "code": np.array([0.2, 0.1, -0.9])}


def _project(client, admin):
    return client.post(
        "/v1/projects",
        json={
            "name": "teams",
            "domains": DOMAINS,
            "objective": {"web": 0.5, "code": 0.5},
            "constraints": {"target_tokens": 1_000_000, "max_epochs": 4},
        },
        headers=admin,
    ).json()


def _fit(session, project_id, targets=("web", "code")):
    from app.store.models import Fit
    from mixopt.mixing import pipeline

    rng = np.random.default_rng(0)
    X = rng.dirichlet(np.ones(3), size=16)
    Y = np.column_stack([2 + X @ COEF[t] for t in targets])
    state = pipeline.fit_estimator(
        "regmix_linear", {}, X, Y, domains=NAMES, targets=list(targets), cv_folds=2
    )["state"]
    fit = Fit(
        project_id=project_id,
        estimator="regmix_linear",
        target={t: 1 / len(targets) for t in targets},
        status="succeeded",
        domains=NAMES,
        state=state,
        trusted=True,
        trust_reasons=[],
        fidelity={"pooled": {"spearman": 0.93, "r2": 0.9}},
    )
    session.add(fit)
    session.flush()
    return fit


def _rec(session, project_id, fit_id, mixture, **kw):
    from app.store.models import Recommendation

    rec = Recommendation(
        project_id=project_id,
        fit_id=fit_id,
        source="regmix_linear",
        mixture=mixture,
        target_scale={},
        **{"predicted": 2.0, "constraints": {}, "binding": [], "details": {}} | kw,
    )
    session.add(rec)
    session.flush()
    return rec


def test_recommendations_compared_side_by_side(client, admin, admin_token, session):
    from app.store.models import Validation
    from mixopt.mixing.compare import paired_comparison

    p = _project(client, admin)
    other = make_project(
        client, admin, name="other"
    )  # (before the session writes: SQLite has one writer)
    fit = _fit(session, p["id"])
    a = _rec(
        session,
        p["id"],
        fit.id,
        {"web:news": 0.5, "web:blog": 0.3, "code": 0.2},
        predicted=2.1,
        interval_low=2.05,
        interval_high=2.15,
        binding=["group_max:web"],
        constraints={
            "bounds": {"code": {"min": 0.0, "max": 0.2}},
            "groups": {"web": {"max": 0.8}},
            "target_tokens": 1_000_000,
            "max_epochs": 4,
        },
        details={
            "reference": {
                "label": "baseline natural",
                "status": "improves",
                "objective_gain": 0.0312,
                "metrics": [{"metric": "web", "gain": 0.02, "interval": [0.01, 0.03]}],
            }
        },
    )
    b = _rec(
        session, p["id"], fit.id, {"web:news": 0.2, "web:blog": 0.2, "code": 0.6}, predicted=1.9
    )
    foreign = _rec(session, other["id"], None, {"web": 1.0})
    result = paired_comparison(
        ["recommendation a", "natural"],
        [[3.0, 3.1], [3.2, 3.2]],
        {"web": [[3.0, 3.1], [3.2, 3.2]]},
        references=[1],
        seeds=[1, 2],
    )
    session.add(
        Validation(
            project_id=p["id"],
            status="succeeded",
            seeds=[1, 2],
            preset="tiny",
            train_steps=50,
            mixtures=[
                {"label": "recommendation a", "recommendation_id": a.id, "mixture": a.mixture},
                {"label": "natural", "source": "baseline:natural", "mixture": a.mixture},
            ],
            objective={"web": 1.0},
            run_ids=[],
            result=result,
        )
    )
    session.commit()
    login(client, admin_token)

    page = client.get(f"/dashboard/projects/{p['id']}/mixtures").text
    assert 'form="compare-form" name="rec"' in page and 'id="compare-form"' in page
    r = client.get(f"/dashboard/projects/{p['id']}/compare?rec={a.id}&rec={b.id}")
    assert r.status_code == 200, r.text
    html = r.text
    # weights in columns, group totals (web = news + blog), prediction with its interval
    row = re.search(r'data-domain="code">(.*?)</tr>', html).group(1)
    assert "0.2000" in row and "0.6000" in row
    web = re.search(r'data-group="web">(.*?)</tr>', html).group(1)
    assert "0.8000" in web and "0.4000" in web
    assert "[2.05, 2.15]" in html
    # per-metric predictions by the fit: the linear law at each mixture
    for metric in ("web", "code"):
        cells = re.search(rf'data-metric="{metric}"><td>{metric}</td>(.*?)</tr>', html).group(1)
        for m in (a.mixture, b.mixture):
            expected = 2 + np.array([m[d] for d in NAMES]) @ COEF[metric]
            assert f"{expected:.5g}" in cells, (metric, expected, cells)
    # the constraints it was made under, the binding ones, the fit's trust and Spearman
    assert (
        "code in [0, 0.2]" in html
        and "group web: max 0.8" in html
        and "at most 4 epochs per domain" in html
    )
    assert "group_max:web" in html and "0.93" in html and "trusted" in html
    # code at 0.6 of 1M tokens is 30 epochs of its 20k tokens: 7.5x its cap
    assert "code: 30.00 epochs at weight 0.600, 7.5x its 4-epoch cap" in html
    assert "baseline natural" in html and "+0.0312" in html and "[+0.0100, +0.0300]" in html
    # validation: paired difference -0.15 to natural, both seeds won
    assert "validation #" in html and "vs natural: -0.1500" in html and "2/2 wins" in html
    assert "not validated" in html  # b was never validated

    for query, status in (
        (f"rec={a.id}", 422),
        (f"rec={a.id}&rec={foreign.id}", 404),
        ("rec=abc&rec=1", 404),
        (f"rec={a.id},{b.id},{a.id}", 200),  # comma-separated, a repeat counted once
        ("&".join(f"rec={i}" for i in range(1, 7)), 422),
    ):
        r = client.get(f"/dashboard/projects/{p['id']}/compare?{query}")
        assert r.status_code == status and r.headers["content-type"].startswith("text/html"), (
            query,
            r.status_code,
        )
    assert (
        "pick 2 to 4 recommendations"
        in client.get(f"/dashboard/projects/{p['id']}/compare?rec={a.id}").text
    )


def test_pareto_front_of_a_two_metric_fit(client, admin, admin_token, session):
    p = _project(client, admin)
    empty = make_project(client, admin, name="flat")
    fit = _fit(session, p["id"])
    single = _fit(session, p["id"], targets=("web",))
    session.commit()
    login(client, admin_token)
    r = client.get(f"/dashboard/projects/{p['id']}/pareto")
    assert r.status_code == 200, r.text
    html = r.text
    import json

    data = json.loads(re.search(r'id="page-data">(.*?)</script>', html, re.S).group(1))["pareto"]
    assert data["x"] == "web" and data["y"] == "code" and len(data["points"]) == 2000
    assert f"predicted by fit #{fit.id}" in html  # the newest fit of two or more metrics
    pts = np.array([[q["x"], q["y"]] for q in data["points"]])
    front = np.array([[q["x"], q["y"]] for q in data["front"]])
    # every front point is a candidate no candidate dominates; the best candidate on each metric is
    # on it
    for f in front:
        assert not np.any((pts <= f).all(axis=1) & (pts < f).any(axis=1))
    assert front[:, 0].min() == pytest.approx(pts[:, 0].min()) and front[
        :, 1
    ].min() == pytest.approx(pts[:, 1].min())
    assert np.all(np.diff(front[:, 0]) >= 0) and np.all(
        np.diff(front[:, 1]) <= 1e-12
    )  # a trade-off curve
    # the reference is natural (token shares), predicted by the linear laws
    natural = np.array([1e6, 1e6, 2e4]) / 2.02e6
    ref = next(m for m in data["marked"] if m["kind"] == "reference")
    assert ref["label"] == "reference: natural"
    assert ref["x"] == pytest.approx(2 + natural @ COEF["web"]) and ref["y"] == pytest.approx(
        2 + natural @ COEF["code"]
    )
    # candidates respect the epoch cap: code <= 20k x 4 / 1M = 0.08, so code's loss
    # >= 2 + (-0.9 x 0.08) ...
    assert pts[:, 1].min() >= 2 + 0.08 * COEF["code"][2] + 0.92 * COEF["code"][1] - 1e-6
    assert f"{len(front)}</strong> on the front" in html
    # a one-metric fit, an unknown metric, a foreign fit: clear errors
    bad = client.get(f"/dashboard/projects/{p['id']}/pareto?fit={single.id}")
    assert bad.status_code == 422 and "two or more target metrics" in bad.text
    bad = client.get(f"/dashboard/projects/{p['id']}/pareto?x=nope")
    assert bad.status_code == 422 and "x must be one of" in bad.text
    assert client.get(f"/dashboard/projects/{p['id']}/pareto?x=web&y=web").status_code == 422
    assert client.get(f"/dashboard/projects/{p['id']}/pareto?fit=9999").status_code == 404
    assert client.get(f"/dashboard/projects/{p['id']}/pareto?rec=9999").status_code == 404
    assert (
        "No succeeded fit of two or more metrics"
        in client.get(f"/dashboard/projects/{empty['id']}/pareto").text
    )


def test_pareto_marks_a_recommendations_reference(client, admin, admin_token, session):
    p = _project(client, admin)
    fit = _fit(session, p["id"])
    ref_mix = {"web:news": 0.4, "web:blog": 0.55, "code": 0.05}
    rec = _rec(
        session,
        p["id"],
        fit.id,
        {"web:news": 0.5, "web:blog": 0.45, "code": 0.05},
        details={
            "reference": {
                "label": "explicit mixture",
                "mixture": ref_mix,
                "status": "improves",
                "objective_gain": 0.01,
                "metrics": [],
            }
        },
    )
    plain = _rec(session, p["id"], fit.id, ref_mix)
    session.commit()
    login(client, admin_token)
    html = client.get(f"/dashboard/projects/{p['id']}/pareto?rec={rec.id}").text
    assert "reference: explicit mixture" in html and f"rec #{rec.id}" in html
    w = np.array([ref_mix[d] for d in NAMES])
    assert f"{2 + w @ COEF['web']:.5g}" in html
    r = client.get(f"/dashboard/projects/{p['id']}/pareto?rec={plain.id}")
    assert r.status_code == 422 and "not made against a reference" in r.text


def test_whatif_page_carries_token_counts_caps_and_groups(client, admin, admin_token, session):
    import json

    p = _project(client, admin)
    client.patch(
        f"/v1/projects/{p['id']}",
        headers=admin,
        json={"domains": [*DOMAINS, {"name": "books", "token_count": 0}, {"name": "papers"}]},
    )
    _fit(session, p["id"])
    session.commit()
    login(client, admin_token)
    html = client.get(f"/dashboard/projects/{p['id']}/whatif").text
    assert 'id="whatif-warnings"' in html and 'id="whatif-groups"' in html
    a = json.loads(re.search(r'id="page-data">(.*?)</script>', html, re.S).group(1))["availability"]
    assert a["target_tokens"] == 1_000_000 and a["tokens"] == {
        "web:news": 1_000_000,
        "web:blog": 1_000_000,
        "code": 20_000,
        "books": 0,
        "papers": None,
    }
    assert a["caps"]["code"] == 4 and a["groups"] == {"web": ["web:news", "web:blog"]}


def test_curves_of_several_runs_overlaid(client, admin, admin_token):
    import json

    p = make_project(client, admin, name="curves", domains=("web", "code"))
    ids = []
    for k in range(3):
        r = client.post(
            f"/v1/projects/{p['id']}/runs",
            headers=admin,
            json={
                "mixture": {"web": 0.3 + 0.2 * k, "code": 0.7 - 0.2 * k},
                "metrics": {"loss": 3.0},
            },
        )
        ids.append(r.json()["id"])
    for k, rid in enumerate(ids[:2]):
        points = [
            {"step": s, "tokens": s * 1000, "metrics": {"loss": 5 - s / 100 - k, "acc": s / 100}}
            for s in range(0, 101, 25)
        ]
        assert (
            client.post(
                f"/v1/projects/{p['id']}/runs/{rid}/curve", json={"points": points}, headers=admin
            ).status_code
            == 200
        )
    login(client, admin_token)
    r = client.get(
        f"/dashboard/projects/{p['id']}/curves?runs={ids[0]},{ids[1]}&runs={ids[2]}&metric=loss&x=tokens"
    )
    assert r.status_code == 200, r.text
    data = json.loads(re.search(r'id="page-data">(.*?)</script>', r.text, re.S).group(1))
    assert [s["run_id"] for s in data["series"]] == ids[:2] and data["x"] == "tokens"
    assert data["series"][1]["points"][1] == {"x": 25_000, "y": 5 - 0.25 - 1}
    assert f"run {ids[2]}</a>" in r.text and 'id="curves-missing"' in r.text  # no points: named
    steps = json.loads(
        re.search(
            r'id="page-data">(.*?)</script>',
            client.get(f"/dashboard/projects/{p['id']}/curves?runs={ids[0]}&metric=acc").text,
            re.S,
        ).group(1)
    )
    assert steps["series"][0]["points"][-1] == {"x": 100, "y": 1.0}
    other = make_project(client, admin, name="other")
    foreign = client.post(
        f"/v1/projects/{other['id']}/runs",
        headers=admin,
        json={"mixture": {"web": 1.0}, "metrics": {"loss": 3.0}},
    ).json()["id"]
    for query, status, text in (
        (f"runs={foreign}", 404, "not found"),
        ("runs=x", 404, "not found"),
        ("", 422, "runs"),
        (f"runs={ids[0]}&metric=nope", 422, "metric must be"),
        (f"runs={ids[0]}&x=hours", 422, "x must be"),
        ("runs=" + ",".join(str(i) for i in range(1, 30)), 422, "pick 1 to 20"),
    ):
        r = client.get(f"/dashboard/projects/{p['id']}/curves?{query}")
        assert r.status_code == status and text in r.text, (query, r.status_code, r.text[:300])


def test_fit_and_recommendation_forms_create_the_apis_jobs(client, admin, admin_token, session):
    from app.store.models import Fit, Job

    p = _project(client, admin)
    rng = np.random.default_rng(1)
    runs = [
        {
            "mixture": dict(zip(NAMES, map(float, w), strict=True)),
            "metrics": {t: float(2 + w @ COEF[t]) for t in COEF},
        }
        for w in rng.dirichlet(np.ones(3), size=8)
    ]
    assert (
        client.post(f"/v1/projects/{p['id']}/runs", json={"runs": runs}, headers=admin).status_code
        == 201
    )
    read = client.post(
        "/v1/tokens",
        json={"name": "reader", "role": "read", "project_ids": [p["id"]]},
        headers=admin,
    ).json()["token"]
    other = make_project(client, admin, name="other team")
    writer = client.post(
        "/v1/tokens",
        json={"name": "writer", "role": "write", "project_ids": [other["id"]]},
        headers=admin,
    ).json()["token"]
    fit = _fit(session, p["id"])
    session.commit()
    login(client, admin_token)
    page = client.get(f"/dashboard/projects/{p['id']}/fits").text
    assert 'id="fit-form"' in page and 'id="rec-form"' in page and '<option value="rec:' not in page
    csrf = client.cookies["mixopt_csrf"]
    url = f"/dashboard/projects/{p['id']}/fits"
    # no CSRF token: refused, nothing created
    r = client.post(url, data={"estimator": "regmix_linear"}, follow_redirects=False)
    assert r.status_code == 403 and "CSRF" in r.text
    assert session.query(Job).count() == 0
    r = client.post(
        url,
        data={"csrf_token": csrf, "estimator": "regmix_linear", "target": "web", "cv_folds": "3"},
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text
    job_id = re.search(r"job=([0-9a-f]{32})", r.headers["location"]).group(1)
    job = client.get(f"/v1/jobs/{job_id}", headers=admin).json()
    assert job["kind"] == "fit" and job["project_id"] == p["id"] and job["params"]["cv_folds"] == 3
    session.expire_all()
    new = session.get(Fit, job["params"]["fit_id"])
    assert new.estimator == "regmix_linear" and new.target == {"web": 1.0}
    started = client.get(r.headers["location"])
    assert 'id="started"' in started.text and job_id[:8] in started.text
    # bad input: 422 pages naming the field (the same checks as the API)
    for data, field in (
        ({"estimator": "nope"}, "estimator"),
        ({"estimator": "gp", "cv_folds": "1"}, "cv_folds"),
        ({"estimator": "gp", "target": "unknown_metric"}, "target"),
    ):
        r = client.post(url, data={"csrf_token": csrf, **data}, follow_redirects=False)
        assert r.status_code == 422 and field in r.text, (data, r.status_code, r.text[:300])
    rec_url = f"/dashboard/projects/{p['id']}/recommendations"
    r = client.post(
        rec_url,
        data={"csrf_token": csrf, "fit_id": str(fit.id), "reference": "natural", "n_boot": "2"},
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text
    job = client.get(
        f"/v1/jobs/{r.headers['location'].split('job=')[1].split('#')[0]}", headers=admin
    ).json()
    assert (
        job["kind"] == "recommend"
        and job["params"]["fit_id"] == fit.id
        and job["params"]["n_boot"] == 2
    )
    assert job["params"]["options"]["reference"]["label"] == "baseline natural"
    for data, status, text in (
        ({"fit_id": "9999"}, 404, "fit 9999 not found"),
        ({"fit_id": ""}, 422, "fit_id"),
        ({"fit_id": str(fit.id), "reference": "nope"}, 422, "reference.baseline"),
        ({"fit_id": str(fit.id), "reference": "rec:abc"}, 422, "reference.recommendation_id"),
        ({"fit_id": str(fit.id), "n_boot": "999"}, 422, "n_boot"),
    ):
        r = client.post(rec_url, data={"csrf_token": csrf, **data}, follow_redirects=False)
        assert r.status_code == status and text in r.text, (data, r.status_code, r.text[:300])
    assert (
        client.get(
            f"/dashboard/projects/{p['id']}/fits?job=0123456789abcdef0123456789abcdef"
        ).status_code
        == 404
    )
    # a read-only token sees no forms and may not post
    login(client, read)
    assert 'id="fit-form"' not in client.get(url).text
    r = client.post(
        url,
        data={"csrf_token": client.cookies["mixopt_csrf"], "estimator": "gp"},
        follow_redirects=False,
    )
    assert r.status_code == 403 and "read-only" in r.text
    # a write token of another project: this project's forms are a 404, as in the API
    login(client, writer)
    for path, data in (("fits", {"estimator": "gp"}), ("recommendations", {"fit_id": str(fit.id)})):
        r = client.post(
            f"/dashboard/projects/{p['id']}/{path}",
            data={"csrf_token": client.cookies["mixopt_csrf"], **data},
            follow_redirects=False,
        )
        assert r.status_code == 404 and "not found" in r.text, (path, r.status_code)
    assert session.query(Job).count() == 2  # the admin's fit and recommendation, nothing else
