"""The export routes: any mixture (recommendation, baseline, online session) in every format,
a 422 naming what the project lacks, zips for multi-file formats, other tokens' projects 404."""

from __future__ import annotations

import io
import json
import zipfile

import yaml

from app.services import exports

DOMAINS = [
    {
        "name": "web",
        "token_count": 4_000_000,
        "documents": 4000,
        "source": {"path": "/data/raw/web.jsonl"},
        "trainer_paths": {
            "olmo-core": ["/tok/web/part-0.npy"],
            "megatron": ["/tok/web_text_document"],
        },
    },
    {
        "name": "co'de $(id)",
        "token_count": 1_000_000,
        "documents": 10_000,
        "source": {"path": "/data/raw/code.jsonl"},
        "trainer_paths": {
            "olmo-core": ["/tok/code/part-0.npy"],
            "megatron": ["/tok/code`id`_text_document"],
        },
    },
]
CONSTRAINTS = {
    "target_tokens": 2_000_000,
    "max_epochs": 2.0,
    "sequence_length": 1024,
    "global_batch_tokens": 1024 * 16,
    "seed": 17,
}


def _project(client, headers, **extra):
    body = {"name": "exports", "domains": DOMAINS, "constraints": CONSTRAINTS, **extra}
    r = client.post("/v1/projects", json=body, headers=headers)
    assert r.status_code == 201, r.text
    return r.json()


def _recommendation(session, project_id: int, mixture: dict, **kw) -> int:
    from app.store.models import Recommendation

    rec = Recommendation(
        project_id=project_id,
        source="regmix_lgbm",
        mixture=mixture,
        predicted=2.5,
        constraints={},
        target_scale=kw.pop("target_scale", {}),
        binding=[],
        details=kw.pop("details", {}),
        **kw,
    )
    session.add(rec)
    session.commit()
    return rec.id


def test_project_keeps_trainer_paths_and_documents(client, admin):
    p = _project(client, admin)
    got = client.get(f"/v1/projects/{p['id']}", headers=admin).json()
    assert got["domains"][1]["trainer_paths"]["megatron"] == ["/tok/code`id`_text_document"]
    assert got["domains"][0]["documents"] == 4000 and got["constraints"]["seed"] == 17
    bad = client.post(
        "/v1/projects",
        json={"name": "x", "domains": [{"name": "a", "trainer_paths": {"deepspeed": ["/x"]}}]},
        headers=admin,
    )
    assert bad.status_code == 422 and "trainer_paths" in bad.json()["detail"]


def test_recommendation_export_every_format(client, admin, session):
    p = _project(client, admin)
    rid = _recommendation(
        session,
        p["id"],
        {"web": 0.7, "co'de $(id)": 0.3},
        target_scale={"model_params": 10**9, "train_tokens": 3_000_000},
    )
    url = f"/v1/projects/{p['id']}/recommendations/{rid}/export"
    for fmt in exports.FORMATS:
        r = client.get(url, params={"format": fmt}, headers=admin)
        assert r.status_code == 200, (fmt, r.text)
        assert r.headers["content-disposition"].startswith("attachment; filename=")
    body = client.get(url, headers=admin).json()
    assert body["mixture"] == {"web": 0.7, "co'de $(id)": 0.3}
    assert body["origin"]["recommendation_id"] == rid and body["scale"]["model_params"] == 10**9
    # multi-file formats: a zip, or one part
    z = client.get(url, params={"format": "olmo-core"}, headers=admin)
    assert z.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(z.content)) as zf:
        assert sorted(zf.namelist()) == ["olmo_core_mixture.py", "olmo_core_mixture.yaml"]
        config = yaml.safe_load(zf.read("olmo_core_mixture.yaml"))
    assert (
        config["requested_tokens"] == 3_000_000
    )  # the recommendation's scale wins over the project's budget
    assert config["seed"] == 17 and config["global_batch_size"] == 16384
    part = client.get(url, params={"format": "megatron", "part": "data_args.txt"}, headers=admin)
    assert (
        part.status_code == 200
        and part.text == "0.7 /tok/web_text_document 0.3 /tok/code`id`_text_document\n"
    )
    assert (
        client.get(url, params={"format": "megatron", "part": "nope"}, headers=admin).status_code
        == 404
    )
    assert client.get(url, params={"format": "deepspeed"}, headers=admin).status_code == 422
    # the same bytes from the dashboard button
    client.cookies.set("mixopt_token", admin["Authorization"].removeprefix("Bearer "))
    dash = client.get(
        f"/dashboard/projects/{p['id']}/mixtures/{rid}/export", params={"format": "hf"}
    )
    api = client.get(url, params={"format": "hf"}, headers=admin)
    assert dash.status_code == 200 and dash.content == api.content


