"""An idle worker (with beat, ticking its housekeeping every second) writes no info lines:
Celery's routine lines about the reaper and the online ticks are at debug (issue 26, item 5)."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from tests.conftest import _HOME, start_worker_process
from tests.factories import settings_env
from workers.logs import HousekeepingAtDebug, is_housekeeping


def _record(name: str, msg: str, args, level: int = logging.INFO) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, msg, args, None)


def test_routine_housekeeping_lines_are_debug_and_real_events_stay():
    from celery.app.trace import LOG_SUCCESS

    tick = {"id": "1", "name": "mixopt.online_tick", "return_value": None, "runtime": 0.01}
    fit = {**tick, "name": "mixopt.fit"}
    beat = ("online-tick", "mixopt.online_tick")
    assert is_housekeeping(_record("celery.app.trace", LOG_SUCCESS, (tick,)))
    assert is_housekeeping(_record("celery.beat", "Scheduler: Sending due task %s (%s)", beat))
    assert not is_housekeeping(_record("celery.app.trace", LOG_SUCCESS, (fit,)))
    # a failure of a housekeeping task is not routine
    assert not is_housekeeping(_record("celery.app.trace", "failed", (tick,), logging.ERROR))
    rec = _record("celery.app.trace", LOG_SUCCESS, (tick,))
    logging.getLogger("celery.app.trace").setLevel(logging.INFO)
    assert HousekeepingAtDebug().filter(rec) is False
    assert rec.levelname == "DEBUG"
    with settings_env(MIXOPT_HOUSEKEEPING_LOG_LEVEL="info"):  # an operator who wants each tick
        kept = _record("celery.app.trace", LOG_SUCCESS, (tick,))
        assert HousekeepingAtDebug().filter(kept) is True and kept.levelname == "INFO"


def _lines(path: Path, start: int) -> list[dict]:
    text = path.read_bytes()[start:].decode("utf-8", "replace")
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def test_an_idle_worker_writes_no_info_lines(db, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    env = {
        "MIXOPT_LOG_FORMAT": "json",
        "MIXOPT_HOME": str(home),
        "MIXOPT_ONLINE_TICK_SECONDS": "0.5",
        "MIXOPT_REAP_INTERVAL_SECONDS": "1",
    }
    proc = start_worker_process("idle", extra_env=env, beat=True, queues="maintenance")
    log = Path(_HOME) / "worker-idle.log"
    try:
        time.sleep(3)  # start-up lines (worker, beat) are written by now
        start = log.stat().st_size
        alive = home / "beat.alive"
        window_start = time.time()
        time.sleep(8)
        ticked = alive.exists() and alive.stat().st_mtime > window_start
        lines = _lines(log, start)
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    assert ticked, "beat did not tick during the window: nothing was tested"
    assert lines == [], lines[:5]  # at --loglevel INFO, debug lines are not written either
