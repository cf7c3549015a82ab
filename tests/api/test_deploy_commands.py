"""The services of docker-compose.yml come up healthy: each service's command runs natively, as
an unprivileged user, from a read-only working directory, with the compose environment, and its
own healthcheck command succeeds. (No Docker daemon here: this is the closest native check.)"""

import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import BROKER_URL, DATABASE_URL, REPO

BIN = Path(sys.executable).parent
#: run as nobody; the interpreter of this sandbox lives under root's 0700 home, so the process
#: keeps only CAP_DAC_READ_SEARCH (read anything, write nothing it does not own)
AS_NOBODY = [
    "setpriv",
    "--reuid=nobody",
    "--regid=nogroup",
    "--clear-groups",
    "--inh-caps=+dac_read_search",
    "--ambient-caps=+dac_read_search",
]


def _compose() -> dict:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())


def _image_cmd() -> list[str]:
    """The Dockerfile's CMD (the api service runs the image's default command)."""
    line = next(
        ln for ln in (REPO / "Dockerfile").read_text().splitlines() if ln.startswith("CMD ")
    )
    return yaml.safe_load(line.removeprefix("CMD "))


def _native(argv: list[str]) -> list[str]:
    exe = BIN / argv[0]
    return [str(exe) if exe.exists() else argv[0], *argv[1:]]


def _healthcheck(test: list[str], port: int) -> list[str]:
    kind, *rest = test
    if kind == "CMD-SHELL":
        # compose turns $$ into $; the shell expands $HOSTNAME (set as in a container)
        return ["sh", "-c", rest[0].replace("$$", "$").replace("8000", str(port))]
    return _native([a.replace("8000", str(port)) for a in rest])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(
    not BROKER_URL.startswith("redis"), reason="the compose services use Redis (Celery's ping)"
)
@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("setpriv") is None, reason="needs root and setpriv"
)
def test_compose_services_come_up_healthy_as_an_unprivileged_user(engine, tmp_path):
    compose = _compose()
    services = compose["services"]
    env_tpl = compose["x-mixopt-env"]
    data = tmp_path / "data"  # the /data volume: owned by the service user
    data.mkdir()
    shutil.chown(data, "nobody", "nogroup")
    workdir = tmp_path / "srv"  # the image's WORKDIR: root-owned, not writable by the service
    workdir.mkdir()
    workdir.chmod(0o555)
    production = not DATABASE_URL.startswith("sqlite")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MIXOPT_")}
    env |= {
        **{k: str(v) for k, v in env_tpl.items()},
        "MIXOPT_ENV": "production" if production else "development",
        "MIXOPT_DATABASE_URL": DATABASE_URL,
        "MIXOPT_BROKER_URL": BROKER_URL,
        "MIXOPT_ADMIN_TOKEN": "mxo_" + "k" * 40,
        "MIXOPT_HOME": str(data),
        "HOME": str(data),
        "PATH": f"{BIN}:{env.get('PATH', '')}",
        "HOSTNAME": socket.gethostname(),
        "CUDA_VISIBLE_DEVICES": "",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    if not production:  # the SQLite pass: the database file lives in the data volume
        env["MIXOPT_DATABASE_URL"] = f"sqlite:///{data}/mixopt.db"
    out = subprocess.run(
        AS_NOBODY + _native(services["migrate"]["command"]),
        env=env,
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert out.returncode == 0 and "database at head" in out.stdout, out.stdout + out.stderr

    port = _free_port()
    commands = {"api": [a if a != "8000" else str(port) for a in _image_cmd()]}
    commands["api"] = [a if a != "0.0.0.0" else "127.0.0.1" for a in commands["api"]]
    for name in ("worker", "gpu-worker", "maintenance", "beat"):
        commands[name] = services[name]["command"]
    procs: dict[str, subprocess.Popen] = {}
    logs = {name: tmp_path / f"{name}.log" for name in commands}
    try:
        for name, argv in commands.items():
            with open(logs[name], "w") as fh:
                procs[name] = subprocess.Popen(
                    AS_NOBODY + _native(argv),
                    env=env,
                    cwd=workdir,
                    stdout=fh,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
        healthy: dict[str, float] = {}
        t0 = time.monotonic()
        while len(healthy) < len(commands) and time.monotonic() - t0 < 150:
            for name in commands:
                if name in healthy:
                    continue
                assert procs[name].poll() is None, (
                    f"{name} exited: {logs[name].read_text()[-3000:]}"
                )
                check = _healthcheck(services[name]["healthcheck"]["test"], port)
                r = subprocess.run(
                    AS_NOBODY + check,
                    env=env,
                    cwd=workdir,
                    capture_output=True,
                    text=True,
                    timeout=60,
                )
                if r.returncode == 0:
                    healthy[name] = time.monotonic() - t0
            time.sleep(1)
        assert set(healthy) == set(commands), {
            n: logs[n].read_text()[-2000:] for n in commands if n not in healthy
        }
        print("healthy after (s):", {k: round(v, 1) for k, v in healthy.items()})
        # the start-up line says which estimators the worker has (a missing LightGBM is never
        # silent)
        assert re.search(
            r"estimators: .*regmix_lgbm.*regmix_lgbm trees: LightGBM", logs["worker"].read_text()
        )
        assert (data / "celerybeat-schedule.dat").exists() or (
            data / "celerybeat-schedule"
        ).exists()
        assert list(workdir.iterdir()) == []
    finally:
        for p in procs.values():
            if p.poll() is None:
                os.killpg(p.pid, 15)
        for p in procs.values():
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, 9)
                p.wait(timeout=10)


def _processes_mentioning(text: str) -> list[int]:
    """Pids of live processes whose command line contains ``text``."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = next(
                (
                    ln
                    for ln in (entry / "status").read_text().splitlines()
                    if ln.startswith("State:")
                ),
                "",
            )
        except OSError:
            continue
        if text in cmdline and "zombie" not in state:
            pids.append(int(entry.name))
    return pids


@pytest.mark.embedded
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
        proc = subprocess.Popen(
            [sys.executable, "-m", "mixopt.cli", "serve", "--port", str(port)],
            env=env,
            stdout=fh,
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )
    marker = str(tmp_path)  # in the embedded worker's (--pidfile) and beat's (-s) command lines
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
        # the API binds after the supervisor has started the worker (serve imports the app
        # then), so a worker that is ready first may meet a port not yet open: wait for it
        status = None
        while status is None and time.monotonic() < deadline:
            try:
                status = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code
            except httpx.ConnectError:
                assert proc.poll() is None, log.read_text()
                time.sleep(0.3)
        assert status == 200, log.read_text()
        assert len(_processes_mentioning(marker)) >= 3  # the worker, its pool and beat
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    deadline = time.monotonic() + 10
    while _processes_mentioning(marker) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _processes_mentioning(marker) == []
