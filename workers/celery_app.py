"""The Celery app of the workers: JSON only, late acks, prefetch 1, time limits, explicit
queues (``gpu`` for training, ``default`` for fits and the rest)."""

from __future__ import annotations

from celery import Celery

from app.core.celery_config import celery_config
from app.core.config import get_settings

celery_app = Celery("mixopt", include=["workers.tasks.fits", "workers.tasks.maintenance", "workers.tasks.online", "workers.tasks.training"])
celery_app.conf.update(celery_config(get_settings()))
celery_app.conf.beat_schedule = {
    "reap-stale-jobs": {"task": "mixopt.reap_stale_jobs", "schedule": float(get_settings().reap_interval_seconds)},
    "online-tick": {"task": "mixopt.online_tick", "schedule": float(get_settings().online_tick_seconds)},
}
