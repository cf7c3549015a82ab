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
    """sha256 of ``json.dumps({"body": payload, "query": query}, sort_keys=True)``.

    A batch's runs are serialised one by one into the hash (one ``json.dumps`` of 50,000 runs
    held the GIL, and so the event loop, for seconds), in the layout that single call writes
    (``", "`` between items, ``": "`` after keys), so the digest is the same as a whole-body
    dump: a key stored by an earlier release still matches its retried request."""
    q = query or {}
    runs = payload.get("runs") if isinstance(payload, dict) else None
    if not isinstance(runs, list) or not all(isinstance(k, str) for k in payload):
        blob = json.dumps({"body": payload, "query": q}, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()

    def dump(obj: Any) -> bytes:
        return json.dumps(obj, sort_keys=True, default=str).encode()

    digest = hashlib.sha256(b'{"body": {')
    for i, k in enumerate(sorted(payload)):
        digest.update((b", " if i else b"") + dump(k) + b": ")
        if k != "runs":
            digest.update(dump(payload[k]))
            continue
        digest.update(b"[")
        for j, run in enumerate(runs):
            digest.update((b", " if j else b"") + dump(run))
        digest.update(b"]")
    digest.update(b'}, "query": ' + dump(q) + b"}")
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
