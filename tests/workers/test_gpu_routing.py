"""Two GPU queues, two workers: a swarm routed to a queue is trained by that queue's worker,
on CUDA. Skipped without a GPU (``scripts/gpu_check.sh`` runs it on one; with several GPUs each
worker gets its own through ``CUDA_VISIBLE_DEVICES``)."""

import os

import pytest
import torch

from app.core.config import get_settings
from tests.conftest import _HOME, start_worker_process, wait_job
from tests.factories import ingested_project as _project

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
]


@pytest.fixture
def two_gpu_workers(engine, monkeypatch):
    monkeypatch.setenv("MIXOPT_QUEUES", "default,gpu,gpu-a,gpu-b")
    get_settings.cache_clear()
    n = torch.cuda.device_count()
    procs = {}
    for i, q in enumerate(("gpu-a", "gpu-b")):
        env = {"CUDA_VISIBLE_DEVICES": str(i % n), "MIXOPT_QUEUES": "default,gpu,gpu-a,gpu-b"}
        procs[q] = start_worker_process(q, env, queues=q if i else f"default,{q}")
    yield procs
    for p in procs.values():
        p.terminate()
        p.wait(timeout=30)
    get_settings.cache_clear()


def test_each_queue_is_trained_by_its_worker_on_cuda(two_gpu_workers, client, admin):
    p = _project(client, admin, name="routing")
    jobs = {}
    for q in ("gpu-a", "gpu-b"):
        body = {
            "count": 1,
            "preset": "tiny",
            "train_steps": 30,
            "batch_size": 8,
            "block_size": 64,
            "eval_interval": 15,
            "tag": q,
            "queue": q,
        }
        r = client.post(f"/v1/projects/{p['id']}/swarms", json=body, headers=admin)
        assert r.status_code == 202, r.text
        jobs[q] = (r.json()["jobs"][0]["id"], r.json()["run_ids"][0])
    for q, (job_id, run_id) in jobs.items():
        done = wait_job(client, admin, job_id, timeout=300)
        assert done["state"] == "succeeded", done["error"]
        assert done["queue"] == q
        run = client.get(f"/v1/projects/{p['id']}/runs/{run_id}", headers=admin).json()
        assert run["details"]["device"].startswith("cuda")
    logs = {q: (os.path.join(_HOME, f"worker-{q}.log")) for q in jobs}
    for q, (job_id, _) in jobs.items():
        other = "gpu-b" if q == "gpu-a" else "gpu-a"
        assert job_id in open(logs[q]).read() and job_id not in open(logs[other]).read()
