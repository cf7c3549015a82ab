"""The dashboard in real headless Chromium: every page renders its charts without console
errors, the what-if sliders stay on the simplex and change the prediction, online charts
update live, and a token never reaches another project's data."""

from __future__ import annotations

import io
import json
import zipfile

import pytest

from tests.dashboard.conftest import ONLINE_DOMAINS, add_online_observations, remix, screenshot
from tests.dashboard.pages import chart_state, ready, wait_js


def test_projects_list_shows_only_the_tokens_projects(page, seeded, context):
    page.goto("/dashboard")
    rows = page.locator("#projects-table tbody tr")
    assert rows.count() == 1
    row = page.locator(f"tr[data-project-id='{seeded['a']}']")
    assert row.locator("[data-col=runs]").inner_text() == "512"
    assert row.locator("[data-col=fits]").inner_text() == "2"
    assert row.locator("[data-col=recommendations]").inner_text() == "1"
    assert row.locator("[data-col=online]").inner_text() == "1"
    assert "other-team" not in page.content()
    cookie = next(c for c in context.cookies() if c["name"] == "mixopt_token")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and not cookie["secure"]
    assert "mixopt_token" not in page.evaluate("document.cookie")  # scripts cannot read the token
    screenshot(page, "projects")


def test_overview_domains_coverage_and_runs_table(page, seeded):
    page.goto(f"/dashboard/projects/{seeded['a']}")
    ready(page)
    coverage = chart_state(page, "coverage-chart")
    assert [d["label"] for d in coverage["datasets"]] == ["runs", "median", "natural"]
    assert coverage["datasets"][0]["n"] == 512 * 17 and coverage["datasets"][1]["n"] == 17
    assert page.locator("#domains-table tbody tr").count() == 17
    # uniform puts 25B/17 tokens on Enron's 0.2B: 7.4 epochs > 4
    assert "the max epochs" in page.locator("#epochs-warning").inner_text()
    enron = page.locator("#domains-table tbody tr", has_text="the_pile_enron_emails")
    assert enron.locator("td.over").count() >= 1
    screenshot(page, "overview", docs=True)

    info = page.locator("#runs-page-info")
    assert info.inner_text() == "page 1 of 21 · 512 runs"
    assert page.locator("#runs-table tbody tr").count() == 25
    page.click("#runs-table th[data-sort=objective]")
    values = [
        float(t) for t in page.locator("#runs-table tbody tr td:nth-child(5)").all_inner_texts()
    ]
    assert values == sorted(values)
    page.click("#runs-table th[data-sort=objective]")
    desc = [
        float(t) for t in page.locator("#runs-table tbody tr td:nth-child(5)").all_inner_texts()
    ]
    assert desc == sorted(desc, reverse=True) and desc[0] > values[0]
    page.click("#runs-next")
    assert info.inner_text().startswith("page 2 of 21")
    page.fill("#runs-filter", "no-such-run")
    assert page.locator("#runs-table tbody").inner_text() == "No runs match."
    page.fill("#runs-filter", "")
    page.select_option("#runs-status", "failed")
    assert info.inner_text() == "page 1 of 1 · 0 runs"
    page.select_option("#runs-status", "")
    screenshot(page, "runs-table")

    # the CSV downloads are the existing export endpoint, authorised by the cookie
    resp = page.request.get(page.locator("#csv-zip").get_attribute("href"))
    assert resp.status == 200
    with zipfile.ZipFile(io.BytesIO(resp.body())) as zf:
        assert len(zf.read("train_mixture.csv").decode().splitlines()) == 513


