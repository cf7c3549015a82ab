"""Names, tags and delete of fits and recommendations, runs sorted and filtered by a metric, and
suggested runs at the project's proxy scale (issue 26, item 4), through the API (a real worker
for the jobs)."""

from __future__ import annotations

import numpy as np
from fastapi.testclient import TestClient

from app.main import create_app
from app.store.models import Fit
from tests.conftest import make_project, wait_job
from tests.dashboard.pages import login

DOMAINS = ("web", "code", "math")


def _runs(n: int, seed: int = 0, **scale) -> list[dict]:
    """``n`` runs whose loss is a smooth function of the mixture (distinct mixtures)."""
    rng = np.random.default_rng(seed)
    out = []
    for w in rng.dirichlet(np.ones(len(DOMAINS)), size=n):
        loss = 3.0 - 0.8 * w[0] - 0.3 * w[1] + 0.5 * w[0] * w[1] + 0.1 * w[2] ** 2
        out.append(
            {
                "mixture": dict(zip(DOMAINS, map(float, w), strict=True)),
                "metrics": {"loss": float(loss)},
                **scale,
            }
        )
    return out


def _project_with_runs(client, admin, n: int = 24, **scale) -> int:
    pid = make_project(client, admin, domains=DOMAINS)["id"]
    r = client.post(f"/v1/projects/{pid}/runs", json={"runs": _runs(n, **scale)}, headers=admin)
    assert r.status_code == 201, r.text
    return pid


def _fit(client, admin, pid: int, **labels) -> dict:
    r = client.post(
        f"/v1/projects/{pid}/fits",
        json={"estimator": "regmix_linear", "cv_folds": 3, **labels},
        headers=admin,
    )
    assert r.status_code == 202, r.text
    job = wait_job(client, admin, r.json()["job"]["id"], timeout=300)
    assert job["state"] == "succeeded", job["error"]
    return r.json()["fit"]


def _ids(client, admin, path: str) -> list[int]:
    r = client.get(path, headers=admin)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["count"] == len(body["data"])
    return [row["id"] for row in body["data"]]


