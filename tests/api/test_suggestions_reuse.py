"""Mixture reuse through the API and a real worker: after a domain is added, a ``reuse``
suggestion freezes the unchanged domains at the ratios of a recommendation made on the old
domain set and plans fewer runs than a fresh swarm would need; reuse without a
recommendation is a 422 naming the field, another project's recommendation a 404."""

from __future__ import annotations

import pytest

from tests.conftest import wait_job


def _recommendation(session, project_id: int, mixture: dict) -> int:
    from app.store.models import Recommendation

    rec = Recommendation(
        project_id=project_id,
        source="mixing_law",
        mixture=mixture,
        predicted=2.5,
        constraints={},
        target_scale={},
        binding=[],
        details={},
    )
    session.add(rec)
    session.commit()
    return rec.id


def test_reuse_after_adding_a_domain(client, admin, session, worker):
    old = [
        {"name": "web", "token_count": 4000},
        {"name": "code", "token_count": 3000},
        {"name": "math", "token_count": 1000},
    ]
    p = client.post("/v1/projects", json={"name": "reuse", "domains": old}, headers=admin).json()
    rid = _recommendation(session, p["id"], {"web": 0.5, "code": 0.3, "math": 0.2})
    r = client.patch(
        f"/v1/projects/{p['id']}",
        json={"domains": old + [{"name": "papers", "token_count": 2000}]},
        headers=admin,
    )
    assert r.status_code == 200, r.text
    assert (
        client.post(
            f"/v1/projects/{p['id']}/suggestions",
            json={"count": 8, "strategy": "reuse"},
            headers=admin,
        ).status_code
        == 422
    )
    r = client.post(
        f"/v1/projects/{p['id']}/suggestions",
        json={"count": 8, "strategy": "reuse", "recommendation_id": 999999},
        headers=admin,
    )
    assert r.status_code == 404 and "recommendation_id" in r.text
    r = client.post(
        f"/v1/projects/{p['id']}/suggestions",
        json={"count": 8, "strategy": "reuse", "recommendation_id": rid},
        headers=admin,
    )
    assert r.status_code == 202, r.text
    job = wait_job(client, admin, r.json()["job"]["id"], timeout=120)
    assert job["state"] == "succeeded", job["error"]
    res = job["result"]
    assert res["changed"] == ["papers"] and res["frozen"] == pytest.approx(
        {"web": 0.5, "code": 0.3, "math": 0.2}
    )
    assert res["count"] == 8 < res["fresh_count"] == 16
    runs = client.get(
        f"/v1/projects/{p['id']}/runs", params={"status": "planned"}, headers=admin
    ).json()["data"]
    assert len(runs) == 8
    for run in runs:
        m = run["mixture"]
        frozen = m["web"] + m["code"] + m["math"]
        assert m["web"] / frozen == pytest.approx(0.5, abs=1e-6) and m[
            "math"
        ] / frozen == pytest.approx(0.2, abs=1e-6)
    assert len({round(run["mixture"]["papers"], 4) for run in runs}) == 8  # papers explored
