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
