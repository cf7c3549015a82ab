"""Domain experts (Mixture of Data Experts) through the API: uploaded probability arrays are
checked (a refused file is a 422/413 naming the field and stores nothing), a good one is stored
as float16 and listed with its loss, a token reaches only its projects' experts, and experts
trained by a real worker on the fixture corpora store one array per validation domain whose loss
is the trainer's own validation loss."""

from __future__ import annotations

import io
import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import count_rows, start_worker_process, wait_job
from tests.factories import CORPORA, CORPUS_DOMAINS, settings_env

OCTET = {"Content-Type": "application/octet-stream"}


def _project(client, admin, name="experts") -> tuple[dict, dict[str, int]]:
    """A project over the fixture corpora, ingested in this process by the workers' own
    ingestion function; returns it and each domain's validation token count."""
    from workers.tasks.training import ingest_project

    domains = [
        {"name": d, "source": {"path": str(CORPORA / d), "format": "jsonl"}} for d in CORPUS_DOMAINS
    ]
    r = client.post("/v1/projects", json={"name": name, "domains": domains}, headers=admin)
    assert r.status_code == 201, r.text
    data = ingest_project(r.json()["id"])
    return r.json(), {d: int(v.n_val_tokens) for d, v in data.items()}


def _expected(n_val: int, block_size: int = 128, n_windows: int = 64) -> int:
    # the trainer's side of the contract (imports torch; the API does not)
    from mixopt.training.experts import predicted_token_count

    return predicted_token_count(n_val, block_size, n_windows)


def _npy(values) -> bytes:
    buf = io.BytesIO()
    np.save(buf, values)
    return buf.getvalue()


def _files(pid: int) -> list[Path]:
    """Every file under the project's directory of expert files (temporary ones included)."""
    from app.core.config import get_settings

    root = Path(get_settings().home) / "experts" / f"p{pid}"
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def _put(client, headers, pid, domain, val, body, **params):
    return client.put(
        f"/v1/projects/{pid}/experts/{domain}/probs/{val}",
        content=body,
        headers={**headers, **OCTET},
        params=params,
    )


def test_predicted_token_count_agrees_with_the_trainer():
    from app.services.experts import predicted_token_count
    from mixopt.training.experts import predicted_token_count as trainer_count

    for n, block, windows in [(129, 128, 64), (1000, 128, 64), (10**6, 128, 64), (300, 32, 3)]:
        assert predicted_token_count(n, block, windows) == trainer_count(n, block, windows)


def test_refused_uploads_name_the_field_and_store_nothing(client, admin):
    p, n_val = _project(client, admin)
    pid, n = p["id"], _expected(n_val["prose"])
    rng = np.random.default_rng(0)
    good = rng.uniform(0.01, 1.0, n).astype(np.float32)
    nan, zero, over, neg = good.copy(), good.copy(), good.copy(), good.copy()
    nan[5], zero[7], over[3], neg[1] = np.nan, 0.0, 1.5, -0.25
    cases = [
        (_npy(good[:-1]), "shape", str(n)),  # one token short
        (_npy(np.concatenate([good, good[:1]])), "shape", str(n)),
        (_npy(good.reshape(1, -1)), "shape", "1-D"),
        (_npy(nan), "values", "NaN"),
        (_npy(zero), "values", "<= 0"),
        (_npy(neg), "values", "<= 0"),
        (_npy(over), "values", "> 1"),
        (_npy(good.astype(np.float64)), "dtype", "float64"),
        (_npy((good * 100).astype(np.int32)), "dtype", "int32"),
        (_npy(np.array([{"a": 1}], dtype=object)), "dtype", "object"),
        (b"not a numpy file at all", "body", ".npy"),
        (_npy(good)[:-10], "body", "bytes"),  # truncated data
        (b"", "body", ".npy"),
    ]
    for body, field, words in cases:
        r = _put(client, admin, pid, "code", "prose", body)
        assert r.status_code == 422, (field, r.text)
        err = r.json()
        assert err["errors"][0]["field"] == field, err
        assert words in err["detail"], (words, err["detail"])
    # over the size limit: 413 naming the body
    with settings_env(MIXOPT_MAX_EXPERT_PROBS_BYTES="4096"):
        r = _put(client, admin, pid, "code", "prose", _npy(good))
    assert r.status_code == 413 and r.json()["errors"][0]["field"] == "body", r.text
    assert "MIXOPT_MAX_EXPERT_PROBS_BYTES" in r.json()["detail"]
    # unknown domains: 404 naming them
    r = _put(client, admin, pid, "nope", "prose", _npy(good))
    assert r.status_code == 404 and "nope" in r.json()["detail"]
    r = _put(client, admin, pid, "code", "nope", _npy(good))
    assert r.status_code == 404 and "val_domain" in r.json()["detail"]
    # nothing stored: no row, no file, no temporary file
    assert count_rows("expert") == 0
    assert _files(pid) == []
    assert client.get(f"/v1/projects/{pid}/experts", headers=admin).json()["count"] == 0