def test_labels_at_creation_patch_filter_and_delete(client, admin, admin_token, worker):
    pid = _project_with_runs(client, admin)
    base = f"/v1/projects/{pid}"
    first = _fit(client, admin, pid, name="first try", tags=["a", "b", "a"])
    assert first["name"] == "first try" and first["tags"] == ["a", "b"]  # duplicates dropped
    second = _fit(client, admin, pid, tags=["b"])
    assert second["name"] is None and second["tags"] == ["b"]
    assert _ids(client, admin, f"{base}/fits?tag=a") == [first["id"]]
    assert _ids(client, admin, f"{base}/fits?tag=b") == [second["id"], first["id"]]
    assert _ids(client, admin, f"{base}/fits?tag=zzz") == []
    assert len(_ids(client, admin, f"{base}/fits")) == 2

    # PATCH: tags replaced as a whole, name kept unless given, null clears it
    r = client.patch(f"{base}/fits/{first['id']}", json={"tags": ["c"]}, headers=admin)
    assert r.status_code == 200, r.text
    assert r.json()["tags"] == ["c"] and r.json()["name"] == "first try"
    assert _ids(client, admin, f"{base}/fits?tag=a") == []
    assert _ids(client, admin, f"{base}/fits?tag=c") == [first["id"]]
    r = client.patch(f"{base}/fits/{first['id']}", json={"name": None}, headers=admin)
    assert r.json()["name"] is None and r.json()["tags"] == ["c"]
    assert client.get(f"{base}/fits/{first['id']}", headers=admin).json()["tags"] == ["c"]

    # a recommendation from the first fit, labelled at creation
    r = client.post(
        f"{base}/recommendations",
        json={"fit_id": first["id"], "n_boot": 0, "name": "for prod", "tags": ["prod"]},
        headers=admin,
    )
    assert r.status_code == 202, r.text
    job = wait_job(client, admin, r.json()["job"]["id"], timeout=300)
    assert job["state"] == "succeeded", job["error"]
    rid = job["result"]["recommendation_id"]
    rec = client.get(f"{base}/recommendations/{rid}", headers=admin).json()
    assert rec["name"] == "for prod" and rec["tags"] == ["prod"] and rec["fit_id"] == first["id"]
    assert _ids(client, admin, f"{base}/recommendations?tag=prod") == [rid]
    assert _ids(client, admin, f"{base}/recommendations?tag=a") == []
    r = client.patch(
        f"{base}/recommendations/{rid}", json={"tags": ["x", "y"], "name": "v2"}, headers=admin
    )
    assert r.status_code == 200 and r.json()["tags"] == ["x", "y"] and r.json()["name"] == "v2"
    assert _ids(client, admin, f"{base}/recommendations?tag=prod") == []
    assert _ids(client, admin, f"{base}/recommendations?tag=y") == [rid]

    # the dashboard shows the labels: the fits table and the recommendation's card
    with TestClient(create_app()) as web:
        login(web, admin_token)
        page = web.get(f"/dashboard/projects/{pid}/fits").text
        assert f'id="fit-{first["id"]}"' in page and '<span class="badge tag">c</span>' in page
        assert '<span class="badge tag">b</span>' in page and "first try" not in page
        page = web.get(f"/dashboard/projects/{pid}/mixtures").text
        assert '<span class="rec-name">v2</span>' in page
        assert '<span class="badge tag">x</span> <span class="badge tag">y</span>' in page

    # deleting the fit keeps its recommendation (fit_id null), which still exports
    assert client.delete(f"{base}/fits/{first['id']}", headers=admin).status_code == 204
    assert client.get(f"{base}/fits/{first['id']}", headers=admin).status_code == 404
    assert _ids(client, admin, f"{base}/fits?tag=c") == []
    kept = client.get(f"{base}/recommendations/{rid}", headers=admin)
    assert kept.status_code == 200 and kept.json()["fit_id"] is None
    assert kept.json()["mixture"] == rec["mixture"] and kept.json()["tags"] == ["x", "y"]
    r = client.get(f"{base}/recommendations/{rid}/export?format=json", headers=admin)
    assert r.status_code == 200, r.text
    assert client.delete(f"{base}/fits/{first['id']}", headers=admin).status_code == 404

    # deleting the recommendation
    assert client.delete(f"{base}/recommendations/{rid}", headers=admin).status_code == 204
    assert client.get(f"{base}/recommendations/{rid}", headers=admin).status_code == 404
    assert client.delete(f"{base}/recommendations/{rid}", headers=admin).status_code == 404
    assert _ids(client, admin, f"{base}/recommendations?tag=y") == []


def _field(r, status: int, name: str) -> None:
    assert r.status_code == status, (r.status_code, r.text)
    assert name in r.text, r.text


def test_label_refusals_name_the_problem(client, admin, session):
    pid = _project_with_runs(client, admin, n=4)
    other = make_project(client, admin, name="other", domains=DOMAINS)["id"]
    fit = Fit(project_id=pid, estimator="gp", status="running", job_id="j1", domains=list(DOMAINS))
    session.add(fit)
    session.commit()
    path = f"/v1/projects/{pid}/fits/{fit.id}"
    # a fit still being made cannot be deleted; its labels can change
    _field(client.delete(path, headers=admin), 409, "cancel the job first")
    assert client.patch(path, json={"tags": ["t"]}, headers=admin).json()["tags"] == ["t"]
    _field(client.patch(path, json={"tags": ["x" * 101]}, headers=admin), 422, "tags")
    _field(
        client.patch(path, json={"tags": [f"t{i}" for i in range(51)]}, headers=admin), 422, "tags"
    )
    _field(client.patch(path, json={"name": ""}, headers=admin), 422, "name")
    _field(client.patch(path, json={"mixture": {}}, headers=admin), 422, "mixture")
    _field(client.get(f"/v1/projects/{pid}/fits?tag={'x' * 101}", headers=admin), 422, "tag")
    _field(client.get(f"/v1/projects/{pid}/recommendations?tag=", headers=admin), 422, "tag")
    # another project's fit, unknown ids
    _field(client.patch(f"/v1/projects/{other}/fits/{fit.id}", json={}, headers=admin), 404, "fit")
    _field(client.delete(f"/v1/projects/{other}/fits/{fit.id}", headers=admin), 404, "fit")
    _field(client.delete(f"/v1/projects/{pid}/recommendations/77", headers=admin), 404, "77")
    _field(
        client.patch(f"/v1/projects/{pid}/recommendations/77", json={}, headers=admin), 404, "77"
    )
    # a read-only token reads but does not change
    r = client.post(
        "/v1/tokens", json={"name": "ro", "role": "read", "project_ids": [pid]}, headers=admin
    )
    ro = {"Authorization": f"Bearer {r.json()['token']}"}
    assert client.get(f"/v1/projects/{pid}/fits?tag=t", headers=ro).json()["count"] == 1
    assert client.patch(path, json={"tags": []}, headers=ro).status_code == 403
    assert client.delete(path, headers=ro).status_code == 403