def test_missing_requirements_are_422_naming_the_field(client, admin, session):
    p = _project(client, admin, constraints={"target_tokens": 2_000_000})
    rid = _recommendation(session, p["id"], {"web": 0.5, "co'de $(id)": 0.5})
    url = f"/v1/projects/{p['id']}/recommendations/{rid}/export"
    r = client.get(url, params={"format": "olmo-core"}, headers=admin)
    assert r.status_code == 422 and "constraints.sequence_length" in r.json()["detail"]
    r = client.get(url, params={"format": "levanter"}, headers=admin)
    assert r.status_code == 200  # the raw source paths are what Levanter tokenises
    q = client.post(
        "/v1/projects",
        json={"name": "bare", "domains": [{"name": "a"}, {"name": "b"}]},
        headers=admin,
    ).json()
    r = client.get(
        f"/v1/projects/{q['id']}/baselines/uniform/export",
        params={"format": "megatron"},
        headers=admin,
    )
    assert (
        r.status_code == 422
        and r.json()["errors"][0]["field"] == "domains[0].trainer_paths.megatron"
    )
    r = client.get(
        f"/v1/projects/{q['id']}/baselines/uniform/export", params={"format": "hf"}, headers=admin
    )
    assert r.status_code == 422 and "token budget" in r.json()["detail"]
    assert (
        client.get(f"/v1/projects/{q['id']}/baselines/nope/export", headers=admin).status_code
        == 404
    )


def test_baseline_and_online_session_exports(client, admin):
    p = _project(client, admin)
    r = client.get(
        f"/v1/projects/{p['id']}/baselines/natural/export",
        params={"format": "olmix"},
        headers=admin,
    )
    assert r.status_code == 200, r.text
    assert json.loads(r.text) == [
        {"domain": "web", "weight": 0.8},
        {"domain": "co'de $(id)", "weight": 0.2},
    ]
    s = client.post(
        f"/v1/projects/{p['id']}/online-sessions", json={"algorithm": "odm"}, headers=admin
    )
    assert s.status_code == 201, s.text
    url = f"/v1/projects/{p['id']}/online-sessions/{s.json()['id']}/export"
    current = client.get(url, params={"format": "json"}, headers=admin).json()
    assert current["origin"]["algorithm"] == "odm" and current["mixture"] == {
        "web": 0.5,
        "co'de $(id)": 0.5,
    }
    final = client.get(url, params={"format": "json", "weights": "final"}, headers=admin)
    assert final.status_code == 200 and abs(sum(final.json()["mixture"].values()) - 1) < 1e-9
    staged = client.get(url, params={"format": "levanter", "weights": "trajectory"}, headers=admin)
    stages = yaml.safe_load(staged.text)["data"]["train_weights"]
    assert stages[0][0] == 0 and stages[0][1] == {"web": 0.5, "co'de $(id)": 0.5}
    # the dashboard's online page links to the same route, which the login cookie opens
    client.cookies.set("mixopt_token", admin["Authorization"].removeprefix("Bearer "))
    page = client.get(f"/dashboard/projects/{p['id']}/online?session={s.json()['id']}").text
    link = f"{url}?format=levanter&amp;weights=trajectory"
    assert link in page
    assert client.get(link.replace("&amp;", "&")).content == staged.content


def test_other_tokens_projects_are_404(client, admin, session):
    p = _project(client, admin)
    rid = _recommendation(session, p["id"], {"web": 0.5, "co'de $(id)": 0.5})
    other = client.post(
        "/v1/tokens", json={"name": "other", "role": "write", "project_ids": []}, headers=admin
    )
    headers = {"Authorization": f"Bearer {other.json()['token']}"}
    for url in (
        f"/v1/projects/{p['id']}/recommendations/{rid}/export",
        f"/v1/projects/{p['id']}/baselines/natural/export",
    ):
        assert client.get(url, headers=headers).status_code == 404
    mine = client.post(
        "/v1/projects", json={"name": "mine", "domains": [{"name": "a"}]}, headers=headers
    ).json()
    # an id from another project is not found through one's own project either
    assert (
        client.get(
            f"/v1/projects/{mine['id']}/recommendations/{rid}/export", headers=headers
        ).status_code
        == 404
    )


