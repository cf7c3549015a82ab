"""Attacks on the API, tried for real: reading files outside the data roots, CSRF from another
origin or another port of the same host, brute-forcing tokens, NaN in free-form fields, weak
production secrets. (Hostile names in the mixture exports: tests/dashboard, issue 14.)"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import _HOME, make_project
from tests.factories import settings_env

SECRET = "TOPSECRET-4f1c9e"
ROOT = Path(_HOME) / "data"


def _token(client, admin, role, project_ids=()):
    r = client.post(
        "/v1/tokens",
        json={"name": f"{role}-t", "role": role, "project_ids": list(project_ids)},
        headers=admin,
    )
    assert r.status_code == 201, r.text
    return {"Authorization": f"Bearer {r.json()['token']}"}


@pytest.fixture
def files(tmp_path):
    """A secret outside the roots, a symlink to it inside a root, and project A's own data."""
    secret = tmp_path / "secret.jsonl"
    secret.write_text(json.dumps({"text": SECRET}) + "\n")
    own = ROOT / "team-a" / "web"
    own.mkdir(parents=True, exist_ok=True)
    (own / "web.jsonl").write_text(
        "".join(json.dumps({"text": f"doc {i} of the web"}) + "\n" for i in range(20))
    )
    link = ROOT / "team-a" / "sneaky.jsonl"
    link.unlink(missing_ok=True)
    link.symlink_to(secret)
    yield {"secret": secret, "own": own, "link": link, "missing": tmp_path / "does-not-exist.jsonl"}
    link.unlink(missing_ok=True)


def _domains(path, tokenizer=None):
    src = {"path": str(path), "format": "jsonl"}
    if tokenizer is not None:
        src["tokenizer"] = str(tokenizer)
    return [{"name": "web", "source": src}]


def _refused(r, field):
    assert r.status_code == 422, r.text
    body = r.json()
    assert body["errors"][0]["field"] == field, body
    assert str(ROOT) in body["detail"]  # names the allowed roots
    assert SECRET not in r.text and "root:" not in r.text  # never the file's bytes
    return body["detail"]


def test_a_write_token_cannot_point_a_source_outside_the_data_roots(client, admin, files):
    a = make_project(client, admin, name="a", domains=())
    tok = _token(client, admin, "write", [a["id"]])
    url = f"/v1/projects/{a['id']}"
    hostile = [
        files["secret"],
        files["missing"],
        "/etc/passwd",
        "/usr",
        f"{ROOT}/../../etc/passwd",
        files["link"],
        f"{ROOT}/team-a/../../",
        Path(_HOME) / "mixopt.db",
        Path(_HOME) / "test.db",
        Path(_HOME) / "shards",
        "relative/path.jsonl",
        "~/secret.jsonl",
        f"{files['secret'].parent}/*.jsonl",
        f"{ROOT}/\x00/x",
    ]
    messages = set()
    for path in hostile:
        messages.add(
            _refused(
                client.patch(url, json={"domains": _domains(path)}, headers=tok),
                "domains[0].source.path",
            )
        )
        messages.add(
            _refused(
                client.post(
                    "/v1/projects", json={"name": "x", "domains": _domains(path)}, headers=tok
                ),
                "domains[0].source.path",
            )
        )
    # one message for every refused path: an existing file, a missing one, a directory and a
    # symlink all read the same, so the answer says nothing about what exists
    assert len(messages) == 1, messages
    for tokenizer in ("/etc/shadow", files["secret"], files["link"], f"{ROOT}/*.json"):
        r = client.patch(url, json={"domains": _domains(files["own"], tokenizer)}, headers=tok)
        assert (
            r.status_code == 422 and r.json()["errors"][0]["field"] == "domains[0].source.tokenizer"
        ), r.text
        assert SECRET not in r.text
    # inside the root is fine, and nothing above was stored
    assert client.get(url, headers=tok).json()["domains"] == []
    ok = client.patch(url, json={"domains": _domains(files["own"])}, headers=tok)
    assert ok.status_code == 200 and ok.json()["domains"][0]["source"]["path"] == str(files["own"])