def test_good_uploads_are_stored_as_float16_and_listed_with_their_losses(client, admin):
    p, n_val = _project(client, admin)
    pid = p["id"]
    rng = np.random.default_rng(1)
    sent = {}
    for i, val in enumerate(CORPUS_DOMAINS):
        values = rng.uniform(0.05, 1.0, _expected(n_val[val])).astype(np.float32)
        if i % 2:
            values = values.astype(np.float16)  # float16 is accepted as sent
        else:
            values[0] = 1e-12  # a legitimate tiny probability: stored clipped, never as 0
        sent[val] = values
        r = _put(client, admin, pid, "code", val, _npy(values))
        assert r.status_code == 200, r.text
        e = r.json()
        last = i == len(CORPUS_DOMAINS) - 1
        assert e["origin"] == "uploaded" and e["status"] == ("succeeded" if last else "partial")
        assert e["missing"] == list(CORPUS_DOMAINS[i + 1 :])
    table = client.get(f"/v1/projects/{pid}/experts", headers=admin).json()
    assert table["count"] == 1 and table["domains"] == list(CORPUS_DOMAINS)
    row = table["data"][0]
    assert row["domain"] == "code" and (row["block_size"], row["n_windows"]) == (128, 64)
    tiny = float(np.finfo(np.float16).smallest_subnormal)
    for val, values in sent.items():
        stored16 = np.maximum(values.astype(np.float16).astype(np.float64), tiny)
        assert row["losses"][val] == pytest.approx(-np.log(stored16).mean(), rel=1e-9)
        meta = row["probs"][val]
        assert meta["shape"] == [len(values)] and meta["dtype"] == "float16"
        assert meta["val_tokens"] == n_val[val] and meta["shard"]
    files = _files(pid)
    assert len(files) == len(CORPUS_DOMAINS) and all(f.suffix == ".npy" for f in files)
    on_disk = [np.load(f) for f in files]
    assert all(a.dtype == np.float16 and a.min() > 0 and a.max() <= 1 for a in on_disk)
    assert client.get(f"/v1/projects/{pid}/experts/code", headers=admin).json()["id"] == row["id"]
    # another expert must be over the same evaluation windows
    r = _put(client, admin, pid, "docs", "code", _npy(sent["code"][:64]), block_size=64)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "block_size", r.text
    # DELETE removes the row and its files
    assert client.delete(f"/v1/projects/{pid}/experts/code", headers=admin).status_code == 204
    assert client.get(f"/v1/projects/{pid}/experts/code", headers=admin).status_code == 404
    assert _files(pid) == [] and count_rows("expert") == 0
    # deleting the project removes its experts' files too
    assert _put(client, admin, pid, "code", "code", _npy(sent["code"])).status_code == 200
    assert len(_files(pid)) == 1
    assert client.delete(f"/v1/projects/{pid}", headers=admin).status_code == 204
    assert _files(pid) == []
    assert client.get(f"/v1/projects/{pid}/experts", headers=admin).status_code == 404