def test_a_worker_made_recommendation_loads_in_olmo_core(client, admin, worker, tmp_path):
    """End to end: RegMix runs imported, a recommendation computed by a real worker at a target
    scale, exported and loaded by OLMo-core with that scale's token budget."""
    import pytest

    pytest.importorskip(
        "olmo_core", reason="ai2-olmo-core is a test dependency (pip install -e '.[test]')"
    )
    from olmo_core.data.source_mixture import SourceMixtureDatasetConfig

    from tests.conftest import REGMIX_DIR, wait_job

    p = client.post(
        "/v1/projects",
        json={"name": "pile", "objective": {"metric/the_pile_pile_cc_val_loss": 1.0}},
        headers=admin,
    ).json()
    files = {
        "mixtures": ("m.csv", (REGMIX_DIR / "train_mixture_1m.csv").read_bytes(), "text/csv"),
        "metrics": ("l.csv", (REGMIX_DIR / "train_pile_loss_1m.csv").read_bytes(), "text/csv"),
    }
    assert (
        client.post(
            f"/v1/projects/{p['id']}/runs/import",
            files=files,
            headers=admin,
            params={"model_params": 1_000_000, "train_tokens": 10**9},
        ).status_code
        == 201
    )
    names = [
        d["name"] for d in client.get(f"/v1/projects/{p['id']}", headers=admin).json()["domains"]
    ]
    domains = [{"name": n, "trainer_paths": {"olmo-core": [f"/tok/{n}/part-0.npy"]}} for n in names]
    r = client.patch(
        f"/v1/projects/{p['id']}",
        json={
            "domains": domains,
            "constraints": {"sequence_length": 2048, "global_batch_tokens": 2048 * 512, "seed": 42},
        },
        headers=admin,
    )
    assert r.status_code == 200, r.text
    r = client.post(
        f"/v1/projects/{p['id']}/recommendations",
        json={
            "estimator": "regmix_linear",
            "target_scale": {"model_params": 1_000_000, "train_tokens": 10**9},
        },
        headers=admin,
    )
    assert r.status_code == 202, r.text
    job = wait_job(client, admin, r.json()["job"]["id"], timeout=300)
    assert job["state"] == "succeeded", job["error"]
    rid = job["result"]["recommendation_id"]
    rec = client.get(f"/v1/projects/{p['id']}/recommendations/{rid}", headers=admin).json()
    part = client.get(
        f"/v1/projects/{p['id']}/recommendations/{rid}/export",
        params={"format": "olmo-core", "part": "olmo_core_mixture.yaml"},
        headers=admin,
    )
    assert part.status_code == 200, part.text
    (tmp_path / "mix.yaml").write_text(part.text)
    config = SourceMixtureDatasetConfig.from_yaml(str(tmp_path / "mix.yaml"))
    config.validate()
    assert config.requested_tokens == 10**9 and config.seed == 42  # the recommendation's scale
    ratios = {s.source_name: s.target_ratio for s in config.source_list.sources}
    for name, w in rec["mixture"].items():
        assert abs(ratios.get(name, 0.0) - w) <= 1e-6, name


def _fit(session, project_id: int, **kw) -> int:
    from app.store.models import Fit

    fit = Fit(project_id=project_id, estimator="regmix_linear", status="succeeded", **kw)
    session.add(fit)
    session.commit()
    return fit.id


