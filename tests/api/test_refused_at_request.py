"""What a job would refuse later is refused at the request (issue 24, item 6): a 422 naming the
field and no job row, instead of a 202 and a job that fails. And the 422s (or 404s) that named no
field now name it: a NUL in a job id, predict weights whose sum overflows, a 64-bit offset."""

from __future__ import annotations

import pytest

from tests.conftest import count_rows, make_project


def _fields(r) -> list[str]:
    return [e["field"] for e in r.json()["errors"]]


def _refused(r, field: str, status: int = 422) -> None:
    assert r.status_code == status, r.text
    assert field in _fields(r), r.text
    assert count_rows("job") == 0


# -- suggestions ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"count": 3, "seed": -1}, "seed"),
        ({"count": 3, "tags": ["a", "b", "a"]}, "tags"),
        ({"count": 3, "tags": [""]}, "tags[0]"),
        ({"count": 3, "tags": ["x" * 101]}, "tags[0]"),
        ({"count": 3, "tags": ["a\x00b"]}, "tags[0]"),
    ],
)
def test_suggestion_fields_the_design_refuses(client, admin, body, field):
    p = make_project(client, admin)
    _refused(client.post(f"/v1/projects/{p['id']}/suggestions", json=body, headers=admin), field)


def test_suggestion_repeated_tags_are_named(client, admin):
    p = make_project(client, admin)
    r = client.post(
        f"/v1/projects/{p['id']}/suggestions",
        json={"count": 3, "tags": ["a", "a"]},
        headers=admin,
    )
    _refused(r, "tags")
    assert "['a']" in r.json()["detail"]


def _counted(client, admin, constraints: dict, counts=(100, 200)) -> dict:
    domains = [{"name": n, "token_count": c} for n, c in zip("ab", counts, strict=True)]
    r = client.post(
        "/v1/projects",
        json={"name": "caps", "domains": domains, "constraints": constraints},
        headers=admin,
    )
    assert r.status_code == 201, r.text
    return r.json()


def test_target_tokens_without_max_epochs_refused_by_suggestions(client, admin):
    """The science's availability caps need token counts, max_epochs and target_tokens together:
    a project with every token count and target_tokens alone cannot design a swarm."""
    p = _counted(client, admin, {"target_tokens": 1000})
    r = client.post(f"/v1/projects/{p['id']}/suggestions", json={"count": 3}, headers=admin)
    _refused(r, "constraints.max_epochs")
    assert "target_tokens" in r.json()["detail"]


def test_target_tokens_without_max_epochs_refused_by_recommendations(client, admin):
    p = make_project(client, admin, domains=())
    r = client.patch(
        f"/v1/projects/{p['id']}",
        json={"domains": [{"name": "a", "token_count": 100}, {"name": "b", "token_count": 50}]},
        headers=admin,
    )
    assert r.status_code == 200, r.text
    r = client.post(
        f"/v1/projects/{p['id']}/recommendations",
        json={"estimator": "gp", "constraints": {"target_tokens": 1000}},
        headers=admin,
    )
    _refused(r, "constraints.max_epochs")


def test_negative_random_state_refused_by_recommendations(client, admin):
    """The optimiser's generator (numpy's default_rng) refuses a negative seed: the job failed."""
    p = make_project(client, admin)
    r = client.post(
        f"/v1/projects/{p['id']}/recommendations",
        json={"estimator": "gp", "random_state": -1},
        headers=admin,
    )
    _refused(r, "random_state")


def test_epoch_caps_without_every_token_count_refused_by_suggestions(client, admin):
    r = client.post(
        "/v1/projects",
        json={
            "name": "caps",
            "domains": [{"name": "a", "token_count": 100}, {"name": "b"}],
            "constraints": {"target_tokens": 1000, "max_epochs": 2},
        },
        headers=admin,
    )
    assert r.status_code == 201, r.text
    r = client.post(f"/v1/projects/{r.json()['id']}/suggestions", json={"count": 3}, headers=admin)
    _refused(r, "constraints")


