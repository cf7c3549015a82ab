"""Every input limit is a setting with a clear 413/422 naming the field; runs export -> import
is a round trip; a database pool timeout is a 503 with Retry-After."""

from __future__ import annotations

import json

import pytest

from tests.conftest import count_rows, make_project
from tests.factories import settings_env

RUN = {"mixture": {"web": 0.5, "code": 0.5}, "metrics": {"loss": 2.0}}


def _field(r, status=422):
    assert r.status_code == status, r.text
    return r.json()["errors"][0]["field"], r.json()["detail"]


def test_body_size_is_checked_before_parsing(client, admin):
    p = make_project(client, admin, name="big", domains=("web", "code"))
    url = f"/v1/projects/{p['id']}/runs"
    with settings_env(MIXOPT_MAX_BODY_BYTES="2048"):
        body = {"runs": [RUN] * 100}
        assert len(json.dumps(body)) > 2048
        field, detail = _field(client.post(url, json=body, headers=admin), 413)
        assert field == "body" and "MIXOPT_MAX_BODY_BYTES" in detail

        def chunks():  # no Content-Length: counted while reading
            for _ in range(100):
                yield json.dumps(RUN).encode()

        r = client.post(
            url, content=chunks(), headers={**admin, "Content-Type": "application/json"}
        )
        assert r.status_code == 413, r.text
        # not JSON, it still counts (CSV import)
        files = {
            "mixtures": ("m.csv", b"run,web,code\n" + b"r,0.5,0.5\n" * 300, "text/csv"),
            "metrics": ("l.csv", b"run,loss\nr,1\n", "text/csv"),
        }
        assert client.post(f"{url}/import", files=files, headers=admin).status_code == 413
        assert client.post(url, json=RUN, headers=admin).status_code == 201  # small bodies pass
    assert count_rows("run") == 1


def test_runs_per_batch_and_per_import(client, admin):
    p = make_project(client, admin, name="batch", domains=("web", "code"))
    url = f"/v1/projects/{p['id']}/runs"
    with settings_env(MIXOPT_MAX_BATCH_RUNS="3"):
        field, detail = _field(client.post(url, json={"runs": [RUN] * 4}, headers=admin), 413)
        assert field == "runs" and "at most 3" in detail and "MIXOPT_MAX_BATCH_RUNS" in detail
        assert client.post(url, json={"runs": [RUN] * 3}, headers=admin).status_code == 201
        mix = "run,web,code\n" + "".join(f"r{i},0.5,0.5\n" for i in range(4))
        met = "run,loss\n" + "".join(f"r{i},1.5\n" for i in range(4))
        r = client.post(
            f"{url}/import",
            files={"mixtures": ("m.csv", mix.encode()), "metrics": ("l.csv", met.encode())},
            headers=admin,
        )
        assert _field(r, 413)[0] == "mixtures"
        doc = {"domains": ["web", "code"], "runs": [RUN] * 4}
        assert _field(client.post(f"{url}/import/json", json=doc, headers=admin), 413)[0] == "runs"
    assert count_rows("run") == 3


def test_domains_per_project_on_every_path(client, admin):
    with settings_env(MIXOPT_MAX_DOMAINS="3"):
        r = client.post(
            "/v1/projects",
            json={"name": "many", "domains": [{"name": f"d{i}"} for i in range(4)]},
            headers=admin,
        )
        field, detail = _field(r)
        assert field == "domains" and "MIXOPT_MAX_DOMAINS" in detail
        p = make_project(client, admin, name="csv", domains=())
        r = client.patch(
            f"/v1/projects/{p['id']}",
            json={"domains": [{"name": f"d{i}"} for i in range(4)]},
            headers=admin,
        )
        assert _field(r)[0] == "domains"
        # a CSV import into a project with no domains takes them from the columns: limited too
        cols = [f"d{i}" for i in range(5)]
        mix = "run," + ",".join(cols) + "\nr1," + ",".join(["0.2"] * 5) + "\n"
        r = client.post(
            f"/v1/projects/{p['id']}/runs/import",
            files={"mixtures": ("m.csv", mix.encode()), "metrics": ("l.csv", b"run,loss\nr1,1\n")},
            headers=admin,
        )
        field, detail = _field(r)
        assert field == "mixtures" and "at most 3 domains" in detail
        doc = {"domains": cols, "runs": [{"mixture": {"d0": 1}, "metrics": {"loss": 1}}]}
        assert (
            _field(
                client.post(f"/v1/projects/{p['id']}/runs/import/json", json=doc, headers=admin)
            )[0]
            == "mixtures"
        )
        assert client.get(f"/v1/projects/{p['id']}", headers=admin).json()["domains"] == []
    assert count_rows("domain") == 0 and count_rows("run") == 0


