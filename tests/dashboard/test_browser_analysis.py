"""The analysis views in headless Chromium, on a small seed of their own (96 RegMix runs, one
two-metric LightGBM fit, two recommendations from 5,000 samples: seconds, not the 512-run seed of
test_browser.py): a reference-constrained recommendation's card and the baselines' predicted
objective, recommendations compared side by side, the Pareto front of the fit's predictions,
what-if epoch and availability warnings with group totals, loss curves of several runs
overlaid, and a fit and a recommendation started from the page. Screenshots in artifacts/
(docs/screenshots/ with MIXOPT_UPDATE_DOCS=1); any console error fails a test."""

from __future__ import annotations

import re

import pytest

from tests.conftest import REGMIX_DIR
from tests.dashboard.conftest import PILE_CC, PILE_TOKENS, _wait, logged_in_context, screenshot
from tests.dashboard.pages import chart_state, ready, wait_js

GITHUB = "metric/the_pile_github_val_loss"
N_RUNS = 96
#: declared group paths, so the what-if page and the comparison show group totals
GROUPS = {
    "the_pile_pile_cc": "web",
    "the_pile_wikipedia_en": "web",
    "the_pile_hackernews": "web",
    "the_pile_gutenberg_pg_19": "web",
    "the_pile_github": "code",
    "the_pile_stackexchange": "code",
    "the_pile_ubuntu_irc": "code",
}


def _head(path, n: int) -> bytes:
    return b"\n".join(path.read_bytes().splitlines()[: n + 1]) + b"\n"


@pytest.fixture(scope="module")
def teams(server, worker):
    """One project: the first 96 RegMix 1M runs with Pile token counts and groups, a 25B-token
    target at 4 epochs, a two-metric objective, a RegMix LightGBM fit (3 folds), a recommendation
    against natural and one with pile_cc at least 0.3 (5,000 samples instead of the paper's
    100,000), curves on three runs; a write token for it."""
    import httpx

    from app.services import tokens
    from app.store.db import session_scope

    with session_scope() as s:
        _, admin = tokens.create_token(s, "teams admin", "admin")
    http = httpx.Client(base_url=server, headers={"Authorization": f"Bearer {admin}"}, timeout=60)
    p = http.post(
        "/v1/projects", json={"name": "pile-teams", "objective": {PILE_CC: 0.5, GITHUB: 0.5}}
    ).json()
    files = {
        "mixtures": ("m.csv", _head(REGMIX_DIR / "train_mixture_1m.csv", N_RUNS), "text/csv"),
        "metrics": ("l.csv", _head(REGMIX_DIR / "train_pile_loss_1m.csv", N_RUNS), "text/csv"),
    }
    r = http.post(
        f"/v1/projects/{p['id']}/runs/import",
        files=files,
        data={"model_params": "1000000", "train_tokens": "1000000000"},
    )
    assert r.status_code == 201, r.text
    run_ids = r.json()["ids"]
    domains = [d["name"] for d in http.get(f"/v1/projects/{p['id']}").json()["domains"]]
    r = http.patch(
        f"/v1/projects/{p['id']}",
        json={
            "domains": [
                {
                    "name": d,
                    "token_count": int(PILE_TOKENS[d]),
                    **({"group": GROUPS[d]} if d in GROUPS else {}),
                }
                for d in domains
            ],
            "constraints": {"target_tokens": 25 * 10**9, "max_epochs": 4},
        },
    )
    assert r.status_code == 200, r.text
    r = http.post(f"/v1/projects/{p['id']}/fits", json={"estimator": "regmix_lgbm", "cv_folds": 3})
    assert r.status_code == 202, r.text
    fit = _wait(http, r.json()["job"]["id"])["result"]["fit_id"]
    recs = []
    for extra in (
        {"reference": {"baseline": "natural"}},
        {
            "constraints": {
                "bounds": {"the_pile_pile_cc": {"min": 0.3}},
                "target_tokens": 25 * 10**9,
                "max_epochs": 4,
            }
        },
    ):
        r = http.post(
            f"/v1/projects/{p['id']}/recommendations",
            json={
                "fit_id": fit,
                "n_boot": 2,
                "allow_untrusted": True,
                "n_samples": 5000,
                "top_k": 32,
                **extra,
            },
        )
        assert r.status_code == 202, r.text
        recs.append(_wait(http, r.json()["job"]["id"])["result"]["recommendation_id"])
    for k, rid in enumerate(run_ids[:3]):
        points = [
            {
                "step": s,
                "tokens": s * 4096,
                "metrics": {
                    PILE_CC: 4.2 + k * 0.2 + 6.0 / (1 + s / 200),
                    GITHUB: 2.5 + 7.0 / (1 + s / (150 + 50 * k)),
                },
            }
            for s in range(0, 2001, 100)
        ]
        assert (
            http.post(
                f"/v1/projects/{p['id']}/runs/{rid}/curve", json={"points": points}
            ).status_code
            == 200
        )
    token = http.post(
        "/v1/tokens", json={"name": "team", "role": "write", "project_ids": [p["id"]]}
    ).json()["token"]
    yield {
        "http": http,
        "p": p["id"],
        "fit": fit,
        "recs": recs,
        "runs": run_ids,
        "domains": domains,
        "token": token,
    }
    http.close()


