from tests.conftest import count_rows, make_project


def test_health_probes_need_no_auth_and_readyz_checks_db(client):
    # both are health probes (orchestrators call them without credentials)
    assert client.get("/healthz").json() == {"status": "ok"}
    r = client.get("/readyz")
    assert r.json()["database"] == "ok" and r.json()["broker"] == "ok", r.text
    # ready only with a live worker (the session's test worker may or may not be up yet;
    # tests/api/test_faults.py checks 503 while the worker is down and 200 once it is back)
    if r.status_code == 200:
        assert r.json()["workers"], r.text
    else:
        assert r.status_code == 503 and "worker: no worker heartbeat" in r.json()["detail"], r.text


def test_every_route_needs_a_token(client, admin):
    p = make_project(client, admin)
    for method, path in [
        ("get", "/v1/projects"),
        ("get", f"/v1/projects/{p['id']}"),
        ("get", f"/v1/projects/{p['id']}/runs"),
        ("post", "/v1/tokens"),
        ("get", "/v1/jobs/x"),
    ]:
        r = getattr(client, method)(path)
        assert r.status_code == 401, path
        assert "Bearer" in r.json()["detail"]
    r = client.get("/v1/projects", headers={"Authorization": "Bearer nope"})
    assert r.status_code == 401 and "invalid" in r.json()["detail"]
    r = client.get("/v1/projects", headers={"Authorization": "Basic abc"})
    assert r.status_code == 401


def test_project_crud(client, admin):
    body = {
        "name": "pile",
        "description": "17 domains",
        "domains": [
            {"name": "web", "token_count": 1000},
            {"name": "code", "token_count": 500},
            {"name": "math", "source": {"path": "/data/math", "format": "jsonl"}},
        ],
        "objective": {"val/web": 2.0, "val/code": 1.0},
        "constraints": {
            "bounds": {"web": {"min": 0.1, "max": 0.8}},
            "target_tokens": 10_000,
            "max_epochs": 4,
        },
    }
    r = client.post("/v1/projects", json=body, headers=admin)
    assert r.status_code == 201, r.text
    p = r.json()
    assert [d["name"] for d in p["domains"]] == ["web", "code", "math"]
    assert p["domains"][2]["source"]["format"] == "jsonl"
    assert p["constraints"]["bounds"]["web"] == {"min": 0.1, "max": 0.8}
    assert client.get(f"/v1/projects/{p['id']}", headers=admin).json()["name"] == "pile"
    listed = client.get("/v1/projects", headers=admin).json()
    assert listed["count"] == 1 and listed["data"][0]["id"] == p["id"]

    r = client.patch(
        f"/v1/projects/{p['id']}",
        json={
            "name": "pile-2",
            "domains": [
                {"name": "code"},
                {"name": "web", "token_count": 2000},
                {"name": "math"},
                {"name": "books"},
            ],
        },
        headers=admin,
    )
    assert r.status_code == 200, r.text
    assert [d["name"] for d in r.json()["domains"]] == ["code", "web", "math", "books"]
    assert r.json()["domains"][1]["token_count"] == 2000

    assert client.delete(f"/v1/projects/{p['id']}", headers=admin).status_code == 204
    assert client.get(f"/v1/projects/{p['id']}", headers=admin).status_code == 404
    assert count_rows("domain") == 0


def test_project_validation_names_the_field(client, admin):
    cases = [
        ({"name": "x", "domains": [{"name": "a"}, {"name": "a"}]}, "domains[1].name"),
        (
            {
                "name": "x",
                "domains": [{"name": "a"}],
                "constraints": {"bounds": {"zz": {"max": 0.5}}},
            },
            "constraints.bounds.zz",
        ),
        (
            {
                "name": "x",
                "domains": [{"name": "a"}],
                "constraints": {"bounds": {"a": {"min": 0.6, "max": 0.5}}},
            },
            "constraints.bounds.a",
        ),
        (
            {
                "name": "x",
                "domains": [{"name": "a"}, {"name": "b"}],
                "constraints": {"fixed": {"a": 0.7, "b": 0.6}},
            },
            "constraints.fixed",
        ),
        ({"name": "", "domains": []}, "name"),
        ({"name": "x", "domains": [{"name": "a", "token_count": -1}]}, "domains[0].token_count"),
        ({"name": "x", "objective": {"a": -1}}, "objective.a"),
        ({"name": "x", "unknown": 1}, "unknown"),
    ]
    for body, field in cases:
        r = client.post("/v1/projects", json=body, headers=admin)
        assert r.status_code == 422, (body, r.text)
        assert field in r.json()["detail"], (field, r.json())
    assert count_rows("project") == 0