def test_domain_changes_are_limited_to_max_domains(client, admin):
    p = make_project(client, admin, name="changes", domains=("web", "code"))
    url = f"/v1/projects/{p['id']}/domain-changes"
    with settings_env(MIXOPT_MAX_DOMAINS="3"):
        cases = [
            ({"split": {"web": [f"w{i}" for i in range(4)]}}, "split.web"),  # parts of one split
            ({"merge": {"all": ["web", "code", "x", "y"]}}, "merge.all"),  # parts of one merge
            ({"split": {f"s{i}": ["a"] for i in range(4)}}, "split"),  # splits in one change
            ({"add": [{"name": f"n{i}"} for i in range(2)]}, "add"),
        ]  # the resulting set: 4 > 3
        for body, field in cases:
            got, detail = _field(client.post(url, json=body, headers=admin))
            assert got == field and "MIXOPT_MAX_DOMAINS" in detail, (body, got, detail)
    assert (
        client.get(f"/v1/projects/{p['id']}/domain-sets", headers=admin).json()["count"] == 1
    )  # nothing changed


def test_size_of_details_and_params(client, admin):
    p = make_project(client, admin, name="sizes", domains=("web", "code"))
    with settings_env(MIXOPT_MAX_JSON_FIELD_BYTES="200"):
        r = client.post(
            f"/v1/projects/{p['id']}/runs",
            json={**RUN, "details": {"blob": "x" * 300}},
            headers=admin,
        )
        field, detail = _field(r)
        assert field == "details" and "MIXOPT_MAX_JSON_FIELD_BYTES" in detail
        r = client.post(
            f"/v1/projects/{p['id']}/runs",
            json={"runs": [RUN, {**RUN, "details": {"b": "x" * 300}}]},
            headers=admin,
        )
        assert _field(r)[0] == "runs[1].details"
        big = {f"k{i}": i for i in range(100)}
        for path, body in (
            (f"/v1/projects/{p['id']}/fits", {"estimator": "linear", "params": big}),
            (f"/v1/projects/{p['id']}/recommendations", {"estimator": "linear", "params": big}),
            (f"/v1/projects/{p['id']}/online-sessions", {"algorithm": "odm", "params": big}),
        ):
            assert _field(client.post(path, json=body, headers=admin))[0] == "params", path
        assert (
            client.post(
                f"/v1/projects/{p['id']}/runs",
                json={**RUN, "details": {"note": "ok"}},
                headers=admin,
            ).status_code
            == 201
        )
    assert count_rows("run") == 1 and count_rows("fit") == 0 and count_rows("job") == 0


def test_observations_and_predict_mixtures_per_request(client, admin):
    p = make_project(client, admin, name="obs", domains=("web", "code"))
    s = client.post(
        f"/v1/projects/{p['id']}/online-sessions", json={"algorithm": "odm"}, headers=admin
    ).json()
    obs = [{"step": i, "train_losses": {"web": 2.0, "code": 2.1}} for i in range(1, 4)]
    url = f"/v1/projects/{p['id']}/online-sessions/{s['id']}/observations"
    with settings_env(MIXOPT_MAX_OBSERVATIONS="2", MIXOPT_MAX_PREDICT_MIXTURES="2"):
        field, detail = _field(client.post(url, json={"observations": obs}, headers=admin))
        assert field == "observations" and "MIXOPT_MAX_OBSERVATIONS" in detail
        assert client.post(url, json={"observations": obs[:2]}, headers=admin).status_code == 200
        mixtures = [{"web": 0.5, "code": 0.5}] * 3
        r = client.post(
            f"/v1/projects/{p['id']}/fits/1/predict", json={"mixtures": mixtures}, headers=admin
        )
        field, detail = _field(r)
        assert field == "mixtures" and "MIXOPT_MAX_PREDICT_MIXTURES" in detail


