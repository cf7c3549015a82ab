"""Failed-authentication limits (app.api.ratelimit): failures counted per client address and per
credential in the database, valid tokens never refused, X-Forwarded-For only from trusted
proxies, dashboard cookies limited like bearer tokens, counters shared by app instances."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from tests.conftest import server_in_thread
from tests.factories import settings_env

BUDGET = 5
#: one window for the whole test (windows start at multiples of it since the epoch: the next
#: boundary is in 2033), so no count resets half-way through a test
LIMITS = {
    "MIXOPT_AUTH_FAILURES_PER_WINDOW": str(BUDGET),
    "MIXOPT_AUTH_CREDENTIAL_FAILURES_PER_WINDOW": str(BUDGET),
    "MIXOPT_AUTH_WINDOW_SECONDS": str(10**9),
}
#: guesses as long as the tokens mixopt issues (checked, answered 429 past the budget)
GUESS = "mxo_" + "g" * 43


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@contextmanager
def limited(**env: str) -> Iterator[None]:
    with settings_env(**LIMITS, **env):
        yield


@pytest.fixture
def app(db):
    from app.main import create_app

    with limited():
        yield create_app()


def _client(app, host: str = "testclient") -> TestClient:
    return TestClient(app, client=(host, 50000))


def _fail(client: TestClient, n: int, token: str = GUESS, **headers: str) -> list[int]:
    return [
        client.get("/v1/projects", headers={**bearer(f"{token}{i}"), **headers}).status_code
        for i in range(n)
    ]


def test_valid_token_and_login_pass_after_bad_tokens_from_the_same_address(app, admin_token):
    client = _client(app)
    assert _fail(client, BUDGET) == [401] * BUDGET
    r = client.get("/v1/projects", headers=bearer(GUESS))
    assert r.status_code == 429 and 1 <= int(r.headers["Retry-After"]) <= 10**9
    assert "too many failed" in r.json()["detail"]
    # the address is over budget: a valid token and a valid login still pass, every time
    for _ in range(10):
        assert client.get("/v1/projects", headers=bearer(admin_token)).status_code == 200
    login = client.post("/dashboard/login", data={"token": admin_token}, follow_redirects=False)
    assert login.status_code == 303 and login.cookies.get("mixopt_token") == admin_token
    # further failing attempts stay refused, bearer and login form alike
    assert _fail(client, 3, token="mxo_other") == [429] * 3
    r = client.post("/dashboard/login", data={"token": GUESS + "x"}, follow_redirects=False)
    assert r.status_code == 429 and "Retry-After" in r.headers


def test_a_short_token_is_refused_unchecked_from_an_address_over_budget(app, session):
    """A guessable (short) credential is not checked once the address is over budget, so a hit
    cannot be told from a miss; under the budget it works."""
    from app.services import tokens

    tokens.create_token(session, "weak", "admin", token="weak-dev-token")
    client = _client(app)
    assert client.get("/v1/projects", headers=bearer("weak-dev-token")).status_code == 200
    assert _fail(client, BUDGET, token="weak") == [401] * BUDGET
    assert client.get("/v1/projects", headers=bearer("weak-dev-token")).status_code == 429
    assert client.get("/v1/projects", headers=bearer("weak-guess")).status_code == 429
    # another address is not affected
    other = _client(app, "198.51.100.9")
    assert other.get("/v1/projects", headers=bearer("weak-dev-token")).status_code == 200


def test_a_bad_token_from_rotating_addresses_is_limited_per_credential(app):
    codes = [
        _client(app, f"198.51.100.{i}").get("/v1/projects", headers=bearer(GUESS)).status_code
        for i in range(BUDGET + 3)
    ]
    assert codes == [401] * BUDGET + [429] * 3
    # the addresses themselves are under budget: another bad credential is a plain 401
    fresh = _client(app, "198.51.100.1")
    assert fresh.get("/v1/projects", headers=bearer(GUESS + "2")).status_code == 401


def test_guessed_dashboard_cookies_get_429(app, admin_token):
    client = _client(app)
    codes = []
    for i in range(BUDGET + 2):
        client.cookies.set("mixopt_token", f"{GUESS}{i}")
        codes.append(client.get("/dashboard", follow_redirects=False).status_code)
    assert codes == [303] * BUDGET + [429] * 2  # a redirect to the login page, then refused
    client.cookies.set("mixopt_token", GUESS + "api")
    assert client.get("/v1/projects").status_code == 429  # the cookie on the API, same budget
    # the real session cookie still opens the pages
    client.cookies.set("mixopt_token", admin_token)
    assert client.get("/dashboard", follow_redirects=False).status_code == 200


def test_the_counters_hold_a_hash_never_the_credential_and_old_windows_are_pruned(
    app, session, monkeypatch
):
    from app.services import ratelimit as counters

    session.execute(
        text("INSERT INTO auth_failure (key, window_start, count) VALUES ('a:old', 0, 3)")
    )
    session.commit()
    monkeypatch.setattr(counters, "_pruned", {})
    assert _fail(_client(app), 1, token="mxo_secret-guess") == [401]
    keys = [r[0] for r in session.execute(text("SELECT key FROM auth_failure")).all()]
    assert sorted(k[:2] for k in keys) == ["a:", "c:"], keys
    assert not any("secret" in k for k in keys) and "a:testclient" in keys


def test_a_rotating_forwarded_for_from_an_untrusted_peer_does_not_bypass(app):
    client = _client(app)
    codes = [
        client.get(
            "/v1/projects",
            headers={**bearer(f"{GUESS}{i}"), "X-Forwarded-For": f"203.0.113.{i}"},
        ).status_code
        for i in range(BUDGET + 3)
    ]
    assert codes == [401] * BUDGET + [429] * 3


def test_a_rotating_forwarded_for_through_uvicorn_from_localhost_does_not_bypass(db):
    """The measured hole: uvicorn trusts 127.0.0.1's X-Forwarded-For by default and puts it in
    the peer's place; with no trusted proxy configured those requests share one bucket."""
    with limited(), server_in_thread() as url, httpx.Client(base_url=url) as c:
        codes = [
            c.get(
                "/v1/projects",
                headers={**bearer(f"{GUESS}{i}"), "X-Forwarded-For": f"203.0.113.{i}"},
            ).status_code
            for i in range(BUDGET + 3)
        ]
    assert codes == [401] * BUDGET + [429] * 3


