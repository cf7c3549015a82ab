"""Per-client-address limit on failed authentication (dashboard logins, invalid API tokens).

In memory, per API process: each address may fail ``MIXOPT_AUTH_FAILURES_PER_WINDOW`` times in
``MIXOPT_AUTH_WINDOW_SECONDS``; past that, every authentication attempt from it is a 429 with
``Retry-After`` (seconds until its oldest failure leaves the window). Successful requests are
never counted, so clients with a valid token are not slowed down.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque

from fastapi import HTTPException, Request

from app.core.config import get_settings


class FailureLimiter:
    def __init__(self, limit: int, window_s: float):
        self.limit, self.window = limit, window_s
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _prune(self, q: deque[float], now: float) -> None:
        while q and q[0] <= now - self.window:
            q.popleft()

    def retry_after(self, address: str) -> int | None:
        """Seconds to wait when ``address`` is over the limit, else None."""
        now = time.monotonic()
        with self._lock:
            q = self._failures.get(address)
            if not q:
                return None
            self._prune(q, now)
            if len(q) < self.limit:
                if not q:
                    del self._failures[address]
                return None
            return max(1, math.ceil(q[0] + self.window - now))

    def fail(self, address: str) -> None:
        now = time.monotonic()
        with self._lock:
            q = self._failures.setdefault(address, deque())
            self._prune(q, now)
            q.append(now)
            if len(self._failures) > 100_000:  # bounded memory under a flood of addresses
                for key in [
                    k for k, v in self._failures.items() if not v or v[-1] <= now - self.window
                ]:
                    del self._failures[key]


def limiter(request: Request) -> FailureLimiter:
    state = request.app.state
    lim = getattr(state, "auth_limiter", None)
    if lim is None:
        s = get_settings()
        lim = state.auth_limiter = FailureLimiter(s.auth_failures_per_window, s.auth_window_seconds)
    return lim


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def check(request: Request) -> None:
    """429 when this client address has failed authentication too often."""
    wait = limiter(request).retry_after(client_address(request))
    if wait is not None:
        raise HTTPException(
            429,
            f"too many failed authentication attempts from this address; retry in {wait} s",
            headers={"Retry-After": str(wait)},
        )


def record_failure(request: Request) -> None:
    limiter(request).fail(client_address(request))
