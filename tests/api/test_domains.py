"""Versioned domain sets: removing, splitting, merging or adding domains makes a new version
(the old one stays readable, its runs keep their mixtures), new runs must use the current set,
and fits bring runs of older versions into the current set where valid, counting what they
reused, mapped and dropped. Real worker for the fits and suggestions; the migration test
downgrades and upgrades the real database (PostgreSQL in the PG pass)."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import inspect, text

from tests.conftest import DATABASE_URL, wait_job

DOMAINS = [
    {"name": "web", "token_count": 6000},
    {"name": "code", "token_count": 3000},
    {"name": "books", "token_count": 1000},
]


def _project(client, admin, domains=DOMAINS, **extra) -> dict:
    r = client.post(
        "/v1/projects", json={"name": "versions", "domains": domains, **extra}, headers=admin
    )
    assert r.status_code == 201, r.text
    return r.json()


def _runs(client, admin, pid: int, runs: list[dict]) -> list[int]:
    r = client.post(f"/v1/projects/{pid}/runs", json={"runs": runs}, headers=admin)
    assert r.status_code == 201, r.text
    return r.json()["ids"]


def _change(client, admin, pid: int, body: dict):
    return client.post(f"/v1/projects/{pid}/domain-changes", json=body, headers=admin)


def test_removing_a_used_domain_makes_a_version_and_keeps_old_runs_readable(client, admin):
    p = _project(
        client, admin, constraints={"bounds": {"books": {"max": 0.3}, "web": {"min": 0.1}}}
    )
    pid = p["id"]
    assert p["domain_version"] == 1
    old_ids = _runs(
        client,
        admin,
        pid,
        [
            {"mixture": {"web": 0.5, "code": 0.3, "books": 0.2}, "metrics": {"loss": 3.0}},
            {"mixture": {"web": 0.6, "code": 0.4}, "metrics": {"loss": 3.1}},
        ],
    )
    # PATCH still refuses, and now names the way forward
    r = client.patch(f"/v1/projects/{pid}", json={"domains": DOMAINS[:2]}, headers=admin)
    assert (
        r.status_code == 409
        and "domain-changes" in r.json()["detail"]
        and "books" in r.json()["detail"]
    )

    r = _change(client, admin, pid, {"remove": ["books"]})
    assert r.status_code == 201, r.text
    v2 = r.json()
    assert (
        v2["version"] == 2
        and v2["current"]
        and [d["name"] for d in v2["domains"]] == ["web", "code"]
    )
    assert v2["changes"]["remove"] == ["books"] and v2["changes"]["constraints_dropped"] == [
        "constraints.bounds.books"
    ]
    project = client.get(f"/v1/projects/{pid}", headers=admin).json()
    assert project["domain_version"] == 2 and [d["name"] for d in project["domains"]] == [
        "web",
        "code",
    ]
    assert project["constraints"]["bounds"] == {"web": {"min": 0.1, "max": 1.0}}

    # the old runs: listed, shown and exported with their version-1 mixtures
    listed = {
        r["id"]: r for r in client.get(f"/v1/projects/{pid}/runs", headers=admin).json()["data"]
    }
    assert listed[old_ids[0]]["mixture"] == {"web": 0.5, "code": 0.3, "books": 0.2}
    assert {listed[i]["domain_version"] for i in old_ids} == {1}
    shown = client.get(f"/v1/projects/{pid}/runs/{old_ids[0]}", headers=admin).json()
    assert shown["mixture"]["books"] == 0.2
    exported = client.get(
        f"/v1/projects/{pid}/runs/export", params={"format": "json"}, headers=admin
    )
    assert exported.status_code == 200, exported.text
    assert {r["mixture"].get("books", 0.0) for r in exported.json()["runs"]} == {0.2, 0.0}
    csv_text = client.get(
        f"/v1/projects/{pid}/runs/export",
        params={"format": "csv", "part": "mixtures"},
        headers=admin,
    ).text.splitlines()
    assert csv_text[0] == "index,train_web,train_code,train_books" and csv_text[1].endswith(",0.2")
    # the dashboard's runs table: the retired domain keeps a column, so the old run's row sums to 1
    table = client.get(f"/dashboard/api/projects/{pid}/runs", headers=admin)
    assert table.status_code == 200, table.text
    assert table.json()["domains"] == ["web", "code", "books"] and table.json()["retired"] == [
        "books"
    ]
    rows = {r["id"]: r["mixture"] for r in table.json()["runs"]}
    assert rows[old_ids[0]] == [0.5, 0.3, 0.2] and rows[old_ids[1]] == [0.6, 0.4, 0.0]

    # a weight on the retired domain: 422 naming it; a run on the current set is version 2
    r = client.post(
        f"/v1/projects/{pid}/runs", json={"mixture": {"web": 0.5, "books": 0.5}}, headers=admin
    )
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "mixture.books"
    assert "retired" in r.json()["detail"] and "version 1" in r.json()["detail"]
    r = client.post(
        f"/v1/projects/{pid}/runs",
        json={"runs": [{"mixture": {"web": 1.0}}, {"mixture": {"code": 0.5, "books": 0.5}}]},
        headers=admin,
    )
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "runs[1].mixture.books"
    r = client.post(
        f"/v1/projects/{pid}/runs", json={"mixture": {"web": 0.7, "code": 0.3}}, headers=admin
    )
    assert r.status_code == 201 and r.json()["domain_version"] == 2

    sets = client.get(f"/v1/projects/{pid}/domain-sets", headers=admin).json()
    assert sets["current_version"] == 2 and sets["count"] == 2
    assert [(s["version"], s["run_count"], s["current"]) for s in sets["data"]] == [
        (1, 2, False),
        (2, 1, True),
    ]
    assert [d["name"] for d in sets["data"][0]["domains"]] == ["web", "code", "books"]
    life = {h["name"]: h for h in sets["history"]}
    assert life["books"] == {
        "name": "books",
        "first_version": 1,
        "last_version": 1,
        "retired": True,
    }
    assert life["web"]["last_version"] == 2 and not life["web"]["retired"]


def test_domain_changes_refuse_bad_input_naming_the_field(client, admin):
    pid = _project(client, admin)["id"]
    cases = [
        ({"remove": ["nope"]}, 422, "remove[0]"),
        ({"split": {"nope": ["a", "b"]}}, 422, "split.nope"),
        ({"split": {"web": ["code", "web_b"]}}, 422, "split.web[0]"),  # into an existing name
        ({"split": {"web": []}}, 422, "split.web"),
        ({"split": {"web": ["w1", "w1"]}}, 422, "split.web[1]"),
        ({"merge": {"lit": ["books"]}}, 422, "merge.lit"),
        ({"merge": {"lit": ["books", "nope"]}}, 422, "merge.lit[1]"),
        ({"merge": {"code": ["books", "web"]}}, 422, "merge.code"),
        ({"remove": ["web", "code", "books"]}, 422, "remove"),
        ({"remove": ["web"], "split": {"web": ["a", "b"]}}, 422, "split.web"),
        ({"add": [{"name": "code"}]}, 422, "add[0].name"),
        ({}, 422, "add"),
        ({"add": [{"name": "x"}], "base_version": 7}, 409, "base_version"),
    ]
    for body, status, field in cases:
        r = _change(client, admin, pid, body)
        assert r.status_code == status, (body, r.text)
        assert r.json()["errors"][0]["field"] == field, (body, r.json())
    assert (
        client.get(f"/v1/projects/{pid}", headers=admin).json()["domain_version"] == 1
    )  # nothing changed
    assert client.get(f"/v1/projects/{pid}/domain-sets", headers=admin).json()["count"] == 1


def test_concurrent_changes_one_wins_the_other_is_a_409(client, admin, session):
    """Two changes made against the same version: the conditional version bump lets one in."""
    from app.schemas.domains import DomainChanges
    from app.services import domains as domain_sets
    from app.services.errors import Conflict
    from app.store.db import get_sessionmaker
    from app.store.models import Project

    pid = _project(client, admin)["id"]
    other = get_sessionmaker()()
    try:
        stale = other.get(Project, pid)
        assert (
            stale.domain_version == 1 and len(stale.domains) == 3
        )  # loaded before the first change
        assert _change(client, admin, pid, {"add": [{"name": "papers"}]}).status_code == 201
        with pytest.raises(Conflict) as exc:
            domain_sets.apply_changes(other, stale, DomainChanges(remove=["books"]))
        assert exc.value.field == "base_version"
    finally:
        other.close()
    sets = client.get(f"/v1/projects/{pid}/domain-sets", headers=admin).json()
    assert sets["current_version"] == 2 and [d["name"] for d in sets["data"][1]["domains"]] == [
        "web",
        "code",
        "books",
        "papers",
    ]

    # and over HTTP at the same time: every answer a 201 or a 409, versions without gaps
    answers: list[int] = []

    def change(i: int) -> None:
        answers.append(
            _change(client, admin, pid, {"add": [{"name": f"d{i}"}], "base_version": 2}).status_code
        )

    threads = [threading.Thread(target=change, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(answers) == [201, 409, 409, 409], answers
    sets = client.get(f"/v1/projects/{pid}/domain-sets", headers=admin).json()
    assert [s["version"] for s in sets["data"]] == [1, 2, 3]


def test_split_maps_old_runs_by_token_share(client, admin, session):
    """web (6000 tokens) split into web_news (4500) and web_blog (1500): an old run's web weight
    goes 3/4 to web_news and 1/4 to web_blog; the merge of code + books is kept only for runs
    that drew them 3:1 (their token counts)."""
    from app.services import fits as fit_service
    from app.store.models import Fit

    pid = _project(client, admin)["id"]
    ids = _runs(
        client,
        admin,
        pid,
        [
            {
                "mixture": {"web": 0.4, "code": 0.45, "books": 0.15},
                "metrics": {"loss": 3.0},
            },  # code:books = 3:1
            {
                "mixture": {"web": 0.8, "code": 0.1, "books": 0.1},
                "metrics": {"loss": 3.2},
            },  # 1:1: not exact
            {"mixture": {"web": 1.0}, "metrics": {"loss": 3.4}},
        ],
    )
    r = _change(
        client,
        admin,
        pid,
        {
            "split": {
                "web": [
                    {"name": "web_news", "token_count": 4500},
                    {"name": "web_blog", "token_count": 1500},
                ]
            },
            "merge": {"lit": ["code", "books"]},
        },
    )
    assert r.status_code == 201, r.text
    assert [(d["name"], d["token_count"]) for d in r.json()["domains"]] == [
        ("web_news", 4500),
        ("web_blog", 1500),
        ("lit", 4000),
    ]
    new_id = _runs(
        client,
        admin,
        pid,
        [{"mixture": {"web_news": 0.2, "web_blog": 0.3, "lit": 0.5}, "metrics": {"loss": 2.9}}],
    )[0]
    r = client.post(f"/v1/projects/{pid}/fits", json={"estimator": "regmix_linear"}, headers=admin)
    assert r.status_code == 202, r.text
    fit = session.get(Fit, r.json()["fit"]["id"])
    assert fit.domain_versions == {"mode": "compatible", "version": 2}
    data = fit_service.training_data(session, fit)
    assert data["domains"] == ["web_news", "web_blog", "lit"]
    rows = dict(zip(data["run_ids"], data["X"].tolist(), strict=True))
    assert sorted(rows) == [ids[0], ids[2], new_id]
    assert rows[ids[0]] == pytest.approx([0.4 * 0.75, 0.4 * 0.25, 0.45 + 0.15])
    assert rows[ids[2]] == pytest.approx([0.75, 0.25, 0.0])
    assert rows[new_id] == pytest.approx([0.2, 0.3, 0.5])
    report = data["domain_versions"]
    assert report["by_version"]["1"]["runs"] == 3 and report["by_version"]["1"]["mapped"] == 2
    assert report["by_version"]["1"]["dropped"] == 1 and report["by_version"]["2"]["reused"] == 1
    (reason,) = report["by_version"]["1"]["reasons"]
    assert "merged 'lit'" in reason and "0.5:0.5" in reason and "0.75:0.25" in reason


def _law(m: dict[str, float]) -> float:
    """A loss the runs report: lower with more web and code (any smooth function would do)."""
    return (
        3.0
        - 0.8 * m.get("web", 0)
        - 0.5 * m.get("code", 0)
        - 0.3 * m.get("papers", 0)
        + 0.1 * m.get("math", 0)
    )


def test_fit_after_adding_a_domain_uses_old_and_new_runs(client, admin, worker):
    domains = [
        {"name": "web", "token_count": 4000},
        {"name": "code", "token_count": 3000},
        {"name": "math", "token_count": 1000},
        {"name": "books", "token_count": 500},
    ]
    pid = _project(client, admin, domains=domains)["id"]
    old = [
        {
            "web": 0.1 * (1 + i % 6),
            "code": 0.3,
            "math": round(0.7 - 0.1 * (1 + i % 6) - (0.1 if i >= 7 else 0), 6),
            "books": 0.1 if i >= 7 else 0.0,
        }
        for i in range(10)
    ]  # runs 7, 8, 9 trained on books
    old_ids = _runs(client, admin, pid, [{"mixture": m, "metrics": {"loss": _law(m)}} for m in old])
    r = _change(
        client, admin, pid, {"add": [{"name": "papers", "token_count": 2000}], "remove": ["books"]}
    )
    assert r.status_code == 201 and r.json()["version"] == 2, r.text
    new = [
        {"web": 0.2 + 0.05 * i, "code": 0.3, "math": 0.1, "papers": round(0.4 - 0.05 * i, 6)}
        for i in range(6)
    ]
    new_ids = _runs(client, admin, pid, [{"mixture": m, "metrics": {"loss": _law(m)}} for m in new])

    r = client.post(
        f"/v1/projects/{pid}/fits",
        json={"estimator": "regmix_linear", "cv_folds": 3},
        headers=admin,
    )
    assert r.status_code == 202, r.text
    job = wait_job(client, admin, r.json()["job"]["id"])
    assert job["state"] == "succeeded", job["error"]
    fit = client.get(f"/v1/projects/{pid}/fits/{r.json()['fit']['id']}", headers=admin).json()
    assert sorted(fit["run_ids"]) == sorted(old_ids[:7] + new_ids)
    dv = fit["domain_versions"]
    assert dv["mode"] == "compatible" and dv["version"] == 2
    assert dv["by_version"]["1"] == {
        "runs": 10,
        "reused": 7,
        "mapped": 0,
        "dropped": 3,
        "reasons": {"version 2: trained on removed domain(s) ['books']": 3},
    }
    assert dv["by_version"]["2"] == {
        "runs": 6,
        "reused": 6,
        "mapped": 0,
        "dropped": 0,
        "reasons": {},
    }
    assert (dv["runs"], dv["reused"], dv["dropped"]) == (16, 13, 3)
    assert "version 1: 10 runs, 7 reused, 0 mapped, 3 dropped" in fit["notes"]

    # only the current version's runs
    r = client.post(
        f"/v1/projects/{pid}/fits",
        json={"estimator": "regmix_linear", "cv_folds": 3, "domain_versions": "current"},
        headers=admin,
    )
    assert r.status_code == 202, r.text
    job = wait_job(client, admin, r.json()["job"]["id"])
    assert job["state"] == "succeeded", job["error"]
    fit = client.get(f"/v1/projects/{pid}/fits/{r.json()['fit']['id']}", headers=admin).json()
    assert sorted(fit["run_ids"]) == sorted(new_ids)
    assert fit["domain_versions"]["by_version"]["1"]["reasons"] == {
        "domain_versions is current": 10
    }
    r = client.post(f"/v1/projects/{pid}/fits", json={"domain_versions": "latest"}, headers=admin)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "domain_versions"


def test_reuse_design_without_count_proposes_fewer_runs_than_a_fresh_swarm(
    client, admin, session, worker
):
    from app.store.models import Recommendation

    pid = _project(client, admin)["id"]
    rec = Recommendation(
        project_id=pid,
        source="mixing_law",
        mixture={"web": 0.6, "code": 0.3, "books": 0.1},
        predicted=2.5,
        constraints={},
        target_scale={},
        binding=[],
        details={},
    )
    session.add(rec)
    session.commit()
    assert (
        _change(client, admin, pid, {"add": [{"name": "papers", "token_count": 2000}]}).status_code
        == 201
    )
    r = client.post(f"/v1/projects/{pid}/suggestions", json={"strategy": "swarm"}, headers=admin)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "count"
    r = client.post(
        f"/v1/projects/{pid}/suggestions",
        json={"strategy": "reuse", "recommendation_id": rec.id},
        headers=admin,
    )
    assert r.status_code == 202, r.text
    params = r.json()["job"]["params"]  # the 202 already says the size it chose
    assert (params["count"], params["fresh_count"]) == (8, 16) and params[
        "count_source"
    ].startswith("default")
    job = wait_job(client, admin, r.json()["job"]["id"])
    assert job["state"] == "succeeded", job["error"]
    res = job["result"]
    # 4 runs per dimension: papers + the frozen virtual domain = 2 dimensions, against 4 domains
    # fresh
    assert (res["count"], res["fresh_count"], res["saved"]) == (8, 16, 8)
    assert res["count_source"] == "default: 4 runs per dimension x 2 dimensions explored"
    assert len(res["run_ids"]) == 8
    planned = client.get(
        f"/v1/projects/{pid}/runs", params={"status": "planned"}, headers=admin
    ).json()["data"]
    assert len(planned) == 8 and {r["domain_version"] for r in planned} == {2}


def test_domain_version_migration_downgrades_and_upgrades(engine, db):
    """Down one step (the columns and the table go), data in, up again: existing projects get a
    version 1 holding their domains and existing runs are on it."""
    from app.store import migrate

    migrate.downgrade(DATABASE_URL, "20261201_domain_group")
    engine.dispose()
    insp = inspect(engine)
    assert "domain_set" not in insp.get_table_names()
    assert "domain_version" not in {c["name"] for c in insp.get_columns("run")}
    assert "domain_versions" not in {c["name"] for c in insp.get_columns("fit")}
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO project (id, name, constraints, created_at, updated_at) "
                "VALUES (41, 'old', '{}', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
            )
        )
        for pos, (name, tokens) in enumerate([("web", 10), ("code", None)]):
            conn.execute(
                text(
                    "INSERT INTO domain "
                    "(project_id, position, name, token_count, token_count_measured) "
                    "VALUES (41, :p, :n, :t, false)"
                ),
                {"p": pos, "n": name, "t": tokens},
            )
        conn.execute(
            text(
                "INSERT INTO run (project_id, mixture, metrics, tags, status, origin, details, "
                "created_at, updated_at) "
                "VALUES (41, '{\"web\": 1.0}', '{}', '[]', 'planned', 'reported', "
                "'{}', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
            )
        )
    migrate.upgrade(DATABASE_URL, "head")
    engine.dispose()
    with engine.connect() as conn:
        assert (
            conn.execute(text("SELECT domain_version FROM project WHERE id = 41")).scalar_one() == 1
        )
        assert (
            conn.execute(text("SELECT domain_version FROM run WHERE project_id = 41")).scalar_one()
            == 1
        )
        version, domains = conn.execute(
            text("SELECT version, domains FROM domain_set WHERE project_id = 41")
        ).one()
    import json

    domains = json.loads(domains) if isinstance(domains, str) else domains
    assert version == 1 and domains == [
        {"name": "web", "token_count": 10, "group": None},
        {"name": "code", "token_count": None, "group": None},
    ]


def test_recommending_from_a_fit_on_an_older_domain_set_is_a_409(client, admin, session):
    from app.store.models import Fit

    pid = _project(client, admin)["id"]
    fit = Fit(
        project_id=pid,
        estimator="regmix_linear",
        params={},
        run_filter={},
        target={"loss": 1.0},
        status="succeeded",
        domains=["web", "code", "books"],
        run_ids=[],
        state={"estimator": "regmix_linear"},
        domain_versions={"mode": "compatible", "version": 1},
    )
    session.add(fit)
    session.commit()
    assert _change(client, admin, pid, {"remove": ["books"]}).status_code == 201
    r = client.post(f"/v1/projects/{pid}/recommendations", json={"fit_id": fit.id}, headers=admin)
    assert r.status_code == 409 and r.json()["errors"][0]["field"] == "fit_id"
    assert "version 1" in r.json()["detail"] and "fit again" in r.json()["detail"]


def test_client_and_cli_change_domains(live_server, admin_token):
    import asyncio

    from typer.testing import CliRunner

    from mixopt.cli import app as cli
    from mixopt.client import AsyncClient, MixoptClient, MixoptError

    c = MixoptClient(live_server, admin_token)
    p = c.create_project("cv", domains=DOMAINS)
    c.add_run(p.id, {"web": 0.5, "code": 0.3, "books": 0.2}, {"loss": 3.0})
    v2 = c.change_domains(
        p.id, split={"web": ["web_news", {"name": "web_blog", "token_count": 10}]}, base_version=1
    )
    assert (
        v2.version == 2
        and v2.current
        and v2.domain_names == ["web_news", "web_blog", "code", "books"]
    )
    with pytest.raises(MixoptError) as exc:
        c.change_domains(p.id, remove=["books"], base_version=1)
    assert exc.value.status == 409 and exc.value.field == "base_version"
    sets = c.domain_sets(p.id)
    assert sets.current_version == 2 and [s.run_count for s in sets.data] == [1, 0]
    assert c.get_project(p.id).domain_version == 2

    async def with_async() -> int:
        async with AsyncClient(live_server, admin_token) as ac:
            v3 = await ac.change_domains(p.id, merge={"lit": ["code", "books"]})
            return (await ac.domain_sets(p.id)).current_version if v3.version == 3 else -1

    assert asyncio.run(with_async()) == 3

    env = {"MIXOPT_URL": live_server, "MIXOPT_TOKEN": admin_token, "COLUMNS": "300"}
    r = CliRunner().invoke(
        cli,
        ["project", "domains", str(p.id), "--add", "papers=500", "--remove", "web_blog"],
        env=env,
    )
    assert r.exit_code == 0, r.output
    assert (
        "4 (current)" in r.output
        and "retired:" in r.output
        and "web_blog" in r.output.split("retired:")[1]
    )
    r = CliRunner().invoke(cli, ["project", "domains", str(p.id), "--split", "papers"], env=env)
    assert r.exit_code == 2 and "NAME=PART,PART" in r.output
    r = CliRunner().invoke(
        cli, ["project", "domains", str(p.id), "--remove", "nope", "--json"], env=env
    )
    assert r.exit_code == 1 and "remove[0]" in r.output
