"""The commands docker-compose.yml runs (migrate, worker, beat) start natively, as in the compose file."""

import os
import subprocess
import sys
import time
from pathlib import Path

import yaml

from tests.conftest import DATABASE_URL, REPO


def _compose_commands() -> dict[str, list[str]]:
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    return {name: svc.get("command") for name, svc in compose["services"].items() if svc.get("command")}


def _wait_for(proc: subprocess.Popen, log: Path, needle: str, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace") if log.exists() else ""
        if needle in text:
            return text
        if proc.poll() is not None:
            raise AssertionError(f"exited {proc.returncode}: {text[-2000:]}")
        time.sleep(0.2)
    raise AssertionError(f"{needle!r} not seen: {log.read_text(errors='replace')[-2000:]}")


def test_compose_commands_run_natively(engine, tmp_path):
    cmds = _compose_commands()
    assert cmds["migrate"] == ["mixopt", "db", "upgrade"]
    env = {**os.environ, "MIXOPT_DATABASE_URL": DATABASE_URL, "MIXOPT_HOME": str(tmp_path)}
    bin_dir = Path(sys.executable).parent
    out = subprocess.run([str(bin_dir / "mixopt"), "db", "upgrade"], env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0 and "database at head" in out.stdout, out.stderr
    for name, needle in (("worker", "ready."), ("beat", "beat: Starting")):
        cmd = [str(bin_dir / cmds[name][0]), *cmds[name][1:]]
        log = tmp_path / f"{name}.log"
        with open(log, "w") as fh:
            proc = subprocess.Popen(cmd, env={**env, "CUDA_VISIBLE_DEVICES": ""}, stdout=fh,
                                    stderr=subprocess.STDOUT, cwd=tmp_path)
        try:
            _wait_for(proc, log, needle)
        finally:
            proc.terminate()
            proc.wait(timeout=30)


def _processes_mentioning(text: str) -> list[int]:
    """Pids of live processes whose command line contains ``text``."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = next((ln for ln in (entry / "status").read_text().splitlines() if ln.startswith("State:")), "")
        except OSError:
            continue
        if text in cmdline and "zombie" not in state:
            pids.append(int(entry.name))
    return pids


def test_serve_stops_its_embedded_worker(tmp_path):
    """`mixopt serve` in embedded mode leaves no Celery process behind when it is stopped."""
    import socket

    import httpx

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("MIXOPT_")}
    env |= {"MIXOPT_HOME": str(tmp_path), "CUDA_VISIBLE_DEVICES": ""}
    log = tmp_path / "serve.out"
    with open(log, "w") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "mixopt.cli", "serve", "--port", str(port)], env=env,
                                stdout=fh, stderr=subprocess.STDOUT, cwd=REPO)
    marker = str(tmp_path / "celerybeat-schedule")  # in the embedded worker's command line
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            worker_log = tmp_path / "worker.log"
            if worker_log.exists() and "ready." in worker_log.read_text(errors="replace"):
                break
            assert proc.poll() is None, log.read_text()
            time.sleep(0.3)
        else:
            raise AssertionError("the embedded worker did not start")
        assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200
        assert len(_processes_mentioning(marker)) >= 2  # the worker and its pool
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    deadline = time.monotonic() + 10
    while _processes_mentioning(marker) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _processes_mentioning(marker) == []
