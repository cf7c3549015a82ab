"""Limits on failed authentication: API tokens (``Authorization: Bearer``), the dashboard's
``mixopt_token`` cookie and its login form all go through :func:`authenticate`.

What is counted: each failed attempt counts once against its client address and once against
the presented credential (a hash of it, never the credential: :mod:`app.services.ratelimit`),
in fixed windows of ``MIXOPT_AUTH_WINDOW_SECONDS`` (default 60) kept in the database, so every
API process shares them. Successes are never counted.

What is refused: the token is checked first, and a valid token always passes, even from an
address (or a NAT, a proxy) that is over its failure budget: others' failures never lock a
client out. A failing attempt is a 401 until its address has failed
``MIXOPT_AUTH_FAILURES_PER_WINDOW`` times (default 20) or its credential
``MIXOPT_AUTH_CREDENTIAL_FAILURES_PER_WINDOW`` times (default 20) in the window; past either,
failing attempts are 429 with ``Retry-After`` (seconds to the window's end) and keep counting.

Why this gives a guesser nothing: letting a valid token through from an over-budget address
means a hit from that address is a 200, so whether the token is checked there decides what an
attacker can learn. The rule is by the credential's length, which the attacker already knows:

* a credential shorter than 32 characters (``MIN_ADMIN_TOKEN_CHARS``, the floor production puts
  on the one hand-set token, ``MIXOPT_ADMIN_TOKEN``) is, once its address or itself is over
  budget, refused with 429 **without checking it** (and without counting it): a weak
  hand-set token cannot be guessed past the budget, because the answer does not depend on it;
* a longer credential is **checked at constant cost** (one hash, one indexed lookup, whatever it
  is) and a failure is answered 429. Every token mixopt issues is ``mxo_`` and 256 random bits
  (47 characters), so the only thing a hit could reveal cannot be found by guessing: 2^-256 a
  try, whatever the rate; the limit keeps failing clients from loading the database and the
  logs, and a valid token is never refused.

The one cost: a valid token shorter than 32 characters (allowed in development only) is refused
from an address that is over budget, until the window ends.

The client address is the connection's peer. ``X-Forwarded-For`` is read only when the peer is
one of ``MIXOPT_TRUSTED_PROXIES`` (addresses or CIDRs; default none): its hops are read from the
right, skipping trusted proxies, and the first other one is the client. When no proxy is
trusted and the peer is one of the header's hops, the ASGI server itself replaced the peer with
the header (uvicorn does for ``--forwarded-allow-ips``, 127.0.0.1 by default): the real address
is unknown, and such requests share one address bucket (``forwarded``), so a rotating header is
no way out of the limit (run uvicorn with ``--no-proxy-headers`` to keep each address's own).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from fastapi import HTTPException, Request
from sqlalchemy.orm import Session

from app.core.config import MIN_ADMIN_TOKEN_CHARS, get_settings
from app.services import ratelimit as counters
from app.services import tokens as token_service
from app.store.models import ApiToken

#: the address of requests whose peer the server took from an untrusted X-Forwarded-For
FORWARDED = "forwarded"
#: at most this many X-Forwarded-For hops are read (from the right)
MAX_HOPS = 32
_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class FailureLimiter:
    """An app's failure budgets (built by :func:`app.main.create_app` from the settings); the
    counts themselves are in the database (:mod:`app.services.ratelimit`)."""

    def __init__(self, limit: int, window_s: float, credential_limit: int | None = None):
        self.limit, self.window = limit, window_s
        self.credential_limit = (
            credential_limit or get_settings().auth_credential_failures_per_window
        )

    def over(self, counts: dict[str, int], address_key: str, credential_key: str) -> bool:
        """Whether these counts are past either budget."""
        return counts[address_key] >= self.limit or counts[credential_key] >= self.credential_limit

    def refuse(self) -> HTTPException:
        wait = counters.retry_after(self.window)
        return HTTPException(
            429,
            "too many failed authentication attempts from this address or with this credential; "
            f"retry in {wait} s",
            headers={"Retry-After": str(wait)},
        )


def limiter(request: Request) -> FailureLimiter:
    state = request.app.state
    lim = getattr(state, "auth_limiter", None)
    if lim is None:
        s = get_settings()
        lim = state.auth_limiter = FailureLimiter(s.auth_failures_per_window, s.auth_window_seconds)
    return lim


def authenticate(request: Request, session: Session, plain: str) -> ApiToken | None:
    """The valid token ``plain`` is, or None after counting a failure (the caller answers 401);
    raises a 429 past the failure budgets (see the module's docstring for exactly when)."""
    lim = limiter(request)
    address = counters.address_key(client_address(request))
    credential = counters.credential_key(plain)
    keys = (address, credential)
    if len(plain) < MIN_ADMIN_TOKEN_CHARS and lim.over(
        counters.counts(session, keys, lim.window), address, credential
    ):
        raise lim.refuse()  # not checked: the answer must not depend on a guessable credential
    token = token_service.authenticate(session, plain)
    if token is not None:
        return token
    after = counters.record_failure(session, keys, lim.window)
    if after[address] > lim.limit or after[credential] > lim.credential_limit:
        raise lim.refuse()
    return None


# -- the client's address ------------------------------------------------------------------------
def client_address(request: Request) -> str:
    peer = request.client.host if request.client else "unknown"
    hops = _forwarded_for(request)
    if not hops:
        return peer
    networks = get_settings().trusted_proxy_networks
    if networks and _trusted(peer, networks):
        for hop in reversed(hops):
            if not _trusted(hop, networks):
                return hop
        return hops[0]
    if not networks and peer in hops:
        return FORWARDED  # the server put a header value in the peer's place
    return peer


def _forwarded_for(request: Request) -> list[str]:
    values = request.headers.getlist("x-forwarded-for")
    hops = [_host(h.strip()) for h in ",".join(values).split(",") if h.strip()]
    return hops[-MAX_HOPS:]


def _host(value: str) -> str:
    """The host of ``host``, ``host:port`` or ``[v6]:port``."""
    if value.startswith("[") and "]" in value:
        return value[1 : value.index("]")]
    if value.count(":") == 1:
        return value.split(":", 1)[0]
    return value


def _trusted(host: str, networks: Sequence[_Network]) -> bool:
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    return any(ip in net for net in networks)
