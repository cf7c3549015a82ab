"""The proposed-mixtures page in headless Chromium for a reference-constrained recommendation:
its card says how it compares with the natural baseline (gain per metric with an interval),
the baselines table shows their predicted objective and epoch warnings, and the page has no
console errors. Screenshot in artifacts/ (docs/screenshots/ with MIXOPT_UPDATE_DOCS=1)."""

from __future__ import annotations

from tests.dashboard.conftest import _wait, screenshot
from tests.dashboard.test_browser import ready


def test_reference_comparison_and_baseline_predictions(page, seeded):
    http = seeded["http"]
    r = http.post(f"/v1/projects/{seeded['a']}/recommendations", json={
        "fit_id": seeded["fits"]["regmix_linear"], "n_boot": 2, "allow_untrusted": True,
        "reference": {"baseline": "natural"}})
    assert r.status_code == 202, r.text
    rec_id = _wait(http, r.json()["job"]["id"])["result"]["recommendation_id"]
    rec = http.get(f"/v1/projects/{seeded['a']}/recommendations/{rec_id}").json()
    ref = rec["details"]["reference"]
    assert all(m["gain"] >= -1e-7 for m in ref["metrics"])

    page.goto(f"/dashboard/projects/{seeded['a']}/mixtures")
    ready(page)
    card = page.locator(f"#rec-{rec_id}")
    text = card.locator(".reference").inner_text()
    assert "Against baseline natural" in card.inner_text()
    if ref["status"] == "improves":
        assert f"{ref['objective_gain']:+.4f}" in text
    else:
        assert "no improvement possible" in text
    assert f"{ref['metrics'][0]['gain']:+.4f}" in text
    table = page.locator("#baselines-table").inner_text()
    assert "Predicted objective (fit #" in table
    cells = page.locator("#baselines-table td.predicted").all_inner_texts()
    assert cells and all(c.strip() not in ("", "—") for c in cells), cells
    # uniform gives every Pile domain 1/17 of 25B tokens: enron's 0.2B cannot take that in 4 epochs
    assert "the_pile_enron_emails:" in page.locator("#baselines-table").inner_text()
    card.scroll_into_view_if_needed()
    screenshot(page, "mixtures-reference", docs=True)