def test_cannot_remove_a_domain_that_runs_use(client, admin):
    p = make_project(client, admin)
    client.post(
        f"/v1/projects/{p['id']}/runs",
        json={"mixture": {"web": 1.0}, "metrics": {"l": 1.0}},
        headers=admin,
    )
    r = client.patch(
        f"/v1/projects/{p['id']}",
        json={"domains": [{"name": "code"}, {"name": "math"}]},
        headers=admin,
    )
    assert r.status_code == 409 and "web" in r.json()["detail"]
    r = client.patch(
        f"/v1/projects/{p['id']}",
        json={"domains": [{"name": "web"}, {"name": "code"}]},
        headers=admin,
    )
    assert r.status_code == 200  # math has no runs with weight: may go
    assert client.get(f"/v1/projects/{p['id']}", headers=admin).json()["run_count"] == 1


def test_unknown_ids_are_404_and_bad_ids_422(client, admin):
    assert client.get("/v1/projects/999", headers=admin).status_code == 404
    assert client.get("/v1/projects/abc", headers=admin).status_code == 422
    p = make_project(client, admin)
    assert client.get(f"/v1/projects/{p['id']}/runs/12345", headers=admin).status_code == 404
    assert client.get("/v1/jobs/nope", headers=admin).status_code == 404


def test_project_routes_validate_the_request_before_loading_the_project(client, admin):
    """ProjectDep loads the path's project, yet a malformed request is still a 422 first; a
    well-formed one on a project the token cannot see is a 404, and a write with a read-only
    token a 403 (the order the routes had when each loaded its project itself)."""
    p = make_project(client, admin)
    r = client.post(
        "/v1/tokens", json={"name": "ro", "role": "read", "project_ids": [p["id"]]}, headers=admin
    )
    read_only = {"Authorization": f"Bearer {r.json()['token']}"}
    bad, good = {"estimator": 5}, {"estimator": "auto"}
    assert client.post("/v1/projects/999999/fits", json=bad, headers=admin).status_code == 422
    assert (
        client.post(f"/v1/projects/{p['id']}/fits", json=bad, headers=read_only).status_code == 422
    )
    assert client.post("/v1/projects/999999/fits", json=good, headers=admin).status_code == 404
    assert (
        client.post(f"/v1/projects/{p['id']}/fits", json=good, headers=read_only).status_code == 403
    )
    assert client.get("/v1/projects/999999/fits?limit=0", headers=admin).status_code == 422
    assert client.get("/v1/projects/999999/fits", headers=admin).status_code == 404


def test_every_route_taking_the_project_dependency_is_a_project_route():
    """A router that forgets ``route_class=ProjectRoute`` would hand its routes a Refusal."""
    import importlib
    import pkgutil

    from fastapi import APIRouter
    from fastapi.routing import APIRoute

    import app.api.routes as package
    from app.api import deps

    def calls(dependant) -> set:
        return {dependant.call} | {c for d in dependant.dependencies for c in calls(d)}

    modules = [
        importlib.import_module(f"{package.__name__}.{m.name}")
        for m in pkgutil.iter_modules(package.__path__)
    ]
    routes = [
        r
        for m in modules
        for router in vars(m).values()
        if isinstance(router, APIRouter)
        for r in router.routes
        if isinstance(r, APIRoute)
    ]
    taking = [r for r in routes if calls(r.dependant) & {deps.project, deps.writable_project}]
    assert len(taking) >= 40  # every route under /v1/projects/{project_id}
    assert [r.path for r in taking if not isinstance(r, deps.ProjectRoute)] == []
