"""Dashboard pages through the ASGI app (no browser): login cookie, access, errors."""

from tests.conftest import make_project
from tests.dashboard.pages import login


def test_pages_need_a_login_and_the_cookie_is_http_only(client, admin, admin_token):
    r = client.get("/dashboard/jobs", follow_redirects=False)
    assert (
        r.status_code == 303
        and r.headers["location"] == "/dashboard/login?next=%2Fdashboard%2Fjobs"
    )
    assert login(client, "").status_code == 422
    bad = login(client, "mxo_not-a-token")
    assert bad.status_code == 401 and "not valid" in bad.text and "set-cookie" not in bad.headers
    ok = login(client, admin_token)
    assert ok.status_code == 303 and ok.headers["location"] == "/dashboard"
    cookie = ok.headers["set-cookie"]
    assert (
        cookie.startswith("mixopt_token=") and "HttpOnly" in cookie and "SameSite=strict" in cookie
    )
    assert "Secure" not in cookie  # plain http (127.0.0.1): a Secure cookie would never come back
    page = client.get("/dashboard")
    assert page.status_code == 200 and "Content-Security-Policy" in page.headers
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]
    # the /v1 API accepts the dashboard cookie too
    assert client.get("/v1/tokens/me").json()["role"] == "admin"
    # logging out is a state change: it needs the session's CSRF token (the form's hidden field)
    assert client.post("/dashboard/logout", follow_redirects=False).status_code == 403
    assert f'value="{client.cookies["mixopt_csrf"]}"' in page.text
    out = client.post(
        "/dashboard/logout",
        data={"csrf_token": client.cookies["mixopt_csrf"]},
        follow_redirects=False,
    )
    assert out.status_code == 303 and 'mixopt_token=""' in out.headers["set-cookie"]


def test_cookie_is_secure_over_https(admin_token, db):
    from fastapi.testclient import TestClient

    from app.main import create_app

    with TestClient(create_app(), base_url="https://testserver") as c:
        r = login(c, admin_token)
        assert r.status_code == 303 and "Secure" in r.headers["set-cookie"]


def test_open_redirects_are_refused(client, admin_token):
    for target in ("https://evil.example/", "//evil.example/dashboard", "/v1/tokens"):
        r = client.post(
            "/dashboard/login", data={"token": admin_token, "next": target}, follow_redirects=False
        )
        assert r.headers["location"] == "/dashboard", target


def test_bad_ids_and_other_projects_are_404_pages(client, admin):
    a = make_project(client, admin, name="A")
    b = make_project(client, admin, name="B")
    tok = client.post(
        "/v1/tokens", json={"name": "a", "role": "read", "project_ids": [a["id"]]}, headers=admin
    ).json()["token"]
    login(client, tok)
    listing = client.get("/dashboard").text
    assert (
        f'/dashboard/projects/{a["id"]}"' in listing
        and f'/dashboard/projects/{b["id"]}"' not in listing
    )
    for path in (
        f"/dashboard/projects/{b['id']}",
        f"/dashboard/projects/{b['id']}/fits",
        f"/dashboard/projects/{b['id']}/mixtures/uniform/export?format=json",
        "/dashboard/projects/abc",
        "/dashboard/projects/0",
        "/dashboard/projects/99999999999999",
        f"/dashboard/projects/{a['id']}/runs/12",
        f"/dashboard/projects/{a['id']}/runs/x",
        f"/dashboard/projects/{a['id']}/online?session=5",
        f"/dashboard/projects/{a['id']}/whatif?fit=3",
        f"/dashboard/projects/{a['id']}/mixtures/77/export",
        f"/dashboard/projects/{a['id']}/mixtures/nope/export",
    ):
        r = client.get(path)
        assert r.status_code == 404 and r.headers["content-type"].startswith("text/html"), (
            path,
            r.status_code,
        )
        assert "not found" in r.text
    assert client.get(f"/dashboard/api/projects/{b['id']}/runs").status_code == 404
    bad = client.get(f"/dashboard/projects/{a['id']}/mixtures/uniform/export?format=yaml")
    assert bad.status_code == 422 and "format must be one of" in bad.text
    assert client.get("/dashboard/static/../routes.py").status_code == 404
    assert client.get("/dashboard/static/%2e%2e/routes.py").status_code == 404
    assert (
        client.get("/dashboard/static/vendor/chart.umd.js")
        .headers["content-type"]
        .startswith("text/javascript")
    )


def test_pages_of_an_empty_project_render(client, admin, admin_token):
    p = make_project(client, admin, name="empty", domains=())
    login(client, admin_token)
    for suffix in ("", "/mixtures", "/fits", "/whatif", "/online"):
        r = client.get(f"/dashboard/projects/{p['id']}{suffix}")
        assert r.status_code == 200, (suffix, r.text[:500])
    assert "No fits yet" in client.get(f"/dashboard/projects/{p['id']}/fits").text
    assert "No online sessions yet" in client.get(f"/dashboard/projects/{p['id']}/online").text
    assert client.get(f"/dashboard/api/projects/{p['id']}/runs").json()["runs"] == []


def test_epochs_table_flags_mixtures_over_max_epochs(client, admin, admin_token):
    p = make_project(client, admin, name="caps", domains=())
    client.patch(
        f"/v1/projects/{p['id']}",
        headers=admin,
        json={
            "domains": [
                {"name": "big", "token_count": 9 * 10**9},
                {"name": "small", "token_count": 10**8},
            ],
            "constraints": {"target_tokens": 10**9, "max_epochs": 4},
        },
    )
    login(client, admin_token)
    html = client.get(f"/dashboard/projects/{p['id']}").text
    # uniform puts 0.5 x 1e9 tokens on 1e8 tokens: 5 epochs > 4
    assert 'id="epochs-warning"' in html and "5×" in html and 'class="num over"' in html


def test_no_dashboard_route_answers_500(client, admin, admin_token):
    from app.dashboard.routes import router

    p = make_project(client, admin)
    client.post(
        f"/v1/projects/{p['id']}/runs",
        json={"mixture": {"web": 1.0}, "metrics": {"l": 1.0}},
        headers=admin,
    )
    bodies = [None, b"", b"token=", b"token=%00&next=%zz", b"{", "token=\u00e9".encode()]
    failures = []
    for logged_in in (False, True):
        if logged_in:
            login(client, admin_token)
        for route in router.routes:
            for method in route.methods:
                for pid in (str(p["id"]), "0", "-1", "999999999999999999999", "abc", "%00"):
                    url = (
                        route.path.replace("{project_id}", pid)
                        .replace("{run_id}", "1")
                        .replace("{which}", "x%00")
                        .replace("{path:path}", "..%2f..%2fmain.py")
                    )
                    for query in ("", "?format=%00&fit=-1&session=abc&next=//x"):
                        for body in bodies if method == "POST" else [None]:
                            headers = (
                                {"content-type": "application/x-www-form-urlencoded"}
                                if body is not None
                                else {}
                            )
                            r = client.request(
                                method,
                                url + query,
                                content=body,
                                headers=headers,
                                follow_redirects=False,
                            )
                            if r.status_code >= 500:
                                failures.append(
                                    (method, url + query, body, r.status_code, r.text[:200])
                                )
    assert not failures, failures[:10]
