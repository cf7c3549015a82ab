"""Helpers the dashboard tests share: logging in through the form, and waiting on a page in
headless Chromium (a JS predicate polled from Python, a chart's drawn state, the page's ready
flag)."""

from __future__ import annotations

import time


def login(client, token: str):
    """POST the login form; the answer carries the session cookie (303) or the error page."""
    return client.post(
        "/dashboard/login", data={"token": token, "next": "/dashboard"}, follow_redirects=False
    )


#: what a chart drew: the Chart.js instance's datasets and the canvas's painted pixels
CHART_STATE = """(id) => {
  const canvas = document.getElementById(id);
  const chart = canvas && window.Chart ? Chart.getChart(canvas) : null;
  if (!chart) return null;
  const pixels = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
  let painted = 0;
  for (let i = 3; i < pixels.length; i += 4) if (pixels[i] > 0) painted++;
  return {width: canvas.width, height: canvas.height, painted: painted, type: chart.config.type,
          datasets: chart.data.datasets.map((d) => ({label: d.label, n: d.data.length}))};
}"""


def wait_js(page, predicate: str, arg=None, timeout: float = 10.0) -> None:
    """Poll a JS predicate from Python: Playwright's own wait_for_function evaluates strings
    inside the page, which the dashboard's CSP (no 'unsafe-eval') rightly refuses."""
    deadline = time.monotonic() + timeout
    while not page.evaluate(predicate, arg):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {predicate} ({arg!r})")
        time.sleep(0.05)


def chart_state(page, canvas_id: str) -> dict:
    wait_js(
        page,
        "(id) => { const c = document.getElementById(id); return !!(c && window.Chart && "
        "Chart.getChart(c) && Chart.getChart(c).data.datasets.length > 0); }",
        canvas_id,
    )
    state = page.evaluate(CHART_STATE, canvas_id)
    assert state["width"] > 100 and state["height"] > 100, state
    assert state["painted"] > 2000, f"canvas {canvas_id} looks blank: {state}"
    return state


def ready(page) -> None:
    wait_js(page, "() => document.body.dataset.ready === '1'")