def test_swarm_count_steps_tokens_per_step_and_queue(client, admin):
    p = make_project(client, admin, name="swarm", domains=("web", "code"))
    url = f"/v1/projects/{p['id']}/swarms"
    base = {"count": 2, "train_steps": 10}
    with settings_env(
        MIXOPT_MAX_SWARM_COUNT="8",
        MIXOPT_MAX_TRAIN_STEPS="1000",
        MIXOPT_MAX_TOKENS_PER_STEP="4096",
        MIXOPT_QUEUES="default,gpu,gpu-a100",
    ):
        cases = [
            ({"count": 9}, "count", "MIXOPT_MAX_SWARM_COUNT"),
            ({"train_steps": 1001}, "train_steps", "MIXOPT_MAX_TRAIN_STEPS"),
            ({"batch_size": 64, "block_size": 128}, "body", "MIXOPT_MAX_TOKENS_PER_STEP"),
            (
                {
                    "train_steps": None,
                    "train_tokens": 4096 * 1001,
                    "batch_size": 32,
                    "block_size": 128,
                },
                "body",
                "MIXOPT_MAX_TRAIN_STEPS",
            ),
            ({"queue": "nobody-listens"}, "queue", "MIXOPT_QUEUES"),
        ]
        for extra, field, setting in cases:
            got, detail = _field(client.post(url, json={**base, **extra}, headers=admin))
            assert got == field and setting in detail, (extra, detail)
        # within every limit the schema accepts it (the service then wants data sources)
        r = client.post(
            url,
            json={**base, "queue": "gpu-a100", "batch_size": 32, "block_size": 128},
            headers=admin,
        )
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == "domains", r.text
    assert count_rows("job") == 0 and count_rows("run") == 0


def test_runs_json_export_then_import_reproduces_every_field(client, admin):
    src = make_project(client, admin, name="source", domains=("web", "code", "math"))
    url = f"/v1/projects/{src['id']}/runs"
    runs = [
        {
            "mixture": {"web": 0.2, "code": 0.3, "math": 0.5},
            "metrics": {"loss/web": 2.25, "loss/code": 1.0 / 3},
            "name": "r-1",
            "external_id": "ext-1",
            "model_params": 60_000_000,
            "train_tokens": 10**9,
            "train_steps": 1000,
            "seed": 7,
            "tags": ["swarm", "a"],
            "origin": "trained",
            "details": {
                "device": "cuda",
                "nested": {"list": [1, 2.5, None, "x"], "unicode": "naïve — ✓"},
            },
        },
        {"mixture": {"web": 1.0}, "metrics": {}, "status": "planned", "tags": []},
        {"mixture": {"web": 0.1, "code": 0.9}, "metrics": {"loss/web": 3.0}, "status": "failed"},
    ]
    ids = client.post(url, json={"runs": runs}, headers=admin).json()["ids"]
    assert (
        client.patch(
            f"{url}/{ids[2]}", json={"error": "RuntimeError: out of memory"}, headers=admin
        ).status_code
        == 200
    )
    curve = [
        {"step": 0, "tokens": 0, "metrics": {"loss/web": 4.0}},
        {"step": 100, "tokens": 10**6, "metrics": {"loss/web": 3.1, "loss/code": 2.9}},
    ]
    assert (
        client.post(f"{url}/{ids[0]}/curve", json={"points": curve}, headers=admin).status_code
        == 200
    )

    doc = client.get(f"{url}/export?format=json&status=all", headers=admin).json()
    assert doc["domains"] == ["web", "code", "math"] and len(doc["runs"]) == 3
    dst = make_project(client, admin, name="copy", domains=())
    r = client.post(f"/v1/projects/{dst['id']}/runs/import/json", json=doc, headers=admin)
    assert r.status_code == 201, r.text
    assert r.json()["domains_created"] == ["web", "code", "math"] and r.json()["created"] == 3
    again = client.get(
        f"/v1/projects/{dst['id']}/runs/export?format=json&status=all", headers=admin
    ).json()

    skip = {"id", "job_id", "created_at", "updated_at"}
    before = [{k: v for k, v in run.items() if k not in skip} for run in doc["runs"]]
    after = [{k: v for k, v in run.items() if k not in skip} for run in again["runs"]]
    assert after == before
    assert set(before[0]) >= {
        "mixture",
        "metrics",
        "name",
        "external_id",
        "model_params",
        "train_tokens",
        "train_steps",
        "seed",
        "tags",
        "status",
        "origin",
        "details",
        "error",
        "curve",
    }
    # the original values, not only export == export
    assert after[0]["details"] == runs[0]["details"] and after[0]["curve"] == curve
    assert after[2]["status"] == "failed" and after[2]["error"] == "RuntimeError: out of memory"
    assert after[1]["status"] == "planned" and after[0]["origin"] == "trained"
    assert after[0]["mixture"] == {"web": 0.2, "code": 0.3, "math": 0.5}
    assert after[0]["metrics"]["loss/code"] == 1.0 / 3
    # into a project with other domains: refused, naming the run's field
    other = make_project(client, admin, name="other", domains=("books",))
    r = client.post(f"/v1/projects/{other['id']}/runs/import/json", json=doc, headers=admin)
    assert r.status_code == 422 and r.json()["errors"][0]["field"].startswith("runs[0].mixture")