def test_the_budget_is_the_target_never_the_proxies(client, admin, session, tmp_path):
    """Issue 26: a plain recommendation from a fit at the proxies' scale (1e9 tokens) on a project
    with target_tokens 4e6 exported the proxies' budget, and OLMo-core refused to build it
    ("Insufficient tokens for source"). The budget is what was asked for, else target_tokens."""
    import numpy as np
    import pytest

    pytest.importorskip("olmo_core", reason="ai2-olmo-core is a test dependency")
    from olmo_core.data.source_mixture import SourceMixtureDatasetConfig

    paths = {}
    for name, tokens in (("web", 3_200_000), ("code", 1_600_000)):
        paths[name] = tmp_path / f"{name}.npy"
        np.zeros(tokens, dtype=np.uint16).tofile(paths[name])
    domains = [
        {"name": n, "token_count": 4_000_000, "trainer_paths": {"olmo-core": [str(p)]}}
        for n, p in paths.items()
    ]
    cons = {"target_tokens": 4_000_000, "sequence_length": 1024, "global_batch_tokens": 16384}
    p = _project(client, admin, domains=domains, constraints={**cons, "seed": 1})
    proxies = {"model_params": 1_000_000, "train_tokens": 10**9}
    plain_fit = _fit(session, p["id"], scale=proxies)
    target_fit = _fit(session, p["id"], scale=proxies, target_scale={"train_tokens": 5_000_000})
    mixture = {"web": 0.7, "code": 0.3}
    cases = [  # (fit, details, the budget exported)
        (plain_fit, {}, 4_000_000),  # made before requested_scale was stored: the fit says
        (plain_fit, {"requested_scale": None}, 4_000_000),  # nothing asked for
        (plain_fit, {"requested_scale": {"train_tokens": 3_000_000}}, 3_000_000),  # asked for
        (target_fit, {}, 5_000_000),  # the fit was made for a target: the recommendation's
    ]
    for fit_id, details, budget in cases:
        rid = _recommendation(
            session, p["id"], mixture, target_scale=proxies, fit_id=fit_id, details=details
        )
        r = client.get(
            f"/v1/projects/{p['id']}/recommendations/{rid}/export",
            params={"format": "olmo-core", "part": "olmo_core_mixture.yaml"},
            headers=admin,
        )
        assert r.status_code == 200, r.text
        assert yaml.safe_load(r.text)["requested_tokens"] == budget, details
        body = client.get(
            f"/v1/projects/{p['id']}/recommendations/{rid}/export", headers=admin
        ).json()
        assert body["origin"]["answers_at"] == proxies  # the scale its prediction is for
        if budget == 4_000_000:  # the case builds in OLMo-core
            (tmp_path / "mix.yaml").write_text(r.text)
            config = SourceMixtureDatasetConfig.from_yaml(str(tmp_path / "mix.yaml"))
            built = config.build(npdtype=np.uint16, sequence_length=1024)
            got = {s.name: sum(x.tokens for x in s.path_tokens) for s in built.sources}
            assert got["web"] / sum(got.values()) == pytest.approx(0.7, abs=0.005)


def test_megatron_export_says_caps_are_not_enforced(client, admin, session):
    p = _project(client, admin)
    rid = _recommendation(session, p["id"], {"web": 0.2, "co'de $(id)": 0.8})
    url = f"/v1/projects/{p['id']}/recommendations/{rid}/export"
    z = client.get(url, params={"format": "megatron"}, headers=admin)
    with zipfile.ZipFile(io.BytesIO(z.content)) as zf:
        notes = zf.read("MEGATRON_NOTES.txt").decode()
    # 0.8 x 2,000,000 / 1,000,000 = 1.6 epochs of code, 0.1 of web; the cap is 2
    assert "does not enforce epoch caps" in notes and "1.6 epochs, cap 2" in notes
    part = client.get(url, params={"format": "megatron", "part": "data_args.txt"}, headers=admin)
    header = part.headers["x-mixopt-notes"]
    assert "does not enforce epoch caps" in header and "co'de $(id)" in header
    assert (
        client.get(url, params={"format": "olmo-core"}, headers=admin).headers.get("x-mixopt-notes")
        is None
    )  # OLMo-core enforces them


