"""The supervisor of ``mixopt serve`` (workers.embedded) with real Celery processes on the
test broker and database: a child killed for real is restarted and the log says why; beat's
housekeeping runs in its own worker process, on time, while the job pool is fully busy."""

from __future__ import annotations

import logging
import os
import re
import signal
import time
from pathlib import Path

import pytest

from app.core.config import get_settings
from tests.workers.test_faults import SLOW_FIT, _project, _wait_running
from workers.embedded import Supervisor, death_reason, oom_kills


def _settings(home: Path, maintenance_queue: str):
    """The test run's settings (database, broker) with a home of our own."""
    return get_settings().model_copy(
        update={"home": home, "maintenance_queue": maintenance_queue, "worker_concurrency": 1}
    )


def _wait_for(predicate, timeout: float, what: str) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if predicate():
            return time.monotonic() - start
        time.sleep(0.2)
    raise AssertionError(f"{what}: not within {timeout} s")


def _text(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


def test_housekeeping_has_its_own_queue_declared_and_routed_by_default():
    from app.core.celery_config import ONLINE_TICK, REAP_STALE_JOBS, celery_config
    from app.core.config import Settings
    from app.services.dispatch import declare_queues
    from workers.celery_app import celery_app

    settings = Settings()
    assert settings.maintenance_queue == "maintenance"
    routes = celery_config(settings)["task_routes"]
    assert routes[REAP_STALE_JOBS] == routes[ONLINE_TICK] == {"queue": "maintenance"}
    assert routes["mixopt.fit"] == {"queue": "default"}
    other = celery_config(settings.model_copy(update={"maintenance_queue": "house"}))
    assert other["task_routes"][REAP_STALE_JOBS] == {"queue": "house"}
    schedule = celery_app.conf.beat_schedule.values()
    assert {e["options"]["queue"] for e in schedule} == {get_settings().maintenance_queue}
    assert {"default", "gpu", get_settings().maintenance_queue} <= set(declare_queues())
    # serve starts a housekeeping worker for it, unless its worker consumes that queue already
    sup = Supervisor(settings, beat=False)
    assert set(sup.commands) == {"worker", "maintenance"}
    assert set(Supervisor(settings, queues="default,maintenance", beat=False).commands) == {
        "worker"
    }


def test_a_worker_running_beat_also_consumes_the_maintenance_queue(tmp_path):
    import mixopt.cli  # noqa: F401 - registers workers.cli as its plugin (imported first)
    from workers.cli import worker_argv

    settings = get_settings().model_copy(update={"home": tmp_path})
    house = settings.maintenance_queue
    argv = worker_argv(settings, "default,gpu", 2, True, "w@%h")
    assert argv[:3] == ["worker", "-Q", f"default,gpu,{house}"] and "-B" in argv
    assert worker_argv(settings, "default,gpu", 2, False, "w@%h")[2] == "default,gpu"
    assert worker_argv(settings, f"{house},gpu", 1, True, "w@%h")[2] == f"{house},gpu"


def test_death_reasons():
    assert death_reason(3) == "exit status 3"
    assert death_reason(0) == "exit status 0"
    assert death_reason(-signal.SIGTERM) == "killed by SIGTERM"
    assert death_reason(-signal.SIGSEGV) == "killed by SIGSEGV"
    assert "probably out of memory" in death_reason(-signal.SIGKILL)  # no count to compare
    if oom_kills() is not None:
        before = oom_kills()
        assert "not by the kernel's OOM killer" in death_reason(-signal.SIGKILL, before)
        assert "out of memory (the kernel's OOM killer ended 2" in death_reason(
            -signal.SIGKILL, before - 2
        )


def test_a_killed_worker_is_restarted_and_the_log_says_why(tmp_path, caplog):
    queue = f"sup-{os.getpid()}"
    settings = _settings(tmp_path, maintenance_queue=queue)  # no separate housekeeping worker
    log = tmp_path / "worker.log"
    caplog.set_level(logging.WARNING, logger="mixopt.serve")
    sup = Supervisor(settings, queues=queue, concurrency=1, beat=False, grace_s=5).start()
    try:
        assert set(sup.commands) == {"worker"}
        _wait_for(lambda: "ready." in _text(log), 120, "the worker did not start")
        first = sup.procs["worker"]
        os.kill(first.pid, signal.SIGKILL)
        took = _wait_for(
            lambda: (
                sup.procs.get("worker") is not None
                and sup.procs["worker"].pid != first.pid
                and sup.procs["worker"].poll() is None
            ),
            30,
            "the worker was not restarted",
        )
        print(f"restarted {took:.1f} s after the SIGKILL")
        _wait_for(lambda: _text(log).count("ready.") == 2, 120, "the new worker is not ready")
    finally:
        sup.stop()
    assert sup.restarts["worker"] == 1
    reason = (
        "killed by SIGKILL, not by the kernel's OOM killer (/proc/vmstat oom_kill unchanged)"
        if oom_kills() is not None
        else "killed by SIGKILL: probably out of memory (the kernel's OOM killer sends SIGKILL)"
    )
    assert sup.deaths == [("worker", first.pid, reason)]
    (record,) = [r for r in caplog.records if r.name == "mixopt.serve"]
    message = record.getMessage()
    assert message.startswith(f"embedded worker (pid {first.pid}) died: killed by SIGKILL")
    assert f"Last lines of {log}:" in message
    # the quoted lines are the end of the dead worker's log (the last before the restart)
    quoted = [ln.strip() for ln in message.split("\n")[1:]]
    assert quoted and quoted[-1] in _text(log) and any("ready." in q for q in quoted), message


@pytest.mark.slow  # about a minute on the shared 2-core machine: two workers, beat and a fit
def test_housekeeping_runs_on_time_while_the_pool_is_busy(client, admin, tmp_path, monkeypatch):
    """One pool process, busy with a long fit; beat's reaper and online ticks (every second)
    still run, in the housekeeping worker, each within its interval."""
    busy, maintenance = f"busy-{os.getpid()}", f"maint-{os.getpid()}"
    monkeypatch.setattr(get_settings(), "job_queue", busy)
    for name, value in {
        "MIXOPT_REAP_INTERVAL_SECONDS": "1",
        "MIXOPT_ONLINE_TICK_SECONDS": "1",
        "MIXOPT_HEARTBEAT_SECONDS": "1",
        "MIXOPT_HOUSEKEEPING_LOG_LEVEL": "info",  # the ticks are counted in the log
    }.items():
        monkeypatch.setenv(name, value)  # the children's environment
    settings = _settings(tmp_path, maintenance_queue=maintenance)
    logs = {name: tmp_path / f"{name}.log" for name in ("worker", "maintenance", "beat")}
    sup = Supervisor(settings, queues=busy, concurrency=1, beat=True, grace_s=5).start()
    try:
        assert set(sup.commands) == {"worker", "maintenance", "beat"}
        assert f"-Q {maintenance} -c 1" in " ".join(sup.commands["maintenance"][0])
        for name in ("worker", "maintenance"):
            _wait_for(lambda n=name: "ready." in _text(logs[n]), 120, f"{name} did not start")
        p = _project(client, admin)
        r = client.post(f"/v1/projects/{p['id']}/fits", json=SLOW_FIT, headers=admin)
        assert r.status_code == 202 and r.json()["job"]["queue"] == busy, r.text
        job_id = r.json()["job"]["id"]
        _wait_running(client, admin, job_id, timeout=120)
        start, before = time.monotonic(), _ticks(logs["maintenance"])
        _wait_for(
            lambda: all(n - before[k] >= 4 for k, n in _ticks(logs["maintenance"]).items()),
            30,
            "four reaps and four online ticks while the pool is busy",
        )
        window = time.monotonic() - start
        job = client.get(f"/v1/jobs/{job_id}", headers=admin).json()
        assert job["state"] == "running", job  # the pool was busy all along
        client.post(f"/v1/jobs/{job_id}/cancel", headers=admin)
    finally:
        sup.stop()
    done = _ticks(logs["maintenance"])
    print(f"4 reaps and 4 online ticks in {window:.1f} s while the fit ran; in all: {done}")
    # none ran in the busy pool's worker, and none waited past its interval
    assert _ticks(logs["worker"]) == {"reap_stale_jobs": 0, "online_tick": 0}
    assert window < 4 * 2 + 5, window


def _ticks(path: Path) -> dict[str, int]:
    text = _text(path)
    return {
        task: len(re.findall(rf"Task mixopt\.{task}\[[^\]]+\] succeeded", text))
        for task in ("reap_stale_jobs", "online_tick")
    }
