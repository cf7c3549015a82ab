"""The embedded job runner of ``mixopt serve``: a real Celery worker process and a Celery beat
process, on kombu's SQLAlchemy transport over a SQLite file by default (a laptop needs no
broker server), supervised by a thread of ``serve``:

- the queues are declared once before either starts (the API, the worker and beat creating the
  same ``kombu_queue`` row at once raced: ``UNIQUE constraint failed: kombu_queue.name``);
- housekeeping (beat's stale-job reaper and online ticks, ``MIXOPT_MAINTENANCE_QUEUE``) has its
  own worker process, concurrency 1, consuming only that queue: a pool busy training never
  delays a re-send or an online tick past its interval;
- a worker (or beat) that dies is started again with exponential back-off (1 s doubling to
  60 s, back to 1 s after a child has lived 60 s), and the log says why it died: its exit status
  or the signal that ended it (a SIGKILL nobody here sent is most likely the kernel's
  out-of-memory killer), with the last lines of its log file;
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
from pathlib import Path

from app.core.config import Settings
from app.services.dispatch import declare_queues
from workers.procs import BeatLock, die_with_parent

log = logging.getLogger("mixopt.serve")


def worker_command(
    settings: Settings,
    queues: str = "default,gpu",
    concurrency: int | None = None,
    role: str = "embedded",
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
        f"{role}-{os.getpid()}@%h",
        "--pidfile",
        str(settings.home / f"{'worker' if role == 'embedded' else role}-{os.getpid()}.pid"),
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
        "MIXOPT_MAINTENANCE_QUEUE": settings.maintenance_queue,
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


#: lines of a dead child's log file quoted in the supervisor's warning
LOG_TAIL_LINES = 5


def _tail(path: Path, lines: int = LOG_TAIL_LINES, most: int = 8192) -> list[str]:
    """The last ``lines`` non-empty lines of ``path`` (read from its last ``most`` bytes)."""
    try:
        with open(path, "rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - most))
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return []
    return [ln.rstrip() for ln in text.splitlines() if ln.strip()][-lines:]


def oom_kills() -> int | None:
    """The kernel's count of processes its out-of-memory killer ended since boot (``oom_kill``
    in ``/proc/vmstat``, a container's limit included); None where it is not available."""
    try:
        with open("/proc/vmstat") as f:
            for line in f:
                if line.startswith("oom_kill "):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return None


def death_reason(returncode: int | None, oom_before: int | None = None) -> str:
    """Why a child ended, from its ``Popen.returncode``: the exit status, or the signal's name
    (a negative return code). A SIGKILL (nothing in mixopt sends one to a running child) is
    most likely the kernel's out-of-memory killer: said so, and checked against the kernel's
    ``oom_kill`` count when it was read at the child's start (``oom_before``)."""
    if returncode is None:
        return "still running"
    if returncode >= 0:
        return f"exit status {returncode}"
    try:
        name = signal.Signals(-returncode).name
    except ValueError:
        name = f"signal {-returncode}"
    if -returncode != signal.SIGKILL:
        return f"killed by {name}"
    now = oom_kills()
    if oom_before is None or now is None:
        return f"killed by {name}: probably out of memory (the kernel's OOM killer sends SIGKILL)"
    if now > oom_before:
        return (
            f"killed by {name}: out of memory (the kernel's OOM killer ended {now - oom_before} "
            "process(es) since this one started, /proc/vmstat oom_kill)"
        )
    return f"killed by {name}, not by the kernel's OOM killer (/proc/vmstat oom_kill unchanged)"


class Supervisor:
    """Starts, watches and restarts the embedded worker, the housekeeping worker (unless the
    maintenance queue is one of the worker's) and beat (when this process holds the beat lock)
    from one long-lived thread; :meth:`stop` ends them from that same thread (the
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
        if settings.maintenance_queue not in queues.split(","):
            self.commands["maintenance"] = (
                worker_command(settings, settings.maintenance_queue, 1, role="maintenance"),
                "maintenance.log",
            )
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
        #: (child, pid, reason) of each death seen, oldest first
        self.deaths: list[tuple[str, int, str]] = []
        self._oom_at_start: dict[str, int | None] = {}
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
                    if proc is not None:  # it died: say why, restart after the back-off
                        self._report_death(name, proc, logname, backoff[name])
                        try:
                            os.killpg(proc.pid, signal.SIGKILL)  # its pool, if any is left
                        except (ProcessLookupError, PermissionError):
                            pass
                        self.procs.pop(name)
                        due[name] = now + backoff[name]
                        backoff[name] = min(self.max_backoff_s, backoff[name] * 2)
                        self.restarts[name] += 1
                    if now >= due[name]:
                        self._oom_at_start[name] = oom_kills()
                        self.procs[name] = _spawn(cmd, self.settings, logname)
                        started[name] = now
                self._ready.set()
                self._stop.wait(0.5)
        finally:
            for proc in self.procs.values():
                _stop(proc, self.grace_s)
            if self.lock is not None:
                self.lock.release()

    def _report_death(
        self, name: str, proc: subprocess.Popen, logname: str, backoff: float
    ) -> None:
        reason = death_reason(proc.returncode, self._oom_at_start.get(name))
        self.deaths.append((name, proc.pid, reason))
        tail = _tail(self.settings.home / logname)
        log.warning(
            "embedded %s (pid %d) died: %s; restarting in %.0f s. Last lines of %s:%s",
            name,
            proc.pid,
            reason,
            backoff,
            self.settings.home / logname,
            "".join(f"\n    {ln}" for ln in tail) or " (empty)",
        )

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=self.grace_s + 30)