def test_a_token_reaches_only_its_projects_experts(client, admin):
    a, _ = _project(client, admin, name="A")
    b, n_val = _project(client, admin, name="B")
    values = np.full(_expected(n_val["code"]), 0.5, dtype=np.float32)
    assert _put(client, admin, b["id"], "code", "code", _npy(values)).status_code == 200
    r = client.post(
        "/v1/tokens", json={"name": "a", "role": "write", "project_ids": [a["id"]]}, headers=admin
    )
    tok = {"Authorization": f"Bearer {r.json()['token']}"}
    base = f"/v1/projects/{b['id']}/experts"
    assert client.get(base, headers=tok).status_code == 404
    assert client.get(f"{base}/code", headers=tok).status_code == 404
    assert client.delete(f"{base}/code", headers=tok).status_code == 404
    assert _put(client, tok, b["id"], "code", "code", _npy(values)).status_code == 404
    r = client.post(base, json={"train_steps": 5, "preset": "micro"}, headers=tok)
    assert r.status_code == 404
    # B's expert is untouched; A's list is its own (empty)
    assert client.get(base, headers=admin).json()["data"][0]["status"] == "partial"
    assert client.get(f"/v1/projects/{a['id']}/experts", headers=tok).json()["count"] == 0


def test_training_request_validation(client, admin):
    p, _ = _project(client, admin)
    url = f"/v1/projects/{p['id']}/experts"
    r = client.post(url, json={"preset": "micro"}, headers=admin)
    assert r.status_code == 422 and "train_steps" in r.json()["detail"]
    r = client.post(url, json={"preset": "huge", "train_steps": 5}, headers=admin)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "preset"
    r = client.post(url, json={"train_steps": 5, "domains": ["code", "nope"]}, headers=admin)
    assert r.status_code == 422 and "nope" in r.json()["detail"]
    r = client.post(url, json={"swarm": "no-such-swarm"}, headers=admin)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "swarm"
    assert count_rows("expert") == 0 and count_rows("job") == 0


TRAIN = {
    "preset": "micro",
    "train_steps": 12,
    "batch_size": 4,
    "block_size": 32,
    "eval_interval": 6,
    "seed": 2,
}


def test_experts_trained_by_a_worker_store_their_probabilities(client, admin, worker):
    p, n_val = _project(client, admin, name="trained")
    url = f"/v1/projects/{p['id']}/experts"
    r = client.post(url, json=TRAIN, headers=admin)
    assert r.status_code == 202, r.text
    acc = r.json()
    assert [e["domain"] for e in acc["experts"]] == list(CORPUS_DOMAINS)
    assert {e["status"] for e in acc["experts"]} == {"queued"}
    assert acc["job"]["kind"] == "train_experts" and acc["job"]["queue"] == "gpu"
    done = wait_job(client, admin, acc["job"]["id"], timeout=300)
    assert done["state"] == "succeeded", done["error"]
    table = client.get(url, headers=admin).json()
    assert table["count"] == len(CORPUS_DOMAINS)
    for e in table["data"]:
        assert e["status"] == "succeeded" and e["origin"] == "trained" and e["missing"] == []
        assert (e["block_size"], e["n_windows"]) == (32, 16) and e["train_steps"] == 12
        for val in CORPUS_DOMAINS:
            assert e["probs"][val]["shape"] == [_expected(n_val[val], 32, 16)]
            # the one-hot MDE loss is the expert's own validation loss (float16 rounding)
            trainer = e["details"]["trainer_val_losses"][val]
            assert e["losses"][val] == pytest.approx(trainer, abs=2e-3)
        # an expert is best on its own domain's validation set among the experts
        assert e["losses"][e["domain"]] == min(o["losses"][e["domain"]] for o in table["data"]), e[
            "domain"
        ]
    assert len(_files(p["id"])) == len(CORPUS_DOMAINS) ** 2
    # again without replace: 409 naming the domain; with replace: a new job
    r = client.post(url, json={**TRAIN, "domains": ["code"]}, headers=admin)
    assert r.status_code == 409 and "code" in r.json()["detail"]
    # again with a swarm's settings: the swarm's preset, budget, seed and windows, by its tag
    swarm = {**TRAIN, "count": 1, "seed": 5, "train_steps": 8, "block_size": 16, "tag": "s"}
    r = client.post(f"/v1/projects/{p['id']}/swarms", json=swarm, headers=admin)
    assert wait_job(client, admin, r.json()["jobs"][0]["id"], timeout=300)["state"] == "succeeded"
    r = client.post(url, json={"swarm": "s", "domains": ["code"], "replace": True}, headers=admin)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "block_size", r.text
    r = client.post(url, json={"swarm": "s", "replace": True}, headers=admin)
    assert r.status_code == 202, r.text
    assert wait_job(client, admin, r.json()["job"]["id"], timeout=300)["state"] == "succeeded"
    code = client.get(f"{url}/code", headers=admin).json()
    assert (code["seed"], code["train_steps"], code["preset"]) == (5, 8, "micro")
    assert (code["block_size"], code["n_windows"]) == (16, 16)
    assert len(_files(p["id"])) == len(CORPUS_DOMAINS) ** 2


