"""Failed-authentication counters in the database, shared by every API process.

A fixed window: failures are counted in windows of ``MIXOPT_AUTH_WINDOW_SECONDS`` whole
seconds starting at multiples of it since the epoch, one ``auth_failure`` row per key and
window, upserted (``INSERT ... ON CONFLICT DO UPDATE count = count + 1``) on each failure. A key
can see at most twice its budget in any span of one window (the end of one and the start of the
next); that is the price of one row and one statement per failure. Rows of past windows are
deleted at most once per window per process.

The database rather than Redis: it is there in every deployment, the embedded SQLite one
included (Redis is only a broker option), so every API process, uvicorn worker or container
shares the counters with nothing more to run or configure, and the suite tests the same code
on SQLite and PostgreSQL. Only failures write (a valid token costs nothing here), so the load is
bounded by the failures the limiter itself refuses.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Sequence

from sqlalchemy import delete, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from app.store.models import AuthFailure

#: longest client address kept in a key (an IPv6 address with a zone fits)
_MAX_ADDRESS = 64
#: window start of the last prune, per database URL (each process prunes once per window)
_pruned: dict[str, int] = {}


def address_key(address: str) -> str:
    return "a:" + address[:_MAX_ADDRESS]


def credential_key(plain: str) -> str:
    """The key of a presented credential: a hash, never the credential. Domain-separated from
    ``api_token.token_hash`` so a counter row is not a lookup key into the token table."""
    return "c:" + hashlib.sha256(b"mixopt-auth-failure\0" + plain.encode()).hexdigest()


def window_length(window_s: float) -> int:
    return max(1, math.ceil(window_s))


def window_start(window_s: float, now: float | None = None) -> int:
    length = window_length(window_s)
    now = time.time() if now is None else now
    return int(now // length) * length


def retry_after(window_s: float, now: float | None = None) -> int:
    """Seconds until the current window ends (at least 1)."""
    now = time.time() if now is None else now
    return max(1, math.ceil(window_start(window_s, now) + window_length(window_s) - now))


def counts(session: Session, keys: Sequence[str], window_s: float) -> dict[str, int]:
    """Failures of each key in the current window (0 when none)."""
    start = window_start(window_s)
    rows = session.execute(
        select(AuthFailure.key, AuthFailure.count).where(
            AuthFailure.key.in_(list(keys)), AuthFailure.window_start == start
        )
    )
    found = {key: count for key, count in rows}
    return {key: found.get(key, 0) for key in keys}


def record_failure(session: Session, keys: Sequence[str], window_s: float) -> dict[str, int]:
    """Count one failure against each key and commit; returns the keys' counts after it."""
    start = window_start(window_s)
    for key in keys:
        _upsert(session, key, start)
    _prune(session, start, window_s)
    session.commit()
    return counts(session, keys, window_s)


def _upsert(session: Session, key: str, start: int) -> None:
    dialect = session.get_bind().dialect.name
    if dialect in ("sqlite", "postgresql"):
        insert = sqlite.insert if dialect == "sqlite" else postgresql.insert
        stmt = insert(AuthFailure).values(key=key, window_start=start, count=1)
        session.execute(
            stmt.on_conflict_do_update(
                index_elements=[AuthFailure.key, AuthFailure.window_start],
                set_={"count": AuthFailure.count + 1},
            )
        )
        return
    # other databases: update, then insert when there was nothing to update
    done = session.execute(
        update(AuthFailure)
        .where(AuthFailure.key == key, AuthFailure.window_start == start)
        .values(count=AuthFailure.count + 1)
    )
    if not getattr(done, "rowcount", 0):
        session.add(AuthFailure(key=key, window_start=start, count=1))
        session.flush()


def _prune(session: Session, start: int, window_s: float) -> None:
    url = str(session.get_bind().engine.url)
    if _pruned.get(url) == start:
        return
    _pruned[url] = start
    session.execute(delete(AuthFailure).where(AuthFailure.window_start < start))
