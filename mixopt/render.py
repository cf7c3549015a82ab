"""Tables and lines shared by the CLI and the demo: fits, recommendations, validations.

This module imports nothing of :mod:`mixopt.cli` or :mod:`mixopt.demo` (both import it), so
the printers have one home and no import cycle. Printers write to the ``console`` given.
"""

from __future__ import annotations

import json
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from mixopt.api_types import Fit, Recommendation

#: the cross-validated figures of a fit, in the order they are shown
FIDELITY_KEYS = ("spearman", "pearson", "mae", "r2", "regret")


def fmt(v: Any, digits: int = 4) -> str:
    """A cell: ``-`` for None, floats to ``digits`` significant digits."""
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{digits}g}"
    return str(v)


def print_fit(console: Console, fit: Fit) -> None:
    """A fit: estimator, runs, status, target, its cross-validated fidelity and, for ``auto``,
    the estimators it compared."""
    pooled = (fit.fidelity or {}).get("pooled") or {}
    console.print(
        f"fit {fit.id}: {escape(fit.estimator)} on {len(fit.run_ids)} runs, "
        f"{fit.status}; target {escape(json.dumps(fit.target))}",
        highlight=False,
    )
    if pooled:
        table = Table("cross-validated", "value")
        for k in ("spearman", "pearson", "mae", "r2", "regret", "n"):
            if k in pooled:
                table.add_row(k, fmt(pooled[k]))
        console.print(table)
    ranking = (fit.fidelity or {}).get("candidates") or (fit.state or {}).get("candidates")
    if isinstance(ranking, list) and ranking:
        table = Table("estimator", "CV spearman", "CV MAE", title="auto: estimators compared")
        for row in ranking:
            if isinstance(row, dict):
                name = row.get("estimator", row.get("name", "?"))
                table.add_row(escape(str(name)), fmt(row.get("spearman")), fmt(row.get("mae")))
        console.print(table)
    if fit.error:
        console.print(f"error: {escape(fit.error)}")


def print_recommendation(console: Console, rec: Recommendation, fit: Fit | None = None) -> None:
    """A recommendation: its mixture, predicted objective and interval, binding constraints
    and, with its fit, how far to trust it."""
    interval = (
        f" [{rec.interval_low:.4g}, {rec.interval_high:.4g}]"
        if rec.interval_low is not None and rec.interval_high is not None
        else ""
    )
    console.print(
        f"recommendation {rec.id} from {escape(rec.source)}"
        f"{f' (fit {rec.fit_id})' if rec.fit_id else ''}: predicted objective "
        f"{fmt(rec.predicted)}{interval}",
        highlight=False,
    )
    table = Table("domain", "weight")
    for name, w in sorted(rec.mixture.items(), key=lambda kv: -kv[1]):
        table.add_row(escape(name), f"{w:.4f}")
    console.print(table)
    if rec.binding:
        console.print(f"binding constraints: {escape(', '.join(rec.binding))}", highlight=False)
    if fit is not None:
        pooled = (fit.fidelity or {}).get("pooled") or {}
        console.print(
            f"trust: {escape(fit.estimator)} fit {fit.id}, cross-validated Spearman "
            f"{fmt(pooled.get('spearman'), 3)}, MAE {fmt(pooled.get('mae'), 3)} on "
            f"{len(fit.run_ids)} runs",
            highlight=False,
        )


def print_validation(console: Console, v: dict) -> None:
    """The comparison table of a validation: objective per mixture, paired differences."""
    res = v["result"]
    t = Table(title=f"validation {v['id']}: {v['train_steps']} steps, seeds {v['seeds']}")
    for col in ("mixture", "objective (mean ± sd)"):
        t.add_column(col)
    for m in res["mixtures"]:
        t.add_row(escape(m["label"]), f"{m['mean']:.4f} ± {m['std']:.4f}")
    console.print(t)
    d = Table(title="paired differences (negative: lower loss than the reference)")
    for col in ("mixture", "reference", "mean diff", "95% interval", "wins"):
        d.add_column(col)
    for cmp in res["comparisons"]:
        interval = (
            "-"
            if cmp["interval_low"] is None
            else f"[{cmp['interval_low']:+.4f}, {cmp['interval_high']:+.4f}]"
        )
        d.add_row(
            escape(cmp["label"]),
            escape(cmp["reference"]),
            f"{cmp['mean']:+.4f}",
            interval,
            f"{cmp['wins']}/{cmp['seeds']}",
        )
    console.print(d)
    for note in res.get("notes", []):
        console.print(f"note: {escape(note)}")


def candidate_scores(fit: Any) -> dict[str, dict]:
    """Per-estimator CV scores: auto's selection table, or the fit's own pooled metrics."""
    table = ((fit.get("state") or {}).get("fitted") or {}).get("table") or []
    rows = {
        r["name"]: {k: r.get(k) for k in FIDELITY_KEYS} | {"status": r.get("status")}
        for r in table
        if isinstance(r, dict) and "name" in r
    }
    if not rows:
        rows = {fit["estimator"]: (fit.get("fidelity") or {}).get("pooled") or {}}
    return rows


def fidelity_table(title: str, fit: Any) -> Table:
    """The cross-validated figures of every estimator a fit compared (or of the fit itself)."""
    table = Table(title=title)
    for col in ("estimator", "Spearman", "Pearson", "MAE", "R²", "top-1 regret"):
        table.add_column(col)
    for name, f in candidate_scores(fit).items():
        table.add_row(name, *(("-" if f.get(k) is None else f"{f[k]:.4f}") for k in FIDELITY_KEYS))
    return table


def mixture_table(title: str, domains: list[str], columns: dict[str, dict[str, float]]) -> Table:
    """Mixtures side by side: one row per domain, one column per mixture."""
    table = Table(title=title)
    table.add_column("domain")
    for name in columns:
        table.add_column(name, justify="right")
    for d in domains:
        table.add_row(d, *(f"{columns[c].get(d, 0.0):.3f}" for c in columns))
    return table
