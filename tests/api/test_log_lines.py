"""``MIXOPT_LOG_FORMAT=json``: a real ``mixopt serve`` writes each log record once, as one JSON
object per line (it used to write every record twice: plain, then JSON; issue 26, item 5)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter

import httpx

from tests.conftest import REPO


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(tmp_path, fmt: str) -> list[str]:
    port = _port()
    env = {
        **os.environ,
        "MIXOPT_LOG_FORMAT": fmt,
        "MIXOPT_HOME": str(tmp_path),
        "MIXOPT_DATABASE_URL": f"sqlite:///{tmp_path}/api.db",
        "MIXOPT_AUTO_MIGRATE": "true",
    }
    err = open(tmp_path / "stderr.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "mixopt.cli", "serve", "--no-worker", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=err,
        env=env,
        cwd=REPO,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        answer = httpx.get(f"{base}/v1/projects", headers={"X-Request-ID": "one-line-please"})
        assert answer.status_code == 401
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
        err.close()
    text = (tmp_path / "stderr.log").read_text()
    return [ln for ln in text.splitlines() if ln.strip()]


def test_json_mode_writes_each_record_once_as_json(tmp_path):
    lines = _serve(tmp_path, "json")
    records = [json.loads(ln) for ln in lines]  # every line is one JSON object: none plain
    access = [r for r in records if r.get("request_id") == "one-line-please"]
    assert [(r["logger"], r["status"], r["path"]) for r in access] == [
        ("mixopt.access", 401, "/v1/projects")
    ]
    # (alembic's lines are real repeats: serve and the app's start-up both check the schema)
    counts = Counter(
        (r["logger"], r["message"]) for r in records if not r["logger"].startswith("alembic")
    )
    assert {k: n for k, n in counts.items() if n > 1} == {}
    assert any(m.startswith("Started server process") for _, m in counts)
