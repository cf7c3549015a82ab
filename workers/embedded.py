"""The embedded job runner of ``mixopt serve``: a real Celery worker process and a Celery beat
process, on kombu's SQLAlchemy transport over a SQLite file by default (a laptop needs no
broker server), supervised by a thread of ``serve``:

- the queues are declared once before either starts (the API, the worker and beat creating the
  same ``kombu_queue`` row at once raced: ``UNIQUE constraint failed: kombu_queue.name``);
- a worker (or beat) that dies is started again with exponential back-off (1 s doubling to
  60 s, back to 1 s after a child has lived 60 s);
- the children die with ``serve`` (``PR_SET_PDEATHSIG``, set in the child before exec; the
  worker's pool processes die with the worker the same way), so a SIGKILLed ``serve`` leaves
  nothing behind;
- beat runs only in the ``serve`` that holds ``<home>/beat.lock``: a second ``serve`` on the same
  home runs a worker but no second beat.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time

from app.core.config import Settings
from app.services.dispatch import declare_queues
from workers.procs import BeatLock, die_with_parent

log = logging.getLogger("mixopt.serve")


def worker_command(
    settings: Settings, queues: str = "default,gpu", concurrency: int | None = None
) -> list[str]:
    return [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "workers.celery_app",
        "worker",
        "-Q",
        queues,
        "-c",
        str(concurrency or settings.worker_concurrency),
        "--loglevel",
        "INFO",
        "-n",
        f"embedded-{os.getpid()}@%h",
        "--pidfile",
        str(settings.home / f"worker-{os.getpid()}.pid"),
    ]


def beat_command(settings: Settings) -> list[str]:
    return [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "workers.celery_app",
        "beat",
        "--loglevel",
        "INFO",
        "-s",
        str(settings.home / "celerybeat-schedule"),
    ]


def _env(settings: Settings) -> dict[str, str]:
    # one torch thread per process unless told otherwise: the processes share the cores
    return {
        **os.environ,
        "MIXOPT_HOME": str(settings.home),
        "MIXOPT_TORCH_THREADS": str(settings.torch_threads or 1),
        "MIXOPT_DATABASE_URL": settings.database_url,
        "MIXOPT_BROKER_URL": settings.broker_url,
    }


def _spawn(cmd: list[str], settings: Settings, logname: str) -> subprocess.Popen:
    parent = os.getpid()
    out = open(settings.home / logname, "ab")  # noqa: SIM115 - handed to the child
    try:
        # its own process group (stop reaches the pool children), and death with its parent
        return subprocess.Popen(
            cmd,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=_env(settings),
            preexec_fn=lambda: die_with_parent(parent),
        )
    finally:
        out.close()


def _stop(proc: subprocess.Popen, grace_s: float) -> None:
    """SIGTERM (Celery's warm shutdown lets running tasks finish), then SIGKILL to the whole
    group after ``grace_s``. A task killed mid-way is not lost: its job's heartbeat stops, the
    reaper sends it again, and training resumes from its checkpoint."""
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


class Supervisor:
    """Starts, watches and restarts the embedded worker (and beat, when this process holds the
    beat lock) from one long-lived thread; :meth:`stop` ends them from that same thread (the
    kernel's parent-death signal follows the thread that forked)."""

    def __init__(
        self,
        settings: Settings,
        queues: str = "default,gpu",
        concurrency: int | None = None,
        beat: bool = True,
        grace_s: float = 20.0,
        max_backoff_s: float = 60.0,
    ):
        self.settings, self.grace_s, self.max_backoff_s = settings, grace_s, max_backoff_s
        self.commands = {"worker": (worker_command(settings, queues, concurrency), "worker.log")}
        self.lock = None
        if beat:
            lock = BeatLock(settings.home)
            if lock.acquire():
                self.lock = lock
                self.commands["beat"] = (beat_command(settings), "beat.log")
            else:
                log.warning(
                    "beat already runs for %s (pid %s holds %s): not starting a second one",
                    settings.home,
                    lock.holder(),
                    lock.path,
                )
        self.procs: dict[str, subprocess.Popen] = {}
        self.restarts: dict[str, int] = {name: 0 for name in self.commands}
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="mixopt-supervisor", daemon=True)

    @property
    def has_beat(self) -> bool:
        return "beat" in self.commands

    def start(self) -> Supervisor:
        self.settings.home.mkdir(parents=True, exist_ok=True)
        for attempt in range(5):
            try:
                declare_queues()
                break
            except (
                Exception
            ) as exc:  # broker not up yet: the supervisor retries the children anyway
                log.warning("declaring queues failed (%s); retrying", exc)
                time.sleep(1 + attempt)
        self._thread.start()
        self._ready.wait(timeout=30)
        return self

    def _run(self) -> None:
        backoff = dict.fromkeys(self.commands, 1.0)
        started: dict[str, float] = {}
        due: dict[str, float] = dict.fromkeys(self.commands, 0.0)
        try:
            while not self._stop.is_set():
                now = time.monotonic()
                for name, (cmd, logname) in self.commands.items():
                    proc = self.procs.get(name)
                    if proc is not None and proc.poll() is None:
                        if now - started[name] > 60:
                            backoff[name] = 1.0
                        continue
                    if proc is not None:  # it died: restart after the back-off
                        log.warning(
                            "embedded %s (pid %d) exited with %s; restarting in %.0f s",
                            name,
                            proc.pid,
                            proc.returncode,
                            backoff[name],
                        )
                        try:
                            os.killpg(proc.pid, signal.SIGKILL)  # its pool, if any is left
                        except (ProcessLookupError, PermissionError):
                            pass
                        self.procs.pop(name)
                        due[name] = now + backoff[name]
                        backoff[name] = min(self.max_backoff_s, backoff[name] * 2)
                        self.restarts[name] += 1
                    if now >= due[name]:
                        self.procs[name] = _spawn(cmd, self.settings, logname)
                        started[name] = now
                self._ready.set()
                self._stop.wait(0.5)
        finally:
            for proc in self.procs.values():
                _stop(proc, self.grace_s)
            if self.lock is not None:
                self.lock.release()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=self.grace_s + 30)