def test_runs_sorted_and_filtered_by_a_metric(client, admin):
    pid = _project_with_runs(client, admin, n=11)
    base = f"/v1/projects/{pid}/runs"
    # a run without the metric, and one with another metric only: left out of metric sorts
    extra = [
        {"mixture": {"web": 1.0}, "metrics": {"other": 1.0}},
        {"mixture": {"code": 1.0}, "status": "planned"},
    ]
    assert client.post(base, json={"runs": extra}, headers=admin).status_code == 201
    runs = client.get(f"{base}?limit=1000", headers=admin).json()["data"]
    losses = {r["id"]: r["metrics"]["loss"] for r in runs if "loss" in r["metrics"]}
    assert len(losses) == 11
    ascending = sorted(losses, key=lambda i: (losses[i], i))

    def walk(query: str, limit: int) -> list[int]:
        seen, cursor = [], None
        while True:
            url = f"{base}?limit={limit}&{query}" + (f"&cursor={cursor}" if cursor else "")
            r = client.get(url, headers=admin)
            assert r.status_code == 200, r.text
            seen += [x["id"] for x in r.json()["data"]]
            cursor = r.json()["next_cursor"]
            if cursor is None:
                return seen

    assert walk("order_by=metric:loss", 1000) == ascending
    assert walk("order_by=metric:loss", 3) == ascending  # the cursor pages through in order
    assert walk("order_by=-metric:loss", 4) == ascending[::-1]
    r = client.get(f"{base}?order_by=metric:loss&limit=2", headers=admin).json()
    assert r["count"] == 11 and len(r["data"]) == 2
    # bounds: runs reporting the metric, within [min, max]
    values = sorted(losses.values())
    low, high = values[2], values[7]
    inside = {i for i, v in losses.items() if low <= v <= high}
    got = walk(f"metric=loss&metric_min={low}&metric_max={high}", 1000)
    assert set(got) == inside and len(inside) == 6
    assert set(walk(f"metric=loss&metric_min={high}", 1000)) == {
        i for i, v in losses.items() if v >= high
    }
    assert set(walk("metric=other", 1000)) == {r["id"] for r in runs if "other" in r["metrics"]}
    assert walk("metric=nope", 1000) == []
    # refused, naming the parameter
    _field(client.get(f"{base}?metric_min=1", headers=admin), 422, "metric")
    _field(
        client.get(f"{base}?metric=loss&metric_min=3&metric_max=2", headers=admin),
        422,
        "metric_min",
    )
    _field(client.get(f"{base}?metric=loss&metric_max=nan", headers=admin), 422, "metric_max")
    _field(client.get(f"{base}?order_by=metric:", headers=admin), 422, "order_by")
    _field(client.get(f"{base}?order_by=loss", headers=admin), 422, "order_by")
    _field(client.get(f'{base}?order_by=metric:a"b', headers=admin), 422, "order_by")
    _field(client.get(f"{base}?metric={'m' * 201}", headers=admin), 422, "metric")
    r = client.get(f"{base}?order_by=metric:loss&cursor=WyJ4IiwgMV0", headers=admin)  # ["x", 1]
    _field(r, 422, "cursor")


