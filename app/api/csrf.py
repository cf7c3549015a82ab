"""CSRF protection of cookie-authenticated (dashboard) requests.

Two checks, both required for a state-changing method (anything but GET/HEAD/OPTIONS) that
authenticates with the session cookie; a request with an ``Authorization: Bearer`` header is
not a browser session and is not affected:

* same origin: ``Sec-Fetch-Site``, when the browser sends it, must be ``same-origin`` (or
  ``none``: typed by the user), and ``Origin``, when sent, must equal this server's own
  scheme://host:port. A page on another port of the same host is same-site but not
  same-origin, so it is refused even though the SameSite=Strict cookie travels with it.
* double submit: the ``X-CSRF-Token`` header (or a ``csrf_token`` form field) must equal the
  ``mixopt_csrf`` cookie set at login, which is an HMAC of the session token, so a cookie
  planted by another site cannot be paired with a made-up value.
"""

from __future__ import annotations

import hashlib
import hmac

from fastapi import HTTPException, Request

CSRF_COOKIE = "mixopt_csrf"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


def csrf_token(session_token: str) -> str:
    """The CSRF value bound to a dashboard session (the cookie's API token)."""
    return hmac.new(session_token.encode(), b"mixopt-csrf-v1", hashlib.sha256).hexdigest()


def _own_origin(request: Request) -> str:
    host = request.headers.get("host") or (
        f"{request.url.hostname}:{request.url.port}"
        if request.url.port
        else str(request.url.hostname)
    )
    return f"{request.url.scheme}://{host}".lower()


def check_origin(request: Request) -> None:
    """403 unless the request comes from a page of this origin (when the browser says where
    from)."""
    site = request.headers.get("sec-fetch-site")
    if site is not None and site.lower() not in ("same-origin", "none"):
        raise HTTPException(
            403,
            f"cross-site request refused (Sec-Fetch-Site: {site}); the dashboard accepts "
            "state-changing requests only from its own pages",
        )
    origin = request.headers.get("origin")
    if origin is not None and origin.lower().rstrip("/") != _own_origin(request):
        raise HTTPException(
            403,
            "cross-origin request refused (Origin does not match this server); the "
            "dashboard accepts state-changing requests only from its own pages",
        )


def check(request: Request, session_token: str, form_value: str | None = None) -> None:
    """Both checks for a cookie-authenticated request (no-op for safe methods)."""
    if request.method in SAFE_METHODS:
        return
    check_origin(request)
    expected = csrf_token(session_token)
    sent = request.headers.get(CSRF_HEADER) or form_value or ""
    cookie = request.cookies.get(CSRF_COOKIE) or ""
    if not (hmac.compare_digest(sent, expected) and hmac.compare_digest(cookie, expected)):
        raise HTTPException(
            403,
            f"missing or wrong CSRF token: send the {CSRF_COOKIE} cookie's value in the "
            f"{CSRF_HEADER} header",
        )