def test_killed_worker_resumes_without_retraining_finished_experts(client, admin, engine):
    p, _ = _project(client, admin, name="killed")
    body = {**TRAIN, "train_steps": 400, "eval_interval": 10, "queue": "killtest"}
    body["domains"] = ["code", "docs"]
    first = start_worker_process("doomed-experts", queues="killtest")
    try:
        acc = client.post(f"/v1/projects/{p['id']}/experts", json=body, headers=admin).json()
        job_id = acc["job"]["id"]
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:  # the first expert stored, the second under way
            job = client.get(f"/v1/jobs/{job_id}", headers=admin).json()
            if job["state"] == "running" and job["progress"] >= 0.55:
                break
            time.sleep(0.2)
        assert job["state"] == "running" and job["progress"] < 1, job
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(timeout=10)
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
    code = client.get(f"/v1/projects/{p['id']}/experts/code", headers=admin).json()
    assert code["status"] == "succeeded"
    second = start_worker_process("rescuer-experts", queues="killtest,maintenance", beat=True)
    try:
        done = wait_job(client, admin, job_id, timeout=300)
    finally:
        os.killpg(second.pid, signal.SIGTERM)
        second.wait(timeout=20)
    assert done["state"] == "succeeded" and done["attempts"] == 2, done
    after = {
        e["domain"]: e
        for e in client.get(f"/v1/projects/{p['id']}/experts", headers=admin).json()["data"]
    }
    # the finished expert was not trained again (same row, same stored files); the other resumed
    assert after["code"]["updated_at"] == code["updated_at"]
    assert after["code"]["probs"] == code["probs"]
    assert after["docs"]["status"] == "succeeded"
    assert after["docs"]["details"]["resumed_from"] is not None


def _mde(probs: dict[str, np.ndarray], w: np.ndarray) -> dict[str, float]:
    """-mean_t log sum_i w_i p_i(t) per validation domain (Belenki et al. 2025), directly."""
    return {v: float(-np.log(w @ p.astype(np.float64)).mean()) for v, p in probs.items()}


def mde_project(client, admin, n_runs: int = 14) -> tuple[int, dict[str, np.ndarray]]:
    """A project with uploaded experts (each sure of its own domain) and ``n_runs`` runs whose
    losses are an affine map of their MDE losses (known truth); returns it and the stored
    probabilities by validation domain."""
    p, n_val = _project(client, admin, name="mde")
    pid, rng = p["id"], np.random.default_rng(3)
    probs = {}  # val domain -> (K, T) as stored (float16)
    for j, val in enumerate(CORPUS_DOMAINS):
        rows = []
        for i, expert in enumerate(CORPUS_DOMAINS):
            lo, hi = (0.3, 0.9) if i == j else (0.01, 0.3)  # an expert knows its own domain
            values = rng.uniform(lo, hi, _expected(n_val[val])).astype(np.float16)
            assert _put(client, admin, pid, expert, val, _npy(values)).status_code == 200
            rows.append(values)
        probs[val] = np.stack(rows)
    for _ in range(n_runs):
        w = rng.dirichlet(np.ones(len(CORPUS_DOMAINS)))
        mde = _mde(probs, w)
        run = {
            "mixture": dict(zip(CORPUS_DOMAINS, w.tolist(), strict=True)),
            "metrics": {f"val_loss/{v}": 0.3 + 0.8 * mde[v] for v in CORPUS_DOMAINS},
        }
        assert client.post(f"/v1/projects/{pid}/runs", json=run, headers=admin).status_code == 201
    return pid, probs


