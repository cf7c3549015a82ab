"""Idempotency-Key support: a retried request returns the stored response, creates nothing."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.services.errors import Conflict, Invalid
from app.store.models import IdempotencyRecord


def request_fingerprint(payload: Any, query: dict[str, Any] | None = None) -> str:
    """A digest of the body and the query. A batch's runs are serialised one by one (one
    ``json.dumps`` of 50,000 runs held the GIL, and so the event loop, for seconds)."""
    runs = payload.get("runs") if isinstance(payload, dict) else None
    if not isinstance(runs, list):
        blob = json.dumps({"body": payload, "query": query or {}}, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()
    rest = {k: v for k, v in payload.items() if k != "runs"}
    digest = hashlib.sha256(b"runs\n")
    digest.update(
        json.dumps({"body": rest, "query": query or {}}, sort_keys=True, default=str).encode()
    )
    for run in runs:
        digest.update(b"\n" + json.dumps(run, sort_keys=True, default=str).encode())
    return digest.hexdigest()


def check_key(key: str) -> str:
    key = key.strip()
    if not key or len(key) > 200:
        raise Invalid("Idempotency-Key must be 1 to 200 characters", field="Idempotency-Key")
    return key


def replay(
    session: Session, token_id: int, key: str, endpoint: str, fingerprint: str
) -> IdempotencyRecord | None:
    """The stored record for this key, or None. A key reused for another request is a 409."""
    rec = session.scalar(
        select(IdempotencyRecord).where(
            IdempotencyRecord.token_id == token_id, IdempotencyRecord.key == key
        )
    )
    if rec is None:
        return None
    if rec.endpoint != endpoint or rec.request_hash != fingerprint:
        raise Conflict(
            f"Idempotency-Key {key!r} was already used for a different request ({rec.endpoint})",
            field="Idempotency-Key",
        )
    return rec


def remember(
    session: Session,
    token_id: int,
    key: str,
    endpoint: str,
    fingerprint: str,
    status_code: int,
    response: Any,
) -> None:
    """Add the record to the caller's transaction (committed with the created rows)."""
    session.add(
        IdempotencyRecord(
            token_id=token_id,
            key=key,
            endpoint=endpoint,
            request_hash=fingerprint,
            status_code=status_code,
            response=response,
        )
    )