def test_another_projects_data_is_out_of_reach(client, admin, files):
    a = make_project(client, admin, name="a", domains=())
    b = make_project(client, admin, name="b", domains=())
    tok_a = _token(client, admin, "write", [a["id"]])
    r = client.patch(
        f"/v1/projects/{b['id']}", json={"domains": _domains(files["own"])}, headers=admin
    )
    assert r.status_code == 200
    for method, suffix in (("post", "/domains/ingest"), ("get", ""), ("patch", "")):
        kw = {"json": {"name": "mine"}} if method == "patch" else {}
        r = getattr(client, method)(f"/v1/projects/{b['id']}{suffix}", headers=tok_a, **kw)
        assert r.status_code == 404, (method, suffix, r.text)
    # B's tokenised shards and the service's database live in MIXOPT_HOME, outside every root
    for path in (
        Path(_HOME) / "shards",
        Path(_HOME) / "shards" / "web-0123456789abcdef" / "train.bin",
    ):
        _refused(
            client.patch(
                f"/v1/projects/{a['id']}", json={"domains": _domains(path)}, headers=tok_a
            ),
            "domains[0].source.path",
        )


def test_admin_only_roots(client, admin, tmp_path):
    restricted = tmp_path / "restricted"
    (restricted / "web").mkdir(parents=True)
    with settings_env(MIXOPT_ADMIN_DATA_ROOTS=str(restricted)):
        a = make_project(client, admin, name="a", domains=())
        tok = _token(client, admin, "write", [a["id"]])
        r = client.patch(
            f"/v1/projects/{a['id']}", json={"domains": _domains(restricted / "web")}, headers=tok
        )
        assert r.status_code == 422 and str(restricted) not in r.json()["detail"], r.text
        r = client.patch(
            f"/v1/projects/{a['id']}", json={"domains": _domains(restricted / "web")}, headers=admin
        )
        assert r.status_code == 200, r.text


def test_ingestion_never_follows_a_symlink_out_of_a_root(client, admin, files, engine):
    """A symlink planted inside a registered directory after registration is refused at ingestion:
    the job fails without reading it and nothing of the file reaches the shards."""
    from workers.tasks.training import ingest_project

    a = make_project(client, admin, name="a", domains=())
    assert (
        client.patch(
            f"/v1/projects/{a['id']}", json={"domains": _domains(files["own"])}, headers=admin
        ).status_code
        == 200
    )
    planted = files["own"] / "zz-planted.jsonl"
    planted.symlink_to(files["secret"])
    try:
        with pytest.raises(PermissionError, match="outside the data roots") as exc:
            ingest_project(a["id"])
        assert SECRET not in str(exc.value)
        shards = Path(_HOME) / "shards"
        for f in shards.rglob("*.bin") if shards.exists() else []:
            assert SECRET.encode() not in f.read_bytes()
    finally:
        planted.unlink()
    out = ingest_project(a["id"])  # without the symlink the domain ingests
    assert out["web"].n_train_tokens > 0


def test_stored_source_outside_the_roots_is_refused_at_ingestion(client, admin, files, session):
    """A row that predates the roots (or roots narrowed since) is checked again by the worker."""
    from app.services.errors import Invalid
    from app.store.models import Domain
    from workers.tasks.training import ingest_project

    a = make_project(client, admin, name="a", domains=("web",))
    row = session.query(Domain).filter_by(project_id=a["id"]).one()
    row.source = {"path": str(files["secret"]), "format": "jsonl"}
    session.commit()
    with pytest.raises(Invalid) as exc:
        ingest_project(a["id"])
    assert exc.value.field == "domains[0].source.path" and SECRET not in exc.value.message