def test_proposed_mixtures_and_exports(page, seeded):
    page.goto(f"/dashboard/projects/{seeded['a']}/mixtures")
    ready(page)
    state = chart_state(page, "mixtures-chart")
    labels = [d["label"] for d in state["datasets"]]
    assert (
        labels[0].startswith(f"rec #{seeded['rec']}")
        and "natural" in labels
        and "uniform" in labels
    )
    assert all(d["n"] == 17 for d in state["datasets"])
    card = page.locator(f"#rec-{seeded['rec']}")
    assert "regmix_lgbm" in card.inner_text()
    # the card lists the binding constraints the recommendation stored (RegMix's top-k average
    # rarely sits exactly on a bound, so that list may be empty: the page then says "none")
    from app.store.db import session_scope
    from app.store.models import Recommendation

    with session_scope() as s:
        binding = s.get(Recommendation, seeded["rec"]).binding
    shown = card.locator(".binding").inner_text()
    assert all(b in shown for b in binding) and (binding or shown.strip() == "none")
    assert "ρ 0.9" in card.inner_text()  # the source fit's cross-validated Spearman
    screenshot(page, "proposed-mixtures", docs=True)

    exports = {}
    for fmt in ("json", "olmo-core", "megatron"):
        href = card.locator(f"a[data-format='{fmt}']").get_attribute("href")
        resp = page.request.get(href)
        assert resp.status == 200 and "attachment" in resp.headers["content-disposition"], (
            fmt,
            resp.text(),
        )
        exports[fmt] = _export_text(resp.body())
    # the HF script reads each domain's raw data, which these imported runs' domains lack: the
    # page says which field is missing instead of inventing a path
    resp = page.request.get(card.locator("a[data-format='hf']").get_attribute("href"))
    assert resp.status == 422 and "source path" in resp.text()
    doc = json.loads(exports["json"])
    weights = doc["mixture"]
    assert list(weights) == seeded["domains"] and sum(weights.values()) == pytest.approx(
        1, abs=1e-6
    )
    assert weights["the_pile_pile_cc"] <= 0.5 + 1e-6
    # the trainer files name the tokenised paths the project declares for each trainer
    assert (
        "source_list" in exports["olmo-core"]
        and "/tok/the_pile_pile_cc/part-0.npy" in exports["olmo-core"]
    )
    assert "/tok/the_pile_pile_cc_text_document" in exports["megatron"]


def _export_text(body: bytes) -> str:
    """An export's text: the file itself, or every file of a multi-file (zip) export."""
    import io
    import zipfile

    if body[:2] == b"PK":
        with zipfile.ZipFile(io.BytesIO(body)) as zf:
            return "\n".join(zf.read(n).decode() for n in zf.namelist())
    return body.decode()


def test_fit_quality_scatter_per_estimator(page, seeded):
    page.goto(f"/dashboard/projects/{seeded['a']}/fits")
    ready(page)
    rows = page.locator("#fits-table tbody tr")
    assert rows.count() == 2
    for fit_id in seeded["fits"].values():
        rho = float(page.locator(f"#fit-{fit_id} [data-metric=spearman]").inner_text())
        r2 = float(page.locator(f"#fit-{fit_id} [data-metric=r2]").inner_text())
        assert 0.5 < rho <= 1 and 0 < r2 <= 1
        state = chart_state(page, f"scatter-{fit_id}")
        assert state["datasets"][0]["n"] == 512 and state["datasets"][1]["label"] == "y = x"
    lgbm = float(
        page.locator(f"#fit-{seeded['fits']['regmix_lgbm']} [data-metric=spearman]").inner_text()
    )
    assert lgbm > 0.95
    screenshot(page, "fit-quality", docs=True)


def test_whatif_sliders_stay_on_simplex_and_change_the_prediction(page, seeded):
    page.goto(f"/dashboard/projects/{seeded['a']}/whatif?fit={seeded['fits']['regmix_lgbm']}")
    ready(page)
    chart_state(page, "whatif-chart")
    wait_js(page, "() => document.querySelector('#whatif-prediction').dataset.value !== undefined")
    before = float(page.locator("#whatif-prediction").get_attribute("data-value"))
    weights = [
        float(v)
        for v in page.locator("#whatif-sliders input").evaluate_all("els => els.map(e => e.value)")
    ]
    assert sum(weights) == pytest.approx(1, abs=1e-6)

    pile_cc = seeded["domains"].index("the_pile_pile_cc")
    slider = page.locator(f"#w-{pile_cc}")
    slider.fill("0.9")
    wait_js(
        page,
        "(b) => Number(document.querySelector('#whatif-prediction').dataset.value) !== b",
        before,
    )
    after = float(page.locator("#whatif-prediction").get_attribute("data-value"))
    moved = [
        float(v)
        for v in page.locator("#whatif-sliders input").evaluate_all("els => els.map(e => e.value)")
    ]
    assert moved[pile_cc] == pytest.approx(0.9, abs=1e-6) and sum(moved) == pytest.approx(
        1, abs=1e-6
    )
    # the others were rescaled proportionally (ratios kept)
    others = [i for i in range(len(weights)) if i != pile_cc and weights[i] > 0.01]
    i, j = others[:2]
    assert moved[i] / moved[j] == pytest.approx(weights[i] / weights[j], rel=1e-3)
    assert after != pytest.approx(before, abs=1e-9)
    # the page shows what the API predicts for that mixture
    mixture = dict(zip(seeded["domains"], moved, strict=True))
    api = (
        seeded["http"]
        .post(
            f"/v1/projects/{seeded['a']}/fits/{seeded['fits']['regmix_lgbm']}/predict",
            json={"mixtures": [mixture], "normalize": True},
        )
        .json()
    )
    assert api["objective"][0] == pytest.approx(after, rel=1e-6)
    assert "vs natural" in page.locator("#whatif-std").inner_text()

    # switching the fit predicts again with the other estimator
    page.select_option("#whatif-fit", str(seeded["fits"]["regmix_linear"]))
    wait_js(
        page,
        "(b) => Number(document.querySelector('#whatif-prediction').dataset.value) !== b",
        after,
    )
    screenshot(page, "what-if")


