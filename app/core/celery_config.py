"""Celery configuration shared by the API (which only sends tasks by name) and the workers."""

from __future__ import annotations

from typing import Any

from app.core.config import Settings

#: every task name, once. The names are what queued messages carry and what the workers
#: register: renaming one strands the messages already queued under the old name.
TRAIN_RUN = "mixopt.train_run"
VALIDATE = "mixopt.validate"
VALIDATE_PART = "mixopt.validate_part"
FIT = "mixopt.fit"
RECOMMEND = "mixopt.recommend"
SUGGEST = "mixopt.suggest"
INGEST_DOMAIN = "mixopt.ingest_domain"
REMIX = "mixopt.remix"
ONLINE_TICK = "mixopt.online_tick"
REMIX_SESSION = "mixopt.remix_session"
REAP_STALE_JOBS = "mixopt.reap_stale_jobs"
TRAIN_EXPERTS = "mixopt.train_experts"
SWARM_ROUNDS = "mixopt.swarm_rounds"

#: job kind (the ``job.kind`` column) -> the task that runs the job
KIND_TASKS = {
    "train": TRAIN_RUN,
    "fit": FIT,
    "recommend": RECOMMEND,
    "suggest": SUGGEST,
    "ingest": INGEST_DOMAIN,
    "validate": VALIDATE,
    "validate_part": VALIDATE_PART,
    "remix": REMIX,
    "train_experts": TRAIN_EXPERTS,
    "swarm_rounds": SWARM_ROUNDS,
}

#: stands for ``MIXOPT_MAINTENANCE_QUEUE`` in TASK_QUEUES (beat's housekeeping, its own worker)
MAINTENANCE = "maintenance"
#: task name -> queue; training goes to the gpu queue (CPU workers listen to it too by default)
TASK_QUEUES = {
    TRAIN_RUN: "gpu",
    VALIDATE: "gpu",
    VALIDATE_PART: "gpu",
    FIT: "default",
    RECOMMEND: "default",
    SUGGEST: "default",
    INGEST_DOMAIN: "default",
    REMIX: "default",
    ONLINE_TICK: MAINTENANCE,
    REMIX_SESSION: "default",
    REAP_STALE_JOBS: MAINTENANCE,
    TRAIN_EXPERTS: "gpu",
    #: sent on its swarm's queue (job.queue): it plans the next round where the runs train
    SWARM_ROUNDS: "gpu",
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
        "task_routes": {
            name: {"queue": settings.maintenance_queue if q == MAINTENANCE else q}
            for name, q in TASK_QUEUES.items()
        },
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