def test_tokenizer_files_are_size_limited_and_errors_do_not_echo_bytes(client, admin, files):
    from mixopt.training.tokenizer import load_tokenizer
    from workers.tasks.training import ingest_project

    bogus = ROOT / "team-a" / "tok.json"
    bogus.write_text(SECRET * 50)
    a = make_project(client, admin, name="a", domains=())
    assert (
        client.patch(
            f"/v1/projects/{a['id']}",
            json={"domains": _domains(files["own"], bogus)},
            headers=admin,
        ).status_code
        == 200
    )
    with pytest.raises(ValueError, match="not a tokenizers JSON file") as exc:
        ingest_project(a["id"])
    assert SECRET not in str(exc.value)
    with (
        settings_env(MIXOPT_MAX_TOKENIZER_BYTES="100"),
        pytest.raises(ValueError, match="larger than 100 bytes"),
    ):
        ingest_project(a["id"])
    with pytest.raises(ValueError, match="larger than 10 bytes"):
        load_tokenizer(str(bogus), max_bytes=10)


# -- CSRF -------------------------------------------------------------------------------------
def _login(client, token):
    r = client.post(
        "/dashboard/login", data={"token": token, "next": "/dashboard"}, follow_redirects=False
    )
    assert r.status_code == 303, r.text
    return client.cookies["mixopt_csrf"]


def _import_files():
    return {
        "mixtures": ("m.csv", b"run,web,code\nr1,0.5,0.5\n", "text/csv"),
        "metrics": ("l.csv", b"run,loss\nr1,2.5\n", "text/csv"),
    }


