"""The Celery app of the workers: JSON only, late acks, prefetch 1, time limits, explicit
queues (``gpu`` for training, ``default`` for fits and the rest).

Process hygiene, wired through Celery's signals:

- ``worker_init`` (main process, before the pool forks): BLAS/OpenMP threads per process =
  ``MIXOPT_WORKER_THREADS`` or the cores this process may use // the pool's concurrency (at least
  1), set in the environment (libraries loaded later read it) and through threadpoolctl (those
  already loaded); an ``OMP_NUM_THREADS`` set by hand wins. A start-up line lists the estimators
  and says which backend RegMix's trees use, so a missing LightGBM is never silent.
- ``worker_ready``: a thread writes this worker's row in ``worker_beat`` every heartbeat
  (``/readyz`` reads it); removed at shutdown.
- ``worker_process_init`` (each pool process): dies with the worker main process
  (``PR_SET_PDEATHSIG``), drops database connections inherited through fork, applies the thread
  limit again.
"""

from __future__ import annotations

import logging
import os
import threading

from celery import Celery, signals
from celery.beat import PersistentScheduler

from app.core.celery_config import ONLINE_TICK, REAP_STALE_JOBS, celery_config
from app.core.config import get_settings
from app.store.db import get_engine, session_scope
from app.store.models import WorkerBeat, utcnow
from workers import logs as _logs  # noqa: F401 - JSON logs and job/request ids (MIXOPT_LOG_FORMAT)
from workers import procs
from workers.tasks import common

log = logging.getLogger("mixopt.worker")

#: every task module (one per concept); a new one is added here
TASK_MODULES = [
    "workers.tasks.fits",
    "workers.tasks.recommendations",
    "workers.tasks.suggestions",
    "workers.tasks.maintenance",
    "workers.tasks.online",
    "workers.tasks.training",
    "workers.tasks.validations",
    "workers.tasks.experts",
]
celery_app = Celery("mixopt", include=TASK_MODULES)
celery_app.conf.update(celery_config(get_settings()))


def _housekeeping(task: str, every: float) -> dict:
    # a tick not started within its own interval expires: the next one is already due, and while
    # every pool process trains, a backlog of stale ticks would otherwise run one by one before
    # the next fit (measured: 14 s of reaper and online ticks after a 6-minute swarm)
    return {
        "task": task,
        "schedule": every,
        "options": {"queue": get_settings().maintenance_queue, "expires": max(1.0, every)},
    }


celery_app.conf.beat_schedule = {
    "reap-stale-jobs": _housekeeping(REAP_STALE_JOBS, float(get_settings().reap_interval_seconds)),
    "online-tick": _housekeeping(ONLINE_TICK, float(get_settings().online_tick_seconds)),
}
celery_app.conf.beat_scheduler = "workers.celery_app:Scheduler"


def _poll_sqla_broker(every: float) -> None:
    """The embedded broker (kombu's SQLAlchemy transport) looks for messages every ``every``
    seconds when its queues are empty, instead of kombu's 1 s: with one-second polls a pool
    process waited 1-3 s for its next training run. The transport hands every transport option
    to ``create_engine``, so the interval cannot go through ``broker_transport_options``; it is
    the transport class's ``polling_interval``."""
    from kombu.transport import sqlalchemy as kombu_sqla

    kombu_sqla.Transport.polling_interval = every


if get_settings().broker_url.startswith("sqla+"):
    _poll_sqla_broker(get_settings().broker_poll_seconds)

THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def threads_per_process(concurrency: int, cores: int | None = None) -> int:
    """BLAS/OpenMP threads for one pool process: the setting, else cores // concurrency (>= 1)."""
    configured = get_settings().worker_threads
    if configured > 0:
        return configured
    if cores is None:
        cores = (
            len(os.sched_getaffinity(0))
            if hasattr(os, "sched_getaffinity")
            else (os.cpu_count() or 1)
        )
    return max(1, cores // max(1, concurrency))


def limit_threads(n: int) -> int:
    """Apply ``n`` threads (unless OMP_NUM_THREADS was set by hand); returns the count in force."""
    manual = os.environ.get("MIXOPT_THREADS_SET_BY") != "mixopt" and os.environ.get(
        "OMP_NUM_THREADS"
    )
    if manual:
        n = int(manual)
    for var in THREAD_VARS:
        if not manual or var not in os.environ:
            os.environ[var] = str(n)
    os.environ["MIXOPT_THREADS_SET_BY"] = "mixopt" if not manual else "user"
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(n)
    except Exception:  # threadpoolctl missing or a library it cannot drive: the env still applies
        pass
    return n


def estimators_line() -> str:
    """Which estimators this worker can run (and RegMix's tree backend)."""
    try:  # inside: a worker without the science extra still starts and says what is missing
        import mixopt.mixing.pipeline  # noqa: F401 - registers every estimator
        from mixopt.mixing.base import ESTIMATORS
    except Exception as exc:  # the science extra is missing
        return f"estimators: none ({type(exc).__name__}: {exc}; install mixopt[science])"
    try:
        import lightgbm  # noqa: F401

        trees = "LightGBM"
    except Exception as exc:
        trees = f"scikit-learn fallback (LightGBM not importable: {type(exc).__name__}: {exc})"
    return f"estimators: {', '.join(sorted(ESTIMATORS))}; regmix_lgbm trees: {trees}"


@signals.worker_init.connect
def _on_worker_init(sender=None, **_kw) -> None:
    os.environ["MIXOPT_WORKER_PID"] = str(os.getpid())  # pool processes die with this one
    concurrency = getattr(sender, "concurrency", None) or 1
    n = limit_threads(threads_per_process(int(concurrency)))
    # logged once Celery's logging is set up (worker_ready): here it went to logging's
    # last-resort handler, a bare line outside MIXOPT_LOG_FORMAT
    _startup.append(
        f"mixopt worker: {n} BLAS/OpenMP thread(s) per process (concurrency {concurrency}); "
        f"{estimators_line()}"
    )


_startup: list[str] = []


class _WorkerBeat:
    """Writes this worker's liveness row every heartbeat from a thread of the main process."""

    def __init__(self, name: str, queues: str, concurrency: int):
        self.name, self.queues, self.concurrency = name, queues, concurrency
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="worker-beat", daemon=True)

    def _write(self) -> None:
        with session_scope() as s:
            row = s.get(WorkerBeat, self.name)
            if row is None:
                s.add(
                    WorkerBeat(
                        name=self.name,
                        pid=os.getpid(),
                        queues=self.queues[:500],
                        concurrency=self.concurrency,
                        started_at=utcnow(),
                        seen_at=utcnow(),
                    )
                )
            else:
                row.pid, row.queues, row.concurrency, row.seen_at = (
                    os.getpid(),
                    self.queues[:500],
                    self.concurrency,
                    utcnow(),
                )

    def _loop(self) -> None:
        interval = get_settings().heartbeat_seconds
        while True:
            try:
                self._write()
            except Exception as exc:  # database restarting: keep trying
                log.warning("worker heartbeat failed (%s: %s)", type(exc).__name__, exc)
            if self.stop.wait(interval):
                return

    def remove(self) -> None:
        self.stop.set()
        try:
            with session_scope() as s:
                row = s.get(WorkerBeat, self.name)
                if row is not None:
                    s.delete(row)
        except Exception:
            pass


_beat: _WorkerBeat | None = None


@signals.worker_ready.connect
def _on_worker_ready(sender=None, **_kw) -> None:
    global _beat
    consumer = sender
    hostname = getattr(consumer, "hostname", None) or "worker"
    try:
        queues = ",".join(sorted(q.name for q in consumer.task_consumer.queues))
    except Exception:
        queues = ""
    concurrency = getattr(getattr(consumer, "controller", None), "concurrency", None) or 1
    _beat = _WorkerBeat(hostname, queues, int(concurrency))
    _beat.thread.start()
    for line in _startup:
        log.warning("%s", line)
    _startup.clear()


@signals.worker_shutdown.connect
def _on_worker_shutdown(**_kw) -> None:
    if _beat is not None:
        _beat.remove()


@signals.worker_process_init.connect
def _on_process_init(**_kw) -> None:
    main = os.environ.get("MIXOPT_WORKER_PID")
    procs.die_with_parent(int(main) if main and main.isdigit() else None)
    common.IN_POOL_CHILD = True
    get_engine().dispose(close=False)  # connections opened before the fork belong to the parent
    n = os.environ.get("OMP_NUM_THREADS")
    if n and n.isdigit():
        try:
            from threadpoolctl import threadpool_limits

            threadpool_limits(int(n))
        except Exception:
            pass


class Scheduler(PersistentScheduler):
    """Celery's persistent beat scheduler with its schedule file in ``MIXOPT_HOME`` by default
    (never the working directory, which a container may not let it write) and a liveness file
    (``beat.alive``) touched at every tick for health checks (``mixopt health beat``)."""

    def __init__(self, *args, **kwargs):
        home = get_settings().home
        home.mkdir(parents=True, exist_ok=True)
        if (
            not kwargs.get("schedule_filename")
            or kwargs["schedule_filename"] == "celerybeat-schedule"
        ):
            kwargs["schedule_filename"] = str(home / "celerybeat-schedule")
        self._alive = home / "beat.alive"
        super().__init__(*args, **kwargs)

    def tick(self, *args, **kwargs):
        try:
            self._alive.touch()
        except OSError:
            pass
        return super().tick(*args, **kwargs)