def test_target_tokens_alone_still_accepted_where_nothing_fails(client, admin):
    """Without every token count the translation leaves target_tokens out: accepted as before;
    with max_epochs too the caps are complete: accepted."""
    p = _counted(client, admin, {"target_tokens": 1000, "max_epochs": 4})
    r = client.post(f"/v1/projects/{p['id']}/suggestions", json={"count": 3}, headers=admin)
    assert r.status_code == 202, r.text
    q = client.post(
        "/v1/projects",
        json={"name": "nocount", "domains": [{"name": "a"}], "constraints": {"target_tokens": 9}},
        headers=admin,
    ).json()
    r = client.post(f"/v1/projects/{q['id']}/suggestions", json={"count": 3}, headers=admin)
    assert r.status_code == 202, r.text


# -- fits after a domain change --------------------------------------------------------------
def _runs(client, admin, pid: int, mixtures: list[dict]) -> None:
    runs = [{"mixture": m, "metrics": {"loss": 3.0 - i / 10}} for i, m in enumerate(mixtures)]
    r = client.post(f"/v1/projects/{pid}/runs", json={"runs": runs}, headers=admin)
    assert r.status_code == 201, r.text


def test_fit_after_removing_the_domain_every_run_uses(client, admin):
    p = make_project(client, admin)
    pid = p["id"]
    _runs(
        client,
        admin,
        pid,
        [{"web": 0.2 + i / 20, "code": 0.4, "math": 0.4 - i / 20} for i in range(5)],
    )
    r = client.post(f"/v1/projects/{pid}/domain-changes", json={"remove": ["web"]}, headers=admin)
    assert r.status_code == 201, r.text
    r = client.post(f"/v1/projects/{pid}/fits", json={"estimator": "gp"}, headers=admin)
    _refused(r, "run_filter")
    assert "5 runs" in r.json()["detail"] and count_rows("fit") == 0


def test_fit_after_removing_a_domain_some_runs_do_not_use(client, admin):
    p = make_project(client, admin)
    pid = p["id"]
    mixtures = [{"web": 0.5, "code": 0.3, "math": 0.2}] + [
        {"code": 0.3 + i / 20, "math": 0.7 - i / 20} for i in range(4)
    ]
    _runs(client, admin, pid, mixtures)
    r = client.post(f"/v1/projects/{pid}/domain-changes", json={"remove": ["web"]}, headers=admin)
    assert r.status_code == 201, r.text
    r = client.post(f"/v1/projects/{pid}/fits", json={"estimator": "gp"}, headers=admin)
    assert r.status_code == 202, r.text


# -- 422s (and 404s) that named no field -----------------------------------------------------
def test_nul_in_a_job_id_is_a_404_naming_job_id(client, admin):
    for r in (
        client.get("/v1/jobs/abc%00def", headers=admin),
        client.post("/v1/jobs/abc%00def/cancel", headers=admin),
        client.get("/v1/jobs/nosuchjob", headers=admin),
    ):
        assert r.status_code == 404, r.text
        assert _fields(r) == ["job_id"], r.text


def _succeeded_fit(session, project_id: int) -> int:
    from app.store.models import Fit

    fit = Fit(
        project_id=project_id,
        estimator="gp",
        params={},
        run_filter={},
        target={"loss": 1.0},
        status="succeeded",
        domains=["web", "code", "math"],
        state={"estimator": "gp"},
    )
    session.add(fit)
    session.commit()
    return fit.id


@pytest.mark.parametrize("normalize", [False, True])
def test_predict_weights_whose_sum_overflows(client, admin, session, normalize):
    p = make_project(client, admin)
    fid = _succeeded_fit(session, p["id"])
    r = client.post(
        f"/v1/projects/{p['id']}/fits/{fid}/predict",
        json={"mixtures": [{"web": 1e308, "code": 1e308}], "normalize": normalize},
        headers=admin,
    )
    assert r.status_code == 422, r.text
    assert _fields(r) == ["mixtures[0]"], r.text


@pytest.mark.parametrize(
    "path", ["/v1/jobs", "/v1/projects", "fits", "recommendations", "validations"]
)
def test_offsets_beyond_64_bits_name_the_offset(client, admin, path):
    p = make_project(client, admin)
    url = path if path.startswith("/") else f"/v1/projects/{p['id']}/{path}"
    for offset in (2**64, 2**63):
        r = client.get(url, params={"offset": offset}, headers=admin)
        assert r.status_code == 422, r.text
        assert _fields(r) == ["query.offset"], r.text