def test_forwarded_for_from_a_trusted_proxy_is_honoured(db, admin_token):
    from app.main import create_app

    with limited(MIXOPT_TRUSTED_PROXIES="10.0.0.0/8, 192.0.2.7"):
        proxy = _client(create_app(), "10.1.2.3")
        hop = {"X-Forwarded-For": "198.51.100.1, 192.0.2.7"}  # client, then a second proxy
        assert _fail(proxy, BUDGET, **hop) == [401] * BUDGET
        assert _fail(proxy, 2, token="mxo_more", **hop) == [429] * 2
        # a spoofed hop left of the client changes nothing: hops are read from the right
        spoofed = {"X-Forwarded-For": "1.2.3.4, 198.51.100.1"}
        assert _fail(proxy, 1, token="mxo_spoof", **spoofed) == [429]
        # another client behind the same proxy has its own budget; the valid token passes
        other = {"X-Forwarded-For": "198.51.100.2"}
        assert _fail(proxy, 1, token="mxo_other", **other) == [401]
        r = proxy.get("/v1/projects", headers={**bearer(admin_token), **hop})
        assert r.status_code == 200
        # a peer that is not a trusted proxy is its own address, whatever it sends
        direct = _client(create_app(), "198.51.100.50")
        codes = [
            direct.get(
                "/v1/projects",
                headers={**bearer(f"{GUESS}d{i}"), "X-Forwarded-For": f"203.0.113.{i}"},
            ).status_code
            for i in range(BUDGET + 1)
        ]
        assert codes == [401] * BUDGET + [429]


def test_two_app_instances_share_the_counters(db):
    from app.main import create_app

    with limited():
        one, two = _client(create_app()), _client(create_app())
        assert _fail(one, 3, token="mxo_a") == [401] * 3
        assert _fail(two, BUDGET - 3, token="mxo_b") == [401] * (BUDGET - 3)
        assert _fail(one, 1, token="mxo_c") == [429]
        assert _fail(two, 1, token="mxo_d") == [429]


def test_trusted_proxies_must_be_addresses_or_networks():
    from pydantic import ValidationError

    from app.core.config import Settings

    with pytest.raises(ValidationError, match="MIXOPT_TRUSTED_PROXIES"):
        Settings(trusted_proxies="10.0.0.0/8, proxy.local")
    assert [str(n) for n in Settings(trusted_proxies="10.0.0.0/8,::1").trusted_proxy_networks] == [
        "10.0.0.0/8",
        "::1/128",
    ]