def test_cookie_posts_from_another_origin_or_port_are_refused(client, admin, admin_token):
    p = make_project(client, admin, name="victim", domains=("web", "code"))
    url = f"/v1/projects/{p['id']}/runs/import"
    csrf = _login(client, admin_token)
    # a page on another port of the same host: same-site (the SameSite=Strict cookie travels), not
    # same-origin
    for headers in (
        {"Origin": "http://testserver:8001"},
        {"Origin": "http://evil.example"},
        {"Sec-Fetch-Site": "same-site"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Origin": "http://testserver:8001", "X-CSRF-Token": csrf},
        {"Sec-Fetch-Site": "same-site", "Origin": "http://testserver", "X-CSRF-Token": csrf},
        {},  # an old browser sends no Origin: the double-submit token is still missing
        {"Origin": "http://testserver", "X-CSRF-Token": "0" * 64},
    ):
        r = client.post(url, files=_import_files(), headers=headers)
        assert r.status_code == 403, (headers, r.text)
        r = client.post(
            f"/v1/projects/{p['id']}/runs",
            json={"mixture": {"web": 1}, "metrics": {"loss": 1}},
            headers=headers,
        )
        assert r.status_code == 403, (headers, r.text)
    assert (
        client.get(f"/v1/projects/{p['id']}/runs").json()["count"] == 0
    )  # reads still work with the cookie
    ok = client.post(
        url,
        files=_import_files(),
        headers={
            "Origin": "http://testserver",
            "X-CSRF-Token": csrf,
            "Sec-Fetch-Site": "same-origin",
        },
    )
    assert ok.status_code == 201, ok.text
    # a login form posted from another origin is refused too
    r = client.post(
        "/dashboard/login",
        data={"token": admin_token},
        headers={"Origin": "http://evil.example"},
        follow_redirects=False,
    )
    assert r.status_code == 403


def test_bearer_requests_are_not_affected_by_csrf_checks(client, admin):
    p = make_project(client, admin, name="api", domains=("web", "code"))
    r = client.post(
        f"/v1/projects/{p['id']}/runs",
        json={"mixture": {"web": 1}, "metrics": {"loss": 1}},
        headers={**admin, "Origin": "http://elsewhere.example", "Sec-Fetch-Site": "cross-site"},
    )
    assert r.status_code == 201, r.text


def test_the_csrf_token_is_bound_to_the_session(client, admin, admin_token):
    """A csrf cookie planted by a sibling site cannot be paired with a made-up header value."""
    p = make_project(client, admin, name="victim", domains=("web", "code"))
    _login(client, admin_token)
    client.cookies.set("mixopt_csrf", "a" * 64)
    r = client.post(
        f"/v1/projects/{p['id']}/runs",
        json={"mixture": {"web": 1}, "metrics": {"loss": 1}},
        headers={"X-CSRF-Token": "a" * 64},
    )
    assert r.status_code == 403


# -- brute force ------------------------------------------------------------------------------
def test_login_brute_force_gets_429_with_retry_after(client, admin_token):
    from app.core.config import get_settings

    n = get_settings().auth_failures_per_window
    for i in range(n):
        r = client.post(
            "/dashboard/login", data={"token": f"mxo_guess-{i}"}, follow_redirects=False
        )
        assert r.status_code == 401, (i, r.status_code)
    r = client.post("/dashboard/login", data={"token": "mxo_guess-last"}, follow_redirects=False)
    assert (
        r.status_code == 429
        and 1 <= int(r.headers["Retry-After"]) <= get_settings().auth_window_seconds
    )
    # others' failures never lock a valid token out (its 256 random bits are what stop guessing;
    # a short guessable token is refused unchecked: tests/api/test_rate_limits.py)
    assert (
        client.post(
            "/dashboard/login", data={"token": admin_token}, follow_redirects=False
        ).status_code
        == 303
    )
    assert (
        client.get("/v1/projects", headers={"Authorization": f"Bearer {admin_token}"}).status_code
        == 200
    )


def test_bad_bearer_tokens_are_rate_limited(client, admin):
    from app.core.config import get_settings

    n = get_settings().auth_failures_per_window
    for i in range(n):
        assert (
            client.get("/v1/projects", headers={"Authorization": f"Bearer mxo_bad{i}"}).status_code
            == 401
        )
    r = client.get("/v1/projects", headers={"Authorization": "Bearer mxo_bad"})
    assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1
    assert "too many failed" in r.json()["detail"]


def test_valid_requests_are_never_counted(client, admin):
    from app.core.config import get_settings

    for _ in range(get_settings().auth_failures_per_window + 5):
        assert client.get("/v1/projects", headers=admin).status_code == 200


# -- secrets ----------------------------------------------------------------------------------
def test_production_refuses_a_short_admin_token():
    from pydantic import ValidationError

    from app.core.config import Settings

    pg = "postgresql+psycopg://u@localhost/db"
    with pytest.raises(ValidationError, match="at least 32 characters"):
        Settings(env="production", admin_token="a", database_url=pg)
    with pytest.raises(ValidationError, match="at least 32 characters"):
        Settings(env="production", admin_token="x" * 31, database_url=pg)
    assert Settings(env="production", admin_token="x" * 32, database_url=pg).admin_token == "x" * 32
    assert Settings(env="development", admin_token="a").admin_token == "a"


# -- strict JSON ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "raw, field",
    [
        (
            '{"mixture": {"web": 1}, "metrics": {"loss": 1}, "details": {"note": NaN}}',
            "details.note",
        ),
        (
            '{"mixture": {"web": 1}, "metrics": {"loss": 1}, '
            '"details": {"a": {"b": [1, -Infinity]}}}',
            "details.a.b[1]",
        ),
        (
            '{"mixture": {"web": 1}, "metrics": {"loss": 1}, "details": {"big": 1e999}}',
            "details.big",
        ),
        (
            '{"runs": [{"mixture": {"web": 1}, "metrics": {"loss": 1}}, '
            '{"mixture": {"web": 1}, "metrics": {"loss": Infinity}}]}',
            "runs[1].metrics.loss",
        ),
        ('{"mixture": {"web": NaN}, "metrics": {"loss": 1}}', "mixture.web"),
    ],
)
def test_nan_and_infinity_anywhere_are_422_naming_the_field(client, admin, raw, field):
    from tests.conftest import count_rows

    p = make_project(client, admin, name="nan", domains=("web",))
    r = client.post(
        f"/v1/projects/{p['id']}/runs",
        content=raw,
        headers={**admin, "Content-Type": "application/json"},
    )
    assert r.status_code == 422, r.text
    assert r.json()["errors"][0]["field"] == field and r.json()["detail"].startswith(field)
    assert count_rows("run") == 0
    # text that merely mentions NaN is fine
    ok = client.post(
        f"/v1/projects/{p['id']}/runs",
        headers=admin,
        json={
            "mixture": {"web": 1},
            "metrics": {"loss": 1},
            "details": {"note": "NaN Infinity 1e999"},
        },
    )
    assert ok.status_code == 201 and ok.json()["details"] == {"note": "NaN Infinity 1e999"}