@pytest.fixture(scope="module")
def context(browser, server, teams):
    ctx = logged_in_context(browser, server, teams["token"], height=900)
    yield ctx
    ctx.close()


def test_reference_comparison_and_baseline_predictions(page, teams):
    rec_id = teams["recs"][0]
    rec = teams["http"].get(f"/v1/projects/{teams['p']}/recommendations/{rec_id}").json()
    ref = rec["details"]["reference"]
    assert all(m["gain"] >= -1e-7 for m in ref["metrics"]) and len(ref["metrics"]) == 2

    page.goto(f"/dashboard/projects/{teams['p']}/mixtures")
    ready(page)
    card = page.locator(f"#rec-{rec_id}")
    text = card.locator(".reference").inner_text()
    assert "Against baseline natural" in card.inner_text()
    if ref["status"] == "improves":
        assert f"{ref['objective_gain']:+.4f}" in text
    else:
        assert "no improvement possible" in text
    assert f"{ref['metrics'][0]['gain']:+.4f}" in text
    assert "Predicted objective (fit #" in page.locator("#baselines-table").inner_text()
    cells = page.locator("#baselines-table td.predicted").all_inner_texts()
    assert cells and all(c.strip() not in ("", "—") for c in cells), cells
    # uniform gives every Pile domain 1/17 of 25B tokens: enron's 0.2B cannot take that in 4 epochs
    assert "the_pile_enron_emails:" in page.locator("#baselines-table").inner_text()
    card.scroll_into_view_if_needed()
    screenshot(page, "mixtures-reference", docs=True)


def test_recommendations_compared_side_by_side(page, teams):
    a, b = teams["recs"]
    page.goto(f"/dashboard/projects/{teams['p']}/mixtures")
    ready(page)
    page.check(f"#rec-{a} input.compare-pick")
    page.check(f"#rec-{b} input.compare-pick")
    page.click("#compare-button")
    page.wait_for_url(re.compile(r".*/compare\?rec=\d+&rec=\d+"))
    ready(page)
    order = [int(i) for i in re.findall(r"rec=(\d+)", page.url)]  # the page's order: newest first
    assert sorted(order) == sorted([a, b])
    state = chart_state(page, "mixtures-chart")
    assert [d["label"] for d in state["datasets"]] == [f"rec #{i} (regmix_lgbm)" for i in order]
    recs = [
        teams["http"].get(f"/v1/projects/{teams['p']}/recommendations/{i}").json() for i in order
    ]
    enron = page.locator(
        "tr.weight-row[data-domain=the_pile_enron_emails] td.num"
    ).all_inner_texts()
    assert enron == [f"{r['mixture']['the_pile_enron_emails']:.4f}" for r in recs]
    web = page.locator("tr.group-row[data-group=web] td.num").all_inner_texts()
    assert web == [
        f"{sum(r['mixture'][d] for d, g in GROUPS.items() if g == 'web'):.4f}" for r in recs
    ]
    assert page.locator("tr.metric-row").count() == 2  # per-metric predictions: pile_cc and github
    assert "the_pile_pile_cc in [0.3, 1]" in page.locator("#row-constraints").inner_text()
    assert "baseline natural" in page.locator("#row-reference").inner_text()
    assert "regmix_lgbm" in page.locator("#row-estimator").inner_text()
    screenshot(page, "compare", docs=True)


def test_pareto_front_with_the_reference(page, teams):
    page.goto(f"/dashboard/projects/{teams['p']}/pareto")
    ready(page)
    state = chart_state(page, "pareto-chart")
    labels = [d["label"] for d in state["datasets"]]
    assert labels[0] == "candidates (2000)" and labels[1].startswith("Pareto front (")
    assert "reference: natural" in labels and any(lab.startswith("rec #") for lab in labels)
    front = int(re.search(r"\((\d+)\)", labels[1]).group(1))
    assert 2 <= front == page.locator("#pareto-front tbody tr").count()
    assert "non-dominated on all 2 metrics" in page.locator("#pareto-summary").inner_text()
    # from the reference-constrained recommendation's card: its reference is the one marked
    page.goto(f"/dashboard/projects/{teams['p']}/pareto?rec={teams['recs'][0]}")
    ready(page)
    assert "reference: baseline natural" in [
        d["label"] for d in chart_state(page, "pareto-chart")["datasets"]
    ]
    screenshot(page, "pareto", docs=True)