def test_a_pool_timeout_is_a_503_with_retry_after(client, admin):
    from app.store.db import get_engine, reset_caches

    make_project(client, admin, name="pool")
    env = {
        "MIXOPT_REQUEST_THREADS": "1",
        "MIXOPT_DB_MAX_OVERFLOW": "0",
        "MIXOPT_DB_POOL_TIMEOUT": "0.2",
    }
    with settings_env(**env):
        reset_caches()
        try:
            held = get_engine().connect()  # the pool's only connection
            try:
                r = client.get("/v1/projects", headers=admin)
                assert r.status_code == 503 and r.headers["Retry-After"] == "1", r.text
                assert "retry" in r.json()["detail"]
            finally:
                held.close()
            assert client.get("/v1/projects", headers=admin).status_code == 200
        finally:
            reset_caches()


def test_settings_refuse_an_empty_queue_list():
    from pydantic import ValidationError

    from app.core.config import Settings

    with pytest.raises(ValidationError, match="at least one queue"):
        Settings(queues=" , ")


def test_more_concurrent_clients_than_connections_get_no_5xx(db, admin_token):
    """30 concurrent requests, 2 handler threads, a pool of 2 connections and no overflow: requests
    wait at the door (InFlightLimit), none holds a connection while waiting for a thread."""
    from concurrent.futures import ThreadPoolExecutor

    import httpx

    from app.store.db import reset_caches
    from tests.conftest import server_in_thread

    env = {
        "MIXOPT_REQUEST_THREADS": "2",
        "MIXOPT_DB_MAX_OVERFLOW": "0",
        "MIXOPT_DB_POOL_TIMEOUT": "1",
    }
    with settings_env(**env):
        reset_caches()
        try:
            with (
                server_in_thread() as url,
                httpx.Client(
                    base_url=url, timeout=60, headers={"Authorization": f"Bearer {admin_token}"}
                ) as c,
            ):

                def one(i: int) -> int:
                    if i % 3 == 0:
                        return c.post("/v1/projects", json={"name": f"p{i}"}).status_code
                    return c.get("/v1/projects").status_code

                with ThreadPoolExecutor(30) as pool:
                    codes = list(pool.map(one, range(90)))
        finally:
            reset_caches()
    assert codes.count(201) == 30 and codes.count(200) == 60, sorted(set(codes))
    assert count_rows("project") == 30