def test_fits_of_mde_estimators_are_handed_the_projects_experts(client, admin, worker):
    pid, probs = mde_project(client, admin)
    r = client.post(f"/v1/projects/{pid}/fits", json={"estimator": "mde"}, headers=admin)
    assert r.status_code == 202, r.text
    job = wait_job(client, admin, r.json()["job"]["id"], timeout=300)
    assert job["state"] == "succeeded", job["error"]
    fit = client.get(f"/v1/projects/{pid}/fits/{job['result']['fit_id']}", headers=admin).json()
    assert fit["fidelity"]["pooled"]["spearman"] > 0.99, fit["fidelity"]["pooled"]
    # predictions and a recommendation from the stored fit are handed the experts again
    w = np.array([0.1, 0.2, 0.3, 0.4])
    truth = _mde(probs, w)
    r = client.post(
        f"/v1/projects/{pid}/fits/{fit['id']}/predict",
        json={"mixtures": [dict(zip(CORPUS_DOMAINS, w.tolist(), strict=True))]},
        headers=admin,
    )
    assert r.status_code == 200, r.text
    got = dict(zip(r.json()["targets"], r.json()["predictions"][0], strict=True))
    for v in CORPUS_DOMAINS:
        assert got[f"val_loss/{v}"] == pytest.approx(0.3 + 0.8 * truth[v], abs=1e-3)
    r = client.post(
        f"/v1/projects/{pid}/recommendations",
        json={"fit_id": fit["id"], "n_boot": 0, "allow_untrusted": True},
        headers=admin,
    )
    assert r.status_code == 202, r.text
    job = wait_job(client, admin, r.json()["job"]["id"], timeout=300)
    assert job["state"] == "succeeded", job["error"]
    # auto weighs the MDE estimators when the project has experts (here they are the truth)
    body = {"estimator": "auto", "cv_folds": 3, "params": {"candidates": ["regmix_linear", "mde"]}}
    r = client.post(f"/v1/projects/{pid}/fits", json=body, headers=admin)
    assert r.status_code == 202, r.text
    job = wait_job(client, admin, r.json()["job"]["id"], timeout=300)
    assert job["state"] == "succeeded", job["error"]
    auto = client.get(f"/v1/projects/{pid}/fits/{job['result']['fit_id']}", headers=admin).json()
    assert "auto chose mde" in auto["notes"], auto["notes"]
    assert client.delete(f"/v1/projects/{pid}/experts/code", headers=admin).status_code == 204
    r = client.post(f"/v1/projects/{pid}/fits", json={"estimator": "mde_linear"}, headers=admin)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "estimator", r.text
    assert "['code']" in r.json()["detail"]
    # the stored mde fit cannot predict without the set it was fitted with: 409 naming it
    r = client.post(
        f"/v1/projects/{pid}/fits/{fit['id']}/predict",
        json={"mixtures": [dict(zip(CORPUS_DOMAINS, w.tolist(), strict=True))]},
        headers=admin,
    )
    assert r.status_code == 409 and "experts" in r.json()["detail"], r.text


def test_experts_of_a_job_cancelled_before_it_started_can_be_trained_again(client, admin):
    p, _ = _project(client, admin, name="cancelled")
    url = f"/v1/projects/{p['id']}/experts"
    body = {**TRAIN, "domains": ["code"], "queue": "faults"}  # no worker consumes it here
    r = client.post(url, json=body, headers=admin)
    assert r.status_code == 202, r.text
    job_id = r.json()["job"]["id"]
    assert client.post(f"/v1/jobs/{job_id}/cancel", headers=admin).status_code in (200, 202)
    assert client.get(f"{url}/code", headers=admin).json()["status"] == "cancelled"
    # no replace needed for a cancelled expert; a queued one is a 409 until its job ends
    r = client.post(url, json=body, headers=admin)
    assert r.status_code == 202, r.text
    assert client.post(url, json=body, headers=admin).status_code == 409
    assert client.delete(f"{url}/code", headers=admin).status_code == 409
    client.post(f"/v1/jobs/{r.json()['job']['id']}/cancel", headers=admin)
    assert client.delete(f"{url}/code", headers=admin).status_code == 204
