"""``mixopt health`` against a real ``mixopt serve`` with its embedded worker (which the
worker check used to miss: it pinged ``mixopt@host`` through a broker that cannot broadcast),
``health api`` through ``MIXOPT_URL``, and ``/readyz``'s housekeeping line (issue 26)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from datetime import timedelta

import httpx

from app.store.models import WorkerBeat, utcnow
from tests.conftest import REPO
from tests.factories import settings_env


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cli(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mixopt.cli", "health", *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_health_finds_the_embedded_worker_and_api_reads_mixopt_url(tmp_path):
    port = _port()
    env = {
        **os.environ,
        "MIXOPT_HOME": str(tmp_path),
        "MIXOPT_DATABASE_URL": f"sqlite:///{tmp_path}/api.db",
        "MIXOPT_BROKER_URL": f"sqla+sqlite:///{tmp_path}/broker.db",  # the embedded default
        "MIXOPT_AUTO_MIGRATE": "true",
        "MIXOPT_WORKER_CONCURRENCY": "1",
    }
    env.pop("MIXOPT_URL", None)
    base = f"http://127.0.0.1:{port}"
    serve = subprocess.Popen(
        [sys.executable, "-m", "mixopt.cli", "serve", "--port", str(port)],
        env=env,
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=open(tmp_path / "serve.log", "wb"),  # noqa: SIM115
    )
    try:
        ready: dict = {}
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                r = httpx.get(f"{base}/readyz", timeout=3)
                ready = r.json()
                if r.status_code == 200 and ready.get("maintenance") == "ok":
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        assert ready.get("status") == "ok", (ready, (tmp_path / "serve.log").read_text()[-3000:])
        assert ready["maintenance"] == "ok"

        found = _cli(env, "worker")
        assert found.returncode == 0, found.stderr
        assert "embedded-" in found.stdout and "maintenance-" in found.stdout
        by_name = _cli(env, "worker", "-n", "maintenance-*@%h")
        assert by_name.returncode == 0, by_name.stderr
        assert "embedded-" not in by_name.stdout
        missing = _cli(env, "worker", "-n", "mixopt@%h")
        assert missing.returncode == 1
        assert "no live worker named mixopt@" in missing.stderr and not missing.stdout

        api = _cli({**env, "MIXOPT_URL": base}, "api")
        assert api.returncode == 0, api.stderr
        assert base in api.stdout
        down = _cli({**env, "MIXOPT_URL": "http://127.0.0.1:9"}, "api")
        assert down.returncode == 1 and "127.0.0.1:9" in down.stderr
        # --json: one object on stdout, for scripts
        as_json = json.loads(_cli(env, "worker", "--json").stdout)
        assert as_json["service"] == "worker" and as_json["healthy"] is True
        assert {w["name"].split("-")[0] for w in as_json["workers"]} >= {"embedded", "maintenance"}
        api_json = json.loads(_cli({**env, "MIXOPT_URL": base}, "api", "--json").stdout)
        assert api_json == {"service": "api", "healthy": True, "url": base, "status": 200}
        # --url wins over MIXOPT_URL
        assert (
            _cli({**env, "MIXOPT_URL": "http://127.0.0.1:9"}, "api", "--url", base).returncode == 0
        )
    finally:
        serve.send_signal(signal.SIGINT)
        try:
            serve.wait(timeout=60)
        except subprocess.TimeoutExpired:
            serve.kill()
    # the embedded worker is gone: its heartbeat row is removed at shutdown
    gone = _cli(env, "worker")
    assert gone.returncode == 1 and "no worker heartbeat" in gone.stderr


def _beat(session, name: str, queues: str) -> None:
    session.add(
        WorkerBeat(
            name=name,
            pid=1,
            queues=queues,
            concurrency=1,
            started_at=utcnow(),
            seen_at=utcnow() - timedelta(seconds=1),
        )
    )
    session.commit()


def test_readyz_reports_a_missing_housekeeping_worker_separately(client, session):
    # a queue of this test's own: the suite's session worker (if one runs) consumes the
    # default maintenance queue and would answer for it
    with settings_env(MIXOPT_MAINTENANCE_QUEUE="maintenance-health-test"):
        _beat(session, "w1@host", "default,gpu")
        r = client.get("/readyz")
        assert r.status_code == 200, r.json()  # by default housekeeping is not needed to serve
        assert r.json()["worker"] == "ok"
        assert "MIXOPT_MAINTENANCE_QUEUE" in r.json()["maintenance"]
        with settings_env(MIXOPT_READY_QUEUES="default,maintenance-health-test"):
            r = client.get("/readyz")
            assert r.status_code == 503
            assert "maintenance-health-test" in r.json()["worker"]
        _beat(session, "m1@host", "maintenance-health-test")
        r = client.get("/readyz")
        assert r.status_code == 200 and r.json()["maintenance"] == "ok"
