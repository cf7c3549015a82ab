"""Shared test data builders (``make_project`` stays in conftest, where most tests take it):
a project ingested from the fixture corpora, and settings changed for one block."""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from contextlib import contextmanager

from tests.conftest import REPO, wait_job

#: small JSONL corpora, one folder per domain
CORPORA = REPO / "tests" / "fixtures" / "corpora"
CORPUS_DOMAINS = ("code", "docs", "legal", "prose")


def ingested_project(client, headers: dict[str, str], name: str = "train") -> dict:
    """A project over the fixture corpora, its domains ingested by a worker (token counts
    measured)."""
    domains = [
        {"name": d, "source": {"path": str(CORPORA / d), "format": "jsonl"}} for d in CORPUS_DOMAINS
    ]
    p = client.post("/v1/projects", json={"name": name, "domains": domains}, headers=headers)
    assert p.status_code == 201, p.text
    p = p.json()
    r = client.post(f"/v1/projects/{p['id']}/domains/ingest", headers=headers)
    assert r.status_code == 202, r.text
    job = wait_job(client, headers, r.json()["job"]["id"])
    assert job["state"] == "succeeded", job["error"]
    project = client.get(f"/v1/projects/{p['id']}", headers=headers).json()
    assert all(d["token_count"] and d["token_count_measured"] for d in project["domains"])
    return project


@contextmanager
def settings_env(**env: str) -> Iterator[None]:
    """Run with some MIXOPT_* settings changed (settings are cached: cleared on both sides)."""
    from app.core.config import get_settings

    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    get_settings.cache_clear()
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        get_settings.cache_clear()


WORKFLOW_DOMAINS = ["web", "code", "math"]


def synthetic_runs(n: int, seed: int = 0) -> list[dict]:
    """``n`` runs over :data:`WORKFLOW_DOMAINS` whose losses fall with their own domain's weight
    (seeded): the data of the client and CLI workflow tests."""
    rnd = random.Random(seed)
    out = []
    for _ in range(n):
        w = [rnd.random() + 0.01 for _ in WORKFLOW_DOMAINS]
        mix = {d: x / sum(w) for d, x in zip(WORKFLOW_DOMAINS, w, strict=True)}
        metrics = {
            "val/web": 3.0 - mix["web"] + 0.1 * mix["math"],
            "val/code": 2.5 - mix["code"] + 0.05 * rnd.random(),
        }
        out.append({"mixture": mix, "metrics": metrics})
    return out