def test_suggested_runs_carry_the_proxy_scale_so_ask_tell_fit_works(client, admin, worker):
    scale = {"model_params": 1_000_000, "train_tokens": 1_000_000_000}
    pid = _project_with_runs(client, admin, n=12, **scale)
    base = f"/v1/projects/{pid}"
    # ask
    r = client.post(
        f"{base}/suggestions", json={"count": 2, "strategy": "swarm", "seed": 3}, headers=admin
    )
    assert r.status_code == 202, r.text
    job = wait_job(client, admin, r.json()["job"]["id"], timeout=300)
    assert job["state"] == "succeeded", job["error"]
    planned = job["result"]["run_ids"]
    # tell: the planned runs' losses, as a trainer reports them (no scale given)
    for rid in planned:
        run = client.get(f"{base}/runs/{rid}", headers=admin).json()
        assert {k: run[k] for k in scale} == scale and run["train_steps"] is None
        r = client.patch(f"{base}/runs/{rid}", json={"metrics": {"loss": 2.5}}, headers=admin)
        assert r.status_code == 200 and r.json()["status"] == "succeeded", r.text
    # fit: one scale, accepted
    r = client.post(f"{base}/fits", json={"estimator": "regmix_linear"}, headers=admin)
    assert r.status_code == 202, r.text


def test_frames_of_fits_and_recommendations_and_runs_by_metric(live_server, admin_token, worker):
    import asyncio

    from mixopt.client import AsyncClient, MixoptClient

    c = MixoptClient(live_server, admin_token)
    pid = c.create_project("frames", domains=list(DOMAINS)).id
    c.add_runs(pid, _runs(24))
    fits = []
    for name, tags in (("lin", ["keep"]), (None, [])):
        acc = c.fit(pid, "regmix_linear", cv_folds=3, name=name, tags=tags)
        c.wait(acc, timeout=300)
        fits.append(c.get_fit(pid, acc.fit.id))
    acc = c.recommend(pid, fit_id=fits[0].id, n_boot=0, name="r1", tags=["keep"], trust_region=0.1)
    rec = c.get_recommendation(pid, c.wait(acc, timeout=300).result["recommendation_id"])

    frame = c.fits_frame(pid)
    assert list(frame.index) == [fits[1].id, fits[0].id]  # newest first
    assert frame.loc[fits[0].id, "name"] == "lin" and frame.loc[fits[0].id, "tags"] == "keep"
    assert frame.loc[fits[0].id, "estimator"] == "regmix_linear"
    assert frame.loc[fits[0].id, "fidelity.spearman"] == fits[0].fidelity["pooled"]["spearman"]
    assert list(c.fits_frame(pid, tag="keep").index) == [fits[0].id]
    assert c.fits_frame(pid, tag="none").empty

    recs = c.recommendations_frame(pid, tag="keep")
    assert list(recs.index) == [rec.id] and recs.loc[rec.id, "name"] == "r1"
    assert recs.loc[rec.id, "fit_id"] == fits[0].id
    for d in DOMAINS:
        assert recs.loc[rec.id, f"mixture.{d}"] == rec.mixture.get(d, 0.0)

    # the async client's frames are the same tables
    async def both():
        async with AsyncClient(live_server, admin_token) as a:
            return await a.fits_frame(pid), await a.recommendations_frame(pid)

    afits, arecs = asyncio.run(both())
    assert afits.equals(frame) and list(arecs.index) == [rec.id]

    # runs by a metric, through the client's filters
    runs = c.runs_frame(pid, order_by="-metric:loss")
    losses = list(runs["metrics.loss"])
    assert len(losses) == 24 and losses == sorted(losses, reverse=True)
    low = sorted(losses)[10]
    some = c.list_runs(pid, metric="loss", metric_min=low)
    assert sorted(r.metrics["loss"] for r in some) == sorted(v for v in losses if v >= low)
