"""Staged recommendations through the API and a real worker: each phase's mixture covers its
own token budget under its own objective, epoch caps are counted across phases, and the
exports are staged: Levanter's [[step, weights]] list, one OLMo-core config per phase (loaded
and validated by OLMo-core) and one Megatron data-args per phase; bad phases are 422s."""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pytest
import yaml

from tests.conftest import wait_job

NAMES = ["web", "code", "math"]
COUNTS = {"web": 100_000, "code": 100_000, "math": 15_000}
DOMAINS = [
    {
        "name": n,
        "token_count": COUNTS[n],
        "source": {"path": f"/data/raw/{n}.jsonl"},
        "trainer_paths": {
            "olmo-core": [f"/tok/{n}/part-0.npy"],
            "megatron": [f"/tok/{n}_text_document"],
        },
    }
    for n in NAMES
]
CONSTRAINTS = {
    "target_tokens": 110_000,
    "max_epochs": 1.0,
    "sequence_length": 100,
    "global_batch_tokens": 1000,
    "seed": 3,
}
PHASES = [
    {"name": "main", "tokens": 90_000, "objective": {"web_loss": 1.0}},
    {"name": "anneal", "tokens": 20_000, "objective": {"math_loss": 1.0}},
]


def _project(client, headers):
    p = client.post(
        "/v1/projects",
        json={
            "name": "staged",
            "domains": DOMAINS,
            "constraints": CONSTRAINTS,
            "objective": {"web_loss": 1.0, "math_loss": 1.0},
        },
        headers=headers,
    )
    assert p.status_code == 201, p.text
    p = p.json()
    rng = np.random.default_rng(0)
    X = rng.dirichlet(np.ones(3), size=30)
    runs = [
        {
            "mixture": dict(zip(NAMES, map(float, x), strict=True)),
            "metrics": {
                "web_loss": float(2 + np.exp(-2 * x[0] - 0.2 * x[1])),
                "math_loss": float(2 + np.exp(-0.2 * x[0] - 2.5 * x[2])),
            },
        }
        for x in X
    ]
    assert (
        client.post(
            f"/v1/projects/{p['id']}/runs", json={"runs": runs}, headers=headers
        ).status_code
        == 201
    )
    return p


@pytest.mark.parametrize(
    "phases,field",
    [
        ([{"name": "a", "tokens": 10}, {"name": "a", "tokens": 10}], "phases"),
        ([{"name": "a", "tokens": 10, "objective": {"nope": 1.0}}], "phases[0].objective.nope"),
        ([{"name": "a", "tokens": 0}], "phases[0].tokens"),
        ([], "phases"),
    ],
)
def test_bad_phases_refused(client, admin, phases, field):
    p = _project(client, admin)
    r = client.post(
        f"/v1/projects/{p['id']}/recommendations",
        json={"estimator": "regmix_linear", "phases": phases},
        headers=admin,
    )
    assert r.status_code == 422, r.text
    assert field in r.text, r.text


def test_staged_recommendation_and_exports(client, admin, worker, tmp_path):
    p = _project(client, admin)
    r = client.post(
        f"/v1/projects/{p['id']}/recommendations",
        json={"estimator": "regmix_linear", "phases": PHASES, "n_boot": 0, "allow_untrusted": True},
        headers=admin,
    )
    assert r.status_code == 202, r.text
    job = wait_job(client, admin, r.json()["job"]["id"], timeout=300)
    assert job["state"] == "succeeded", job["error"]
    rid = job["result"]["recommendation_id"]
    rec = client.get(f"/v1/projects/{p['id']}/recommendations/{rid}", headers=admin).json()
    staged = rec["details"]["staged"]
    main, anneal = staged["phases"]
    assert [main["tokens"], anneal["tokens"]] == [90_000, 20_000] and anneal[
        "start_tokens"
    ] == 90_000
    assert rec["mixture"] == pytest.approx(main["mixture_by_domain"])
    for ph in (main, anneal):
        assert sum(ph["mixture_by_domain"].values()) == pytest.approx(1.0, abs=1e-6)
    assert main["mixture_by_domain"]["web"] > 0.5 and anneal["mixture_by_domain"]["math"] > 0.5
    for d in NAMES:  # one epoch of each domain over both phases
        used = main["mixture_by_domain"][d] * 90_000 + anneal["mixture_by_domain"][d] * 20_000
        assert used <= COUNTS[d] * 1.0 + 1e-3, d
        assert staged["tokens_used"][d] == pytest.approx(used, abs=1e-3)
    assert "cap:math" in anneal["binding"]

    url = f"/v1/projects/{p['id']}/recommendations/{rid}/export"
    lev = yaml.safe_load(client.get(url, params={"format": "levanter"}, headers=admin).text)
    tw = lev["data"]["train_weights"]
    assert [s for s, _ in tw] == [0, 90]  # 90,000 tokens / 1,000 per step
    assert tw[1][1]["math"] == pytest.approx(anneal["mixture_by_domain"]["math"], abs=1e-6)
    body = client.get(url, headers=admin).json()
    assert [ph["name"] for ph in body["phases"]] == ["main", "anneal"]
    z = client.get(url, params={"format": "olmo-core"}, headers=admin)
    with zipfile.ZipFile(io.BytesIO(z.content)) as zf:
        names = sorted(zf.namelist())
        assert (
            "phase0-main/olmo_core_mixture.yaml" in names
            and "phase1-anneal/olmo_core_mixture.yaml" in names
        )
        configs = [
            yaml.safe_load(zf.read(f"phase{k}-{n}/olmo_core_mixture.yaml"))
            for k, n in enumerate(["main", "anneal"])
        ]
        texts = [
            zf.read(f"phase{k}-{n}/olmo_core_mixture.yaml").decode()
            for k, n in enumerate(["main", "anneal"])
        ]
    assert [c["requested_tokens"] for c in configs] == [90_000, 20_000]
    meg = client.get(url, params={"format": "megatron"}, headers=admin)
    with zipfile.ZipFile(io.BytesIO(meg.content)) as zf:
        assert any(n.startswith("phase1-anneal/") for n in zf.namelist())
    json.dumps(body)
    olmo = pytest.importorskip("olmo_core.data.source_mixture")
    for k, text in enumerate(texts):
        (tmp_path / f"p{k}.yaml").write_text(text)
        config = olmo.SourceMixtureDatasetConfig.from_yaml(str(tmp_path / f"p{k}.yaml"))
        config.validate()
        ratios = {s.source_name: s.target_ratio for s in config.source_list.sources}
        ph = staged["phases"][k]["mixture_by_domain"]
        for name, w in ratios.items():
            assert abs(w - ph[name]) <= 1e-6
