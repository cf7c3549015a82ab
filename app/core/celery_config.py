"""Celery configuration shared by the API (which only sends tasks by name) and the workers."""

from __future__ import annotations

from typing import Any

from app.core.config import Settings

#: task name -> queue; training goes to the gpu queue (CPU workers listen to it too by default)
TASK_QUEUES = {
    "mixopt.train_run": "gpu",
    "mixopt.validate": "gpu",
    "mixopt.validate_part": "gpu",
    "mixopt.fit": "default",
    "mixopt.recommend": "default",
    "mixopt.suggest": "default",
    "mixopt.ingest_domain": "default",
    "mixopt.online_tick": "default",
    "mixopt.remix_session": "default",
    "mixopt.reap_stale_jobs": "default",
}


def celery_config(settings: Settings) -> dict[str, Any]:
    conf: dict[str, Any] = {
        "broker_url": settings.broker_url,
        "task_serializer": "json",
        "accept_content": ["json"],
        "result_serializer": "json",
        "task_ignore_result": True,  # state lives in the job table, not in a result backend
        "result_backend": None,
        "task_acks_late": True,  # a worker killed mid-task leaves the message to be redelivered
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "task_default_queue": "default",
        "task_routes": {name: {"queue": q} for name, q in TASK_QUEUES.items()},
        "task_time_limit": settings.task_time_limit,
        "task_soft_time_limit": max(1, settings.task_time_limit - 30),
        "broker_connection_retry_on_startup": True,
        "broker_transport_options": {"visibility_timeout": settings.broker_visibility_timeout},
        "worker_hijack_root_logger": False,
        "timezone": "UTC",
    }
    if settings.broker_url.startswith("sqla+"):
        # kombu's SQLAlchemy transport hands its options to create_engine: only engine arguments
        conf["broker_transport_options"] = {"connect_args": {"timeout": 30}}
    return conf