# -- swarms (the design and the trainer refuse what the request let through) -----------------
def _trainable(client, admin, constraints: dict | None = None) -> dict:
    """Domains with a data source and a declared token count: a swarm can be designed (and its
    jobs queued) without ingesting."""
    from tests.factories import CORPORA
    from tests.factories import CORPUS_DOMAINS as DOMAINS

    domains = [
        {"name": d, "source": {"path": str(CORPORA / d), "format": "jsonl"}, "token_count": c}
        for d, c in zip(DOMAINS, (1000, 2000, 3000, 4000), strict=False)
    ]
    r = client.post(
        "/v1/projects",
        json={"name": "swarm", "domains": domains, "constraints": constraints or {}},
        headers=admin,
    )
    assert r.status_code == 201, r.text
    return r.json()


def _swarm_refused(r, field: str) -> None:
    _refused(r, field)
    assert count_rows("run") == 0


_SWARM = {"count": 3, "train_steps": 10}


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        # numpy's default_rng refuses a negative seed: the design said "count", and a fixed swarm
        # (no design) queued jobs whose trainer (the sampler's default_rng) failed
        ({"seed": -1}, "seed"),
        ({"seed": -1, "seeds": "per_run"}, "seed"),
        ({"seed": -1, "strategy": "space_filling"}, "seed"),
        ({"design_seed": -1}, "design_seed"),
        ({"seed": 3, "design_seed": -5, "strategy": "hierarchical"}, "design_seed"),
    ],
)
def test_swarm_negative_seeds_name_their_field(client, admin, extra, field):
    p = _trainable(client, admin)
    r = client.post(f"/v1/projects/{p['id']}/swarms", json={**_SWARM, **extra}, headers=admin)
    _swarm_refused(r, field)


def test_fixed_swarm_negative_seed_is_refused(client, admin):
    p = _trainable(client, admin)
    names = [d["name"] for d in p["domains"]]
    mixtures = [{n: 1 / len(names) for n in names}] * 3
    r = client.post(
        f"/v1/projects/{p['id']}/swarms",
        json={**_SWARM, "strategy": "fixed", "mixtures": mixtures, "seed": -2},
        headers=admin,
    )
    _swarm_refused(r, "seed")


@pytest.mark.parametrize("strategy", ["swarm", "space_filling", "hierarchical"])
def test_swarm_target_tokens_without_max_epochs(client, admin, strategy):
    p = _trainable(client, admin, {"target_tokens": 10_000})
    r = client.post(
        f"/v1/projects/{p['id']}/swarms", json={**_SWARM, "strategy": strategy}, headers=admin
    )
    _swarm_refused(r, "constraints.max_epochs")
    assert "target_tokens" in r.json()["detail"]


def test_swarm_valid_requests_still_accepted(client, admin):
    p = _trainable(client, admin, {"target_tokens": 10_000, "max_epochs": 4})
    url = f"/v1/projects/{p['id']}/swarms"
    r = client.post(url, json={**_SWARM, "seed": 0, "design_seed": 0}, headers=admin)
    assert r.status_code == 202, r.text
    assert count_rows("job") == 3 and count_rows("run") == 3
    r = client.post(url, json={**_SWARM, "seed": 7, "seeds": "per_run"}, headers=admin)
    assert r.status_code == 202, r.text
    assert count_rows("job") == 6 and count_rows("run") == 6


# -- online sessions -------------------------------------------------------------------------
def test_online_session_negative_seed_names_seed(client, admin):
    """The mixer's generator refuses a negative seed: the 422 named ``params`` (the mixer's
    error, taken for a parameter's); now ``seed``, and no session row."""
    p = make_project(client, admin)
    url = f"/v1/projects/{p['id']}/online-sessions"
    for algorithm in ("aioli", "doremi", "odm"):
        r = client.post(url, json={"algorithm": algorithm, "seed": -1}, headers=admin)
        assert r.status_code == 422, r.text
        assert _fields(r) == ["seed"], r.text
    assert count_rows("online_session") == 0 and count_rows("job") == 0
    r = client.post(url, json={"algorithm": "aioli", "seed": 5}, headers=admin)
    assert r.status_code == 201, r.text


