"""Task names are what queued messages carry: the workers register every name the API sends
(by job kind) and the beat schedules, and no name once shipped disappears."""

from __future__ import annotations

from app.core.celery_config import KIND_TASKS, TASK_QUEUES
from workers.celery_app import TASK_MODULES, celery_app

#: every name ever shipped; a message queued under one of them must still find its task
SHIPPED = {
    "mixopt.train_run",
    "mixopt.validate",
    "mixopt.validate_part",
    "mixopt.fit",
    "mixopt.recommend",
    "mixopt.suggest",
    "mixopt.ingest_domain",
    "mixopt.online_tick",
    "mixopt.remix_session",
    "mixopt.reap_stale_jobs",
    "mixopt.remix",
}


def registered() -> set[str]:
    celery_app.loader.import_default_modules()
    return {name for name in celery_app.tasks if name.startswith("mixopt.")}


def test_every_shipped_name_is_registered_and_routed():
    names = registered()
    assert SHIPPED <= names, f"tasks gone: {sorted(SHIPPED - names)}"
    assert set(TASK_QUEUES) == names
    assert set(KIND_TASKS.values()) <= names
    assert {e["task"] for e in celery_app.conf.beat_schedule.values()} <= names


def test_one_task_module_per_concept_is_included():
    assert set(celery_app.conf.include) == set(TASK_MODULES)
    assert {"workers.tasks.recommendations", "workers.tasks.suggestions"} <= set(TASK_MODULES)
