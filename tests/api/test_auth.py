from tests.conftest import count_rows, make_project


def _token(client, admin, role="write", project_ids=()):
    r = client.post(
        "/v1/tokens",
        json={"name": f"{role}-token", "role": role, "project_ids": list(project_ids)},
        headers=admin,
    )
    assert r.status_code == 201, r.text
    return {"Authorization": f"Bearer {r.json()['token']}"}, r.json()


def test_tokens_are_stored_hashed(client, admin, session):
    from app.store.models import ApiToken

    _, created = _token(client, admin)
    row = session.get(ApiToken, created["id"])
    assert row.token_hash != created["token"] and created["token"] not in row.token_hash
    assert len(row.token_hash) == 64


def test_token_scoping_across_two_projects(client, admin):
    a = make_project(client, admin, name="A")
    b = make_project(client, admin, name="B")
    client.post(
        f"/v1/projects/{b['id']}/runs",
        json={"mixture": {"web": 1.0}, "metrics": {"l": 1.0}},
        headers=admin,
    )
    tok_a, _ = _token(client, admin, "write", [a["id"]])

    listed = client.get("/v1/projects", headers=tok_a).json()
    assert [p["id"] for p in listed["data"]] == [a["id"]] and listed["count"] == 1
    # B does not exist for this token: 404 everywhere, never 403
    for method, path, body in [
        ("get", f"/v1/projects/{b['id']}", None),
        ("patch", f"/v1/projects/{b['id']}", {"name": "stolen"}),
        ("delete", f"/v1/projects/{b['id']}", None),
        ("get", f"/v1/projects/{b['id']}/runs", None),
        ("post", f"/v1/projects/{b['id']}/runs", {"mixture": {"web": 1.0}}),
        ("get", f"/v1/projects/{b['id']}/runs/1", None),
        ("get", f"/v1/projects/{b['id']}/runs/export?format=json", None),
    ]:
        kw = {"json": body} if body is not None else {}
        r = client.request(method.upper(), path, headers=tok_a, **kw)
        assert r.status_code == 404, (method, path, r.status_code)
    assert client.get(f"/v1/projects/{b['id']}", headers=admin).json()["name"] == "B"
    assert count_rows("run") == 1
    # and A works
    r = client.post(f"/v1/projects/{a['id']}/runs", json={"mixture": {"web": 1.0}}, headers=tok_a)
    assert r.status_code == 201
    # non-admin cannot manage tokens
    assert (
        client.post("/v1/tokens", json={"name": "x", "role": "admin"}, headers=tok_a).status_code
        == 403
    )
    assert client.get("/v1/tokens", headers=tok_a).status_code == 403


def test_write_token_owns_the_projects_it_creates(client, admin):
    tok, _ = _token(client, admin, "write")
    p = make_project(client, tok, name="mine")
    assert client.get(f"/v1/projects/{p['id']}", headers=tok).status_code == 200
    other = make_project(client, admin, name="theirs")
    assert client.get(f"/v1/projects/{other['id']}", headers=tok).status_code == 404


def test_read_token_cannot_write(client, admin):
    p = make_project(client, admin)
    tok, _ = _token(client, admin, "read", [p["id"]])
    assert client.get(f"/v1/projects/{p['id']}", headers=tok).status_code == 200
    r = client.post(f"/v1/projects/{p['id']}/runs", json={"mixture": {"web": 1.0}}, headers=tok)
    assert r.status_code == 403 and "read-only" in r.json()["detail"]
    assert client.post("/v1/projects", json={"name": "x"}, headers=tok).status_code == 403
    assert count_rows("run") == 0


def test_revoked_token_is_refused(client, admin):
    tok, created = _token(client, admin)
    assert client.get("/v1/projects", headers=tok).status_code == 200
    r = client.delete(f"/v1/tokens/{created['id']}", headers=admin)
    assert r.status_code == 200 and r.json()["revoked_at"]
    assert client.get("/v1/projects", headers=tok).status_code == 401


def test_token_creation_validation(client, admin):
    r = client.post(
        "/v1/tokens", json={"name": "x", "role": "write", "project_ids": [9999]}, headers=admin
    )
    assert r.status_code == 404 and "9999" in r.json()["detail"]
    r = client.post("/v1/tokens", json={"name": "x", "role": "root"}, headers=admin)
    assert r.status_code == 422 and "role" in r.json()["detail"]


def test_bootstrap_admin_token_from_env_and_generated(tmp_path, monkeypatch, db):
    from app.bootstrap import prepare
    from app.core.config import Settings
    from app.services import tokens
    from app.store.db import session_scope

    s = Settings(
        home=tmp_path,
        admin_token="mxo_fixed_admin_token_for_test",
        auto_migrate=False,
        database_url="sqlite:///unused",
    )
    assert prepare(s) == "mxo_fixed_admin_token_for_test"
    assert prepare(s) == "mxo_fixed_admin_token_for_test"  # idempotent
    with session_scope() as sess:
        row = tokens.authenticate(sess, "mxo_fixed_admin_token_for_test")
        assert row is not None and row.role == "admin"
    s2 = Settings(home=tmp_path / "h2", auto_migrate=False, database_url="sqlite:///unused")
    generated = prepare(s2)
    assert generated and generated.startswith("mxo_")
    assert (tmp_path / "h2" / "admin_token").read_text().strip() == generated
    assert prepare(s2) == generated  # read back, not regenerated