def test_run_loss_curves(page, seeded):
    page.goto(f"/dashboard/projects/{seeded['a']}/runs/{seeded['curve_run']}")
    ready(page)
    curves = chart_state(page, "curve-chart")
    assert len(curves["datasets"]) == 3 and all(d["n"] == 21 for d in curves["datasets"])
    chart_state(page, "run-mixture-chart")
    screenshot(page, "run")
    page.goto(f"/dashboard/projects/{seeded['a']}/runs/{seeded['plain_run']}")
    ready(page)
    assert page.locator("#curve-empty").is_visible()


def test_online_session_updates_live(page, seeded):
    page.goto(f"/dashboard/projects/{seeded['a']}/online")
    ready(page)
    wait_js(page, "() => document.body.dataset.onlineVersion === '3'")
    weights = chart_state(page, "online-weights-chart")
    assert [d["label"] for d in weights["datasets"]] == [
        d.removeprefix("the_pile_") for d in ONLINE_DOMAINS
    ]
    assert all(d["n"] == 3 for d in weights["datasets"])
    losses = chart_state(page, "online-losses-chart")
    assert len(losses["datasets"]) == 4 and all(d["n"] == 80 for d in losses["datasets"])
    screenshot(page, "online")
    # the trainer reports more and the session re-mixes: the open page follows without a reload
    add_online_observations(seeded["http"], seeded["a"], seeded["online"], range(81, 101))
    remix(seeded["online"])
    wait_js(page, "() => document.body.dataset.onlineVersion === '4'")
    assert page.locator("#online-observations").inner_text() == "100"


def test_jobs_page_lists_jobs_with_progress(page, seeded):
    page.goto("/dashboard/jobs")
    wait_js(page, "() => document.querySelector('#jobs-status').textContent.includes('updated')")
    rows = page.locator("#jobs-table tbody tr")
    assert rows.count() == 3  # two fits and a recommendation, all in project A
    assert page.locator("#jobs-table progress").count() == 3
    assert page.locator("#jobs-table .badge.succeeded").count() == 3
    screenshot(page, "jobs")


def test_another_projects_data_is_not_reachable(page, seeded):
    page.expect_404 = True  # the browser logs each 404 response as a console error
    b = seeded["b"]
    for path in (
        f"/dashboard/projects/{b}",
        f"/dashboard/projects/{b}/fits",
        f"/dashboard/projects/{b}/whatif",
        f"/dashboard/projects/{seeded['a']}/runs/{seeded['b_run']}",
    ):
        resp = page.goto(path)
        assert resp.status == 404, path
        assert "not found" in page.locator("#error-message").inner_text()
    screenshot(page, "not-found")
    page.goto(f"/dashboard/projects/{seeded['a']}")
    statuses = page.evaluate(
        """async (b) => Promise.all([
        fetch('/v1/projects/' + b).then(r => r.status),
        fetch('/v1/projects/' + b + '/runs').then(r => r.status),
        fetch('/dashboard/api/projects/' + b + '/runs').then(r => r.status)])""",
        b,
    )
    assert statuses == [404, 404, 404]