def test_dashboard_flags_a_staged_recommendation_by_what_it_reads(client, admin, session):
    """Issue 26: the dashboard flagged a staged recommendation at its first phase's mixture over
    the whole budget; it reads each phase's mixture for the phase's tokens (the exports' figure,
    the science's epochs_used)."""
    p = _project(
        client,
        admin,
        domains=[{"name": "web", "token_count": 4_000_000}, {"name": "code", "token_count": 10**6}],
        constraints={"target_tokens": 2_000_000, "max_epochs": 1.0},
    )

    def staged(anneal_code: float) -> int:
        phases = [
            {"name": "main", "tokens": 400_000, "start_tokens": 0,
             "mixture_by_domain": {"web": 0.0, "code": 1.0}},
            {"name": "anneal", "tokens": 1_600_000, "start_tokens": 400_000,
             "mixture_by_domain": {"web": 1 - anneal_code, "code": anneal_code}},
        ]  # fmt: skip
        return _recommendation(
            session, p["id"], phases[0]["mixture_by_domain"], details={"staged": {"phases": phases}}
        )

    within = staged(0.25)  # code: 0.4M + 0.4M = 0.8 epochs (its first phase alone: 2.0 epochs)
    over = staged(0.5)  # code: 0.4M + 0.8M = 1.2 epochs
    from app.dashboard import views
    from app.store.models import Project, Recommendation

    project = session.get(Project, p["id"])
    for rid, want in ((within, []), (over, ["1.20 epochs over 2 phases"])):
        got = views.recommendation_warnings(project, session.get(Recommendation, rid), {})
        assert len(got) == len(want) and all(w in g for w, g in zip(want, got, strict=True))


def test_a_worker_made_plain_recommendation_exports_the_project_budget(client, admin, worker):
    """End to end, the issue's path: runs at 1e9 tokens, a fit at their scale (no target), a
    plain recommendation from it: the export's budget is the project's target_tokens (4e6), not
    the runs' 1e9."""
    from tests.conftest import REGMIX_DIR, wait_job

    p = client.post(
        "/v1/projects",
        json={"name": "pile", "objective": {"metric/the_pile_pile_cc_val_loss": 1.0}},
        headers=admin,
    ).json()
    files = {
        "mixtures": ("m.csv", (REGMIX_DIR / "train_mixture_1m.csv").read_bytes(), "text/csv"),
        "metrics": ("l.csv", (REGMIX_DIR / "train_pile_loss_1m.csv").read_bytes(), "text/csv"),
    }
    r = client.post(
        f"/v1/projects/{p['id']}/runs/import",
        files=files,
        headers=admin,
        params={"model_params": 1_000_000, "train_tokens": 10**9},
    )
    assert r.status_code == 201, r.text
    names = [
        d["name"] for d in client.get(f"/v1/projects/{p['id']}", headers=admin).json()["domains"]
    ]
    r = client.patch(
        f"/v1/projects/{p['id']}",
        json={
            "domains": [
                {"name": n, "trainer_paths": {"olmo-core": [f"/t/{n}.npy"]}} for n in names
            ],
            "constraints": {
                "target_tokens": 4_000_000,
                "sequence_length": 1024,
                "global_batch_tokens": 16384,
                "seed": 1,
            },
        },
        headers=admin,
    )
    assert r.status_code == 200, r.text
    r = client.post(
        f"/v1/projects/{p['id']}/fits", json={"estimator": "regmix_linear"}, headers=admin
    )
    assert r.status_code == 202, r.text
    job = wait_job(client, admin, r.json()["job"]["id"], timeout=300)
    assert job["state"] == "succeeded", job["error"]
    fit_id = job["result"]["fit_id"]
    r = client.post(
        f"/v1/projects/{p['id']}/recommendations",
        json={"fit_id": fit_id, "allow_untrusted": True},
        headers=admin,
    )
    assert r.status_code == 202, r.text
    job = wait_job(client, admin, r.json()["job"]["id"], timeout=300)
    assert job["state"] == "succeeded", job["error"]
    rid = job["result"]["recommendation_id"]
    rec = client.get(f"/v1/projects/{p['id']}/recommendations/{rid}", headers=admin).json()
    assert rec["target_scale"]["train_tokens"] == 10**9  # the scale its answer is for
    part = client.get(
        f"/v1/projects/{p['id']}/recommendations/{rid}/export",
        params={"format": "olmo-core", "part": "olmo_core_mixture.yaml"},
        headers=admin,
    )
    assert part.status_code == 200, part.text
    assert yaml.safe_load(part.text)["requested_tokens"] == 4_000_000


def test_notes_header_is_one_ascii_line_within_its_limit():
    bundle = exports.Bundle(
        {}, ["Megatron does not enforce\nepoch caps:\n  'naïve 文本': 2.5 epochs"]
    )
    header = exports.notes_header(bundle)
    assert header.isascii() and "\n" not in header
    assert "'na\\xefve \\u6587\\u672c': 2.5 epochs" in header
    long = exports.notes_header(exports.Bundle({}, ["x " * 5000]), limit=300)
    assert len(long) <= 300 and long.endswith("(the rest in the notes file)")
