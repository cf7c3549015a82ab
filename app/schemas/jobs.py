from __future__ import annotations

from datetime import datetime
from typing import Any

from app.schemas.common import Schema


class JobPublic(Schema):
    id: str
    project_id: int | None
    kind: str
    state: str
    progress: float
    message: str | None
    error: str | None
    params: dict[str, Any]
    result: dict[str, Any] | None
    queue: str
    attempts: int
    cancel_requested: bool
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    #: last heartbeat of the attempt running it (every few seconds while running)
    heartbeat_at: datetime | None = None
    #: how many times its message was published (first send + re-sends of lost messages)
    sends: int = 0
    sent_at: datetime | None = None
    duration_s: float | None = None
    #: X-Request-ID of the request that created it (the worker's log lines carry it too)
    request_id: str | None = None


class JobsPublic(Schema):
    data: list[JobPublic]
    count: int


class JobAccepted(Schema):
    job: JobPublic
    job_url: str