def test_whatif_warns_about_epochs_and_availability(page, teams):
    page.goto(f"/dashboard/projects/{teams['p']}/whatif?fit={teams['fit']}")
    ready(page)
    assert (
        page.locator("#whatif-availability").get_attribute("data-warnings") == "0"
    )  # natural fits the caps
    enron = teams["domains"].index("the_pile_enron_emails")
    page.locator(f"#w-{enron}").fill("0.5")
    # 0.5 x 25B tokens on enron's 0.2B: 62.5 epochs, 15.6x its 4-epoch cap
    wait_js(page, "() => document.querySelector('#whatif-warnings').textContent.includes('enron')")
    warnings = page.locator("#whatif-warnings").inner_text()
    assert "the_pile_enron_emails: 62.50 epochs at weight 0.500, 15.6x its 4-epoch cap" in warnings
    assert (
        page.locator("#whatif-epochs tr[data-domain=the_pile_enron_emails] td.over").inner_text()
        == "62.5×"
    )
    web = float(page.locator("#whatif-groups tr[data-group=web] td.num").inner_text())
    sliders = [
        float(v)
        for v in page.locator("#whatif-sliders input").evaluate_all("els => els.map(e => e.value)")
    ]
    assert web == pytest.approx(
        sum(sliders[teams["domains"].index(d)] for d, g in GROUPS.items() if g == "web"), abs=1e-3
    )
    page.locator("#whatif-availability").scroll_into_view_if_needed()
    screenshot(page, "whatif-warnings", docs=True)


def test_loss_curves_overlaid(page, teams):
    page.goto(f"/dashboard/projects/{teams['p']}")
    ready(page)
    for rid in teams["runs"][:3]:
        page.check(f"#runs-table tr[data-run-id='{rid}'] input.overlay-pick")
    assert page.locator("#runs-overlay").inner_text() == "Overlay curves (3)"
    page.click("#runs-overlay")
    page.wait_for_url(re.compile(r".*/curves\?runs="))
    ready(page)
    state = chart_state(page, "overlay-chart")
    assert [d["n"] for d in state["datasets"]] == [21, 21, 21]
    page.select_option("#curves-metric", GITHUB)
    page.select_option("#curves-x", "tokens")
    page.click("#curves-form button[type=submit]")
    page.wait_for_url(re.compile(r".*x=tokens"))
    ready(page)
    chart = page.evaluate(
        "() => { const c = Chart.getChart(document.getElementById('overlay-chart')); "
        "return {x: c.options.scales.x.title.text, last: c.data.datasets[0].data.at(-1)}; }"
    )
    assert chart["x"] == "tokens" and chart["last"]["x"] == 2000 * 4096
    assert chart["last"]["y"] == pytest.approx(2.5 + 7.0 / (1 + 2000 / 150))
    screenshot(page, "curves", docs=True)


def test_fit_and_recommendation_started_from_the_page(page, teams):
    page.goto(f"/dashboard/projects/{teams['p']}/fits")
    ready(page)
    page.select_option("#fit-estimator", "regmix_linear")
    page.fill("#fit-folds", "3")
    page.click("#fit-form button[type=submit]")
    page.wait_for_url(re.compile(r".*/fits\?job=[0-9a-f]{32}"))
    ready(page)
    wait_js(
        page, "() => document.querySelector('#started').dataset.state === 'succeeded'", timeout=60
    )
    link = page.locator("#started .job-result").inner_text()
    fit_id = int(re.search(r"fit #(\d+)", link).group(1))
    fit = teams["http"].get(f"/v1/projects/{teams['p']}/fits/{fit_id}").json()
    assert fit["estimator"] == "regmix_linear" and fit["status"] == "succeeded"
    assert set(fit["target"]) == {PILE_CC, GITHUB}
    screenshot(page, "fit-started", docs=True)

    page.reload()
    ready(page)
    page.select_option("#rec-fit", str(fit_id))
    page.select_option("#rec-reference", "natural")
    page.fill("#rec-boot", "0")
    page.check("#rec-form input[name=allow_untrusted]")
    page.click("#rec-form button[type=submit]")
    page.wait_for_url(re.compile(r".*/fits\?job="))
    ready(page)
    wait_js(
        page, "() => document.querySelector('#started').dataset.state === 'succeeded'", timeout=60
    )
    rec_id = int(
        re.search(
            r"recommendation #(\d+)", page.locator("#started .job-result").inner_text()
        ).group(1)
    )
    rec = teams["http"].get(f"/v1/projects/{teams['p']}/recommendations/{rec_id}").json()
    assert rec["fit_id"] == fit_id and rec["details"]["reference"]["label"] == "baseline natural"
    page.click("#started .job-result")
    ready(page)
    assert "Against baseline natural" in page.locator(f"#rec-{rec_id}").inner_text()