# -- fits (and recommend-with-estimator) with fewer runs than the estimator needs -------------
def _n_runs(client, admin, pid: int, n: int, tag: str | None = None) -> None:
    mixtures = [{"web": 0.1 + i / 20, "code": 0.5, "math": 0.4 - i / 20} for i in range(n)]
    runs = [
        {"mixture": m, "metrics": {"loss": 3.0 - i / 10}, **({"tags": [tag]} if tag else {})}
        for i, m in enumerate(mixtures)
    ]
    r = client.post(f"/v1/projects/{pid}/runs", json={"runs": runs}, headers=admin)
    assert r.status_code == 201, r.text


@pytest.mark.parametrize(
    ("n", "body", "need"),
    [
        (1, {"estimator": "gp"}, 2),
        (2, {"estimator": "auto"}, 3),
        (4, {"estimator": "mixing_law"}, 5),  # K + 2 for 3 domains
        (3, {"estimator": "regmix_lgbm"}, 4),
        (4, {"estimator": "auto", "params": {"candidates": ["mixing_law", "law_gp"]}}, 5),
    ],
)
def test_fit_with_fewer_runs_than_the_estimator_needs(client, admin, n, body, need):
    p = make_project(client, admin)
    _n_runs(client, admin, p["id"], n)
    r = client.post(f"/v1/projects/{p['id']}/fits", json=body, headers=admin)
    _refused(r, "run_filter")
    detail = r.json()["detail"]
    assert f"at least {need} runs" in detail and "leaves" in detail, detail
    assert count_rows("fit") == 0


def test_fit_run_filter_leaving_too_few(client, admin):
    p = make_project(client, admin)
    _n_runs(client, admin, p["id"], 4)
    _n_runs(client, admin, p["id"], 1, tag="lone")
    url = f"/v1/projects/{p['id']}/fits"
    r = client.post(url, json={"estimator": "gp", "run_filter": {"tag": "lone"}}, headers=admin)
    _refused(r, "run_filter")
    assert "gp needs at least 2 runs" in r.json()["detail"]
    assert "leaves 1" in r.json()["detail"]
    r = client.post(url, json={"estimator": "gp"}, headers=admin)  # all five
    assert r.status_code == 202, r.text


def test_fit_with_just_enough_runs_is_accepted(client, admin):
    p = make_project(client, admin)
    _n_runs(client, admin, p["id"], 2)
    r = client.post(f"/v1/projects/{p['id']}/fits", json={"estimator": "gp"}, headers=admin)
    assert r.status_code == 202, r.text
    r = client.post(f"/v1/projects/{p['id']}/fits", json={"estimator": "auto"}, headers=admin)
    assert r.status_code == 422 and _fields(r) == ["run_filter"], r.text
    assert count_rows("job") == 1


def test_recommend_with_estimator_and_too_few_runs(client, admin):
    p = make_project(client, admin)
    _n_runs(client, admin, p["id"], 1)
    url = f"/v1/projects/{p['id']}/recommendations"
    r = client.post(url, json={"estimator": "gp"}, headers=admin)
    _refused(r, "estimator")
    assert "gp needs at least 2 runs" in r.json()["detail"] and count_rows("fit") == 0
    _n_runs(client, admin, p["id"], 1)
    r = client.post(url, json={"estimator": "gp"}, headers=admin)
    assert r.status_code == 202, r.text


def test_fit_negative_random_state_names_it(client, admin):
    """auto cross-validates each candidate with the fit's seed (numpy's default_rng): a negative
    one skipped every candidate and the job failed."""
    p = make_project(client, admin)
    _n_runs(client, admin, p["id"], 8)
    url = f"/v1/projects/{p['id']}/fits"
    _refused(client.post(url, json={"random_state": -1}, headers=admin), "random_state")
    r = client.post(url, json={"random_state": 3}, headers=admin)
    assert r.status_code == 202, r.text
