"""The embedded job runner: a real Celery worker process (with beat inside it) started by
``mixopt serve``, using kombu's SQLAlchemy transport over a SQLite file, so a laptop needs
no broker server."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from app.core.config import Settings


def worker_command(settings: Settings, queues: str = "default,gpu", concurrency: int | None = None,
                   beat: bool = True) -> list[str]:
    cmd = [sys.executable, "-m", "celery", "-A", "workers.celery_app", "worker", "-Q", queues,
           "-c", str(concurrency or settings.worker_concurrency), "--loglevel", "INFO",
           "-n", f"embedded-{os.getpid()}@%h"]
    if beat:
        cmd += ["-B", "-s", str(settings.home / "celerybeat-schedule")]
    return cmd


def start_worker(settings: Settings, **kw) -> subprocess.Popen:
    settings.home.mkdir(parents=True, exist_ok=True)
    log = open(settings.home / "worker.log", "ab")  # noqa: SIM115 - handed to the child
    # one torch thread per process unless told otherwise: the processes share the cores
    threads = str(settings.torch_threads or 1)
    # its own process group, so stop_worker reaches the pool children and beat as well
    return subprocess.Popen(worker_command(settings, **kw), stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True, env={**os.environ, "MIXOPT_HOME": str(settings.home), "MIXOPT_TORCH_THREADS": threads,
                                 "MIXOPT_DATABASE_URL": settings.database_url,
                                 "MIXOPT_BROKER_URL": settings.broker_url})


def stop_worker(proc: subprocess.Popen, grace_s: float = 20.0) -> None:
    """Stop the embedded worker and everything it forked: SIGTERM (Celery's warm shutdown lets
    running tasks finish), then SIGKILL to the whole group after ``grace_s``. A task killed
    mid-way is not lost: acks_late redelivers it, the reaper re-queues its job, and training
    resumes from its checkpoint."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # pool children that outlived the main process
    except (ProcessLookupError, PermissionError):
        pass
    if proc.poll() is None:
        proc.wait(timeout=10)
