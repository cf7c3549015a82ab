"""Scheduled online re-mixing: beat ticks, the tick reads the due sessions from the database
(so a new session needs no restart) and each due session is re-mixed by its own task."""

from __future__ import annotations

from app.services import online as online_service
from app.store.db import session_scope
from workers.celery_app import celery_app


@celery_app.task(name="mixopt.online_tick")
def online_tick() -> list[int]:
    with session_scope() as s:
        due = online_service.due_sessions(s)
    for sid in due:
        remix_session.apply_async(args=[sid])
    return due


@celery_app.task(name="mixopt.remix_session")
def remix_session(session_id: int) -> int | None:
    with session_scope() as s:
        return online_service.remix(s, session_id)
