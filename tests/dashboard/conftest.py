"""Browser-test fixtures: a real uvicorn server on the test database, seeded once per module
with the RegMix runs, real fits and a recommendation (a real Celery worker), a loss curve and an
online session; and headless Chromium (Debian's package) driven by Playwright."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

from tests.conftest import REGMIX_DIR, REPO, _empty_tables, server_in_thread

CHROMIUM = os.environ.get("MIXOPT_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = REPO / "artifacts" / "screenshots"
DOCS = REPO / "docs" / "screenshots"
PILE_CC = "metric/the_pile_pile_cc_val_loss"

#: declared token counts for the 17 Pile domains (approximate, from the Pile's sizes), so the
#: overview can show the epochs each mixture implies at a 25B-token target
PILE_TOKENS = {
    "the_pile_pile_cc": 52e9,
    "the_pile_pubmed_central": 27e9,
    "the_pile_github": 18e9,
    "the_pile_arxiv": 15e9,
    "the_pile_freelaw": 12e9,
    "the_pile_stackexchange": 8e9,
    "the_pile_uspto_backgrounds": 5e9,
    "the_pile_pubmed_abstracts": 4.5e9,
    "the_pile_gutenberg_pg_19": 2.9e9,
    "the_pile_wikipedia_en": 1.6e9,
    "the_pile_dm_mathematics": 1.7e9,
    "the_pile_ubuntu_irc": 1.5e9,
    "the_pile_europarl": 1.2e9,
    "the_pile_hackernews": 0.9e9,
    "the_pile_philpapers": 0.6e9,
    "the_pile_nih_exporter": 0.4e9,
    "the_pile_enron_emails": 0.2e9,
}
ONLINE_DOMAINS = ["the_pile_pile_cc", "the_pile_github", "the_pile_arxiv", "the_pile_wikipedia_en"]


def chromium_or_skip() -> str:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        pytest.skip("browser tests need Playwright's Python package: pip install -e '.[test]'")
    if not Path(CHROMIUM).exists():
        pytest.skip(
            f"browser tests need Chromium at {CHROMIUM}: apt-get install -y chromium "
            "(scripts/services.sh installs it); set MIXOPT_CHROMIUM to use another binary"
        )
    return CHROMIUM


@pytest.fixture(scope="module")
def server(engine):
    """A real uvicorn server (thread) on the test database; tables are emptied afterwards."""
    with server_in_thread() as url:
        yield url
    _empty_tables(engine)


def _wait(http, job_id: str, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = http.get(f"/v1/jobs/{job_id}").json()
        if job["state"] in ("succeeded", "failed", "cancelled"):
            assert job["state"] == "succeeded", job
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} did not finish: {job}")


@pytest.fixture(scope="module")
def seeded(server, worker):
    """Project A (the 512 RegMix runs, two real fits, a recommendation, a curve, an online
    session), project B (another team's), and a token that sees only A."""
    import httpx

    from app.services import tokens
    from app.store.db import session_scope

    with session_scope() as s:
        _, admin = tokens.create_token(s, "dashboard admin", "admin")
    http = httpx.Client(base_url=server, headers={"Authorization": f"Bearer {admin}"}, timeout=60)
    a = http.post(
        "/v1/projects",
        json={
            "name": "pile-regmix",
            "objective": {PILE_CC: 1.0},
            "description": "RegMix 1M proxy runs (Liu et al. 2024)",
        },
    ).json()
    files = {
        "mixtures": ("m.csv", (REGMIX_DIR / "train_mixture_1m.csv").read_bytes(), "text/csv"),
        "metrics": ("l.csv", (REGMIX_DIR / "train_pile_loss_1m.csv").read_bytes(), "text/csv"),
    }
    r = http.post(
        f"/v1/projects/{a['id']}/runs/import",
        files=files,
        data={"tags": "regmix,1m", "model_params": "1000000", "train_tokens": "1000000000"},
    )
    assert r.status_code == 201, r.text
    run_ids = r.json()["ids"]
    domains = http.get(f"/v1/projects/{a['id']}").json()["domains"]
    r = http.patch(
        f"/v1/projects/{a['id']}",
        json={
            "domains": [
                {
                    "name": d["name"],
                    "token_count": int(PILE_TOKENS[d["name"]]),
                    "documents": int(PILE_TOKENS[d["name"]] // 2000),
                    "trainer_paths": {
                        "olmo-core": [f"/tok/{d['name']}/part-0.npy"],
                        "megatron": [f"/tok/{d['name']}_text_document"],
                    },
                }
                for d in domains
            ],
            "constraints": {
                "target_tokens": 25 * 10**9,
                "max_epochs": 4,
                "sequence_length": 2048,
                "global_batch_tokens": 2048 * 512,
                "seed": 42,
            },
        },
    )
    assert r.status_code == 200, r.text

    fits = {}
    for estimator in ("regmix_lgbm", "regmix_linear"):
        r = http.post(f"/v1/projects/{a['id']}/fits", json={"estimator": estimator})
        assert r.status_code == 202, r.text
        fits[estimator] = _wait(http, r.json()["job"]["id"])["result"]["fit_id"]
    r = http.post(
        f"/v1/projects/{a['id']}/recommendations",
        json={
            "fit_id": fits["regmix_lgbm"],
            "n_boot": 2,
            "constraints": {
                "bounds": {"the_pile_pile_cc": {"max": 0.5}},
                "target_tokens": 25 * 10**9,
                "max_epochs": 4,
            },
        },
    )
    assert r.status_code == 202, r.text
    rec_id = _wait(http, r.json()["job"]["id"])["result"]["recommendation_id"]

    curve_run = run_ids[0]
    points = [
        {
            "step": s,
            "tokens": s * 4096,
            "metrics": {
                PILE_CC: 4.2 + 6.0 / (1 + s / 200),
                "metric/the_pile_github_val_loss": 2.5 + 7.0 / (1 + s / 150),
                "metric/the_pile_arxiv_val_loss": 3.6 + 6.5 / (1 + s / 180),
            },
        }
        for s in range(0, 2001, 100)
    ]
    assert (
        http.post(
            f"/v1/projects/{a['id']}/runs/{curve_run}/curve", json={"points": points}
        ).status_code
        == 200
    )

    online = http.post(
        f"/v1/projects/{a['id']}/online-sessions",
        json={
            "algorithm": "odm",
            "domains": ONLINE_DOMAINS,
            "name": "1B run",
            "seed": 1,
            "schedule": {"every_seconds": 3600, "every_observations": 100000},
        },
    ).json()
    for start in (1, 41):
        add_online_observations(http, a["id"], online["id"], range(start, start + 40))
        remix(online["id"])

    b = http.post(
        "/v1/projects", json={"name": "other-team", "domains": [{"name": "web"}, {"name": "code"}]}
    ).json()
    b_run = http.post(
        f"/v1/projects/{b['id']}/runs",
        json={"mixture": {"web": 0.7, "code": 0.3}, "metrics": {"loss": 3.0}},
    ).json()
    token_a = http.post(
        "/v1/tokens", json={"name": "team A", "role": "write", "project_ids": [a["id"]]}
    ).json()["token"]
    yield {
        "admin": admin,
        "token_a": token_a,
        "a": a["id"],
        "b": b["id"],
        "b_run": b_run["id"],
        "fits": fits,
        "rec": rec_id,
        "curve_run": curve_run,
        "plain_run": run_ids[1],
        "online": online["id"],
        "http": http,
        "domains": [d["name"] for d in domains],
    }
    http.close()


def add_online_observations(http, project_id: int, session_id: int, steps) -> None:
    obs = [
        {
            "step": t,
            "tokens": t * 4096,
            "train_losses": {
                "the_pile_pile_cc": 5.0 - t / 100,
                "the_pile_github": 3.0 - t / 200,
                "the_pile_arxiv": 4.5 - t / 150,
                "the_pile_wikipedia_en": 4.8 - t / 120,
            },
        }
        for t in steps
    ]
    r = http.post(
        f"/v1/projects/{project_id}/online-sessions/{session_id}/observations",
        json={"observations": obs},
    )
    assert r.status_code == 200, r.text


def remix(session_id: int) -> None:
    from app.services import online
    from app.store.db import session_scope
    from app.store.models import OnlineSession

    with session_scope() as s:
        online.remix(s, session_id)  # the worker's beat tick may have re-mixed these first
        assert s.get(OnlineSession, session_id).version >= 1 and not online._pending(s, session_id)


@pytest.fixture(scope="module")
def browser():
    executable = chromium_or_skip()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


def logged_in_context(browser, server: str, token: str, height: int = 800):
    """A browser context logged in with ``token`` through the login form (the dashboard
    redirects there first)."""
    ctx = browser.new_context(viewport={"width": 1280, "height": height}, base_url=server)
    page = ctx.new_page()
    page.goto("/dashboard")
    assert "/dashboard/login" in page.url
    page.fill("#token", token)
    page.click("button[type=submit]")
    page.wait_for_url(f"{server}/dashboard")
    page.close()
    return ctx


@pytest.fixture(scope="module")
def context(browser, server, seeded):
    """A browser context logged in as team A through the login form."""
    ctx = logged_in_context(browser, server, seeded["token_a"])
    yield ctx
    ctx.close()


@pytest.fixture
def page(context):
    """A fresh tab; any console error or uncaught exception fails the test."""
    p = context.new_page()
    errors: list[str] = []
    p.on(
        "console",
        lambda m: errors.append(f"console.{m.type}: {m.text}") if m.type == "error" else None,
    )
    p.on("pageerror", lambda e: errors.append(f"pageerror: {e}"))
    p.errors = errors
    yield p
    p.close()
    assert not [e for e in errors if not getattr(p, "expect_404", False) or "404" not in e], errors


def screenshot(page, name: str, docs: bool = False) -> None:
    """Screenshots go to artifacts/ (ignored by git): tests never write tracked files. The
    README's pictures in docs/screenshots/ are refreshed by hand, with MIXOPT_UPDATE_DOCS=1."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"))
    if docs and os.environ.get("MIXOPT_UPDATE_DOCS") == "1":
        DOCS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(DOCS / f"{name}.png"))
