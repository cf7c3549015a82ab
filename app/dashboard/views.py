"""View models: plain dicts the templates and the dashboard's JSON routes render, assembled
from the services (no SQL here)."""

from __future__ import annotations

import logging
import math
from typing import Any

from sqlalchemy.orm import Session

from app.services import dashboard as dash_service
from app.services import fits as fit_service
from app.services.errors import ServiceError
from app.store.models import Fit, Project, Recommendation

log = logging.getLogger("mixopt.dashboard")

METRIC_KEYS = ("spearman", "pearson", "mae", "r2", "regret")


def _num(v: Any) -> float | None:
    """A finite float, or None (JSON from other components may hold strings or nulls)."""
    if isinstance(v, bool) or v is None:
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


# -- projects ---------------------------------------------------------------------------
def domain_dicts(project: Project) -> list[dict[str, Any]]:
    return [{"name": d.name, "token_count": d.token_count, "measured": d.token_count_measured,
             "source": d.source} for d in project.domains]


def max_epochs_for(project: Project) -> dict[str, float | None]:
    c = project.constraints or {}
    per = c.get("max_epochs_per_domain") or {}
    default = _num(c.get("max_epochs"))
    return {d.name: _num(per.get(d.name)) if d.name in per else default for d in project.domains}


def reference_mixtures(project: Project) -> tuple[dict[str, dict[str, float]], dict[str, str], str | None]:
    """Baselines (natural, uniform, temperature, UniMax) from the fits service; when it cannot
    answer, natural and uniform computed here so the charts still have references."""
    names = [d.name for d in project.domains]
    if not names:
        return {}, {}, "the project has no domains"
    try:
        out = fit_service.baselines(project)
        return dict(out["mixtures"]), dict(out.get("unavailable") or {}), None
    except ServiceError as exc:
        error = exc.message
    except Exception as exc:  # a broken baseline must not take the page down
        log.exception("baselines failed for project %s", project.id)
        error = f"baselines unavailable ({type(exc).__name__})"
    mixtures = {"uniform": {n: 1.0 / len(names) for n in names}}
    counts = [d.token_count for d in project.domains]
    if all(counts):
        total = float(sum(counts))
        mixtures = {"natural": {n: c / total for n, c in zip(names, counts, strict=True)}, **mixtures}
    return mixtures, {}, error


def epochs_table(project: Project, mixtures: list[tuple[str, dict[str, float]]]) -> dict[str, Any]:
    """Epochs each mixture implies per domain at the target budget:
    ``epochs_i = w_i * target_tokens / token_count_i``, flagged above the domain's max epochs."""
    target = _num((project.constraints or {}).get("target_tokens"))
    caps = max_epochs_for(project)
    rows, warnings = [], 0
    for d in project.domains:
        cells = []
        for label, mix in mixtures:
            w = float(mix.get(d.name, 0.0))
            epochs = w * target / d.token_count if target and d.token_count else None
            cap = caps.get(d.name)
            over = epochs is not None and cap is not None and epochs > cap * (1 + 1e-9)
            warnings += over
            cells.append({"mixture": label, "weight": w, "epochs": epochs, "over": over})
        rows.append({"name": d.name, "token_count": d.token_count, "measured": d.token_count_measured,
                     "max_epochs": caps.get(d.name), "cells": cells})
    return {"target_tokens": target, "columns": [label for label, _ in mixtures], "rows": rows,
            "warnings": warnings, "has_epochs": bool(target) and any(d.token_count for d in project.domains)}


# -- fits -------------------------------------------------------------------------------
def fidelity_view(fit: Fit) -> dict[str, Any]:
    """Metrics and held-out predictions from a fit's stored fidelity, whatever its shape:
    ``{pooled, mean, folds, predictions}`` (cross_validate), ``{summary: ...}`` or flat keys."""
    fid = fit.fidelity if isinstance(fit.fidelity, dict) else {}
    source = fid.get("pooled") if isinstance(fid.get("pooled"), dict) else \
        fid.get("summary") if isinstance(fid.get("summary"), dict) else fid
    metrics = {k: _num(source.get(k)) for k in METRIC_KEYS}
    n = source.get("n")
    run_ids = list(fit.run_ids or [])
    points = []
    for p in fid.get("predictions") or []:
        if not isinstance(p, dict):
            continue
        actual, predicted = _num(p.get("actual")), _num(p.get("predicted"))
        if actual is None or predicted is None:
            continue
        idx = p.get("run_index")
        run_id = run_ids[idx] if isinstance(idx, int) and 0 <= idx < len(run_ids) else None
        points.append({"actual": actual, "predicted": predicted, "run_id": run_id, "fold": p.get("fold")})
    fitted = (fit.state or {}).get("fitted") if isinstance(fit.state, dict) else None
    fitted = fitted if isinstance(fitted, dict) else {}
    table = [r for r in fitted.get("table") or [] if isinstance(r, dict)]
    timings = fit.timings if isinstance(fit.timings, dict) else {}
    return {
        "id": fit.id, "estimator": fit.estimator, "status": fit.status, "error": fit.error,
        "chosen": fitted.get("chosen"), "n_runs": len(run_ids), "n": n if isinstance(n, int) else len(points) or None,
        "n_folds": fid.get("n_folds"), "metrics": metrics, "points": points,
        "table": [{"name": r.get("name"), "status": r.get("status"), "reason": r.get("reason"),
                   "rank": r.get("rank"), "fit_s": _num(r.get("fit_s")),
                   **{k: _num(r.get(k)) for k in METRIC_KEYS}} for r in table],
        "fit_s": _num(timings.get("fit_s")), "cv_s": _num(timings.get("cv_s")),
        "notes": fit.notes, "target": fit.target, "created_at": fit.created_at,
        "trusted": fit.trusted, "trust_reasons": list(fit.trust_reasons or []), "scale": fit.scale or {},
    }


def fit_label(fit: Fit) -> str:
    fitted = (fit.state or {}).get("fitted") if isinstance(fit.state, dict) else None
    chosen = fitted.get("chosen") if isinstance(fitted, dict) else None
    return f"#{fit.id} {fit.estimator}" + (f" ({chosen})" if chosen else "")


# -- recommendations ----------------------------------------------------------------------
def recommendation_view(rec: Recommendation, fits_by_id: dict[int, Fit], domains: list[str]) -> dict[str, Any]:
    fit = fits_by_id.get(rec.fit_id) if rec.fit_id is not None else None
    fidelity = fidelity_view(fit)["metrics"] if fit is not None else None
    if fidelity is None:
        stored = (rec.details or {}).get("fidelity")
        if isinstance(stored, dict):
            src = stored.get("pooled") if isinstance(stored.get("pooled"), dict) else stored
            fidelity = {k: _num(src.get(k)) for k in METRIC_KEYS}
    return {
        "id": rec.id, "label": f"rec #{rec.id} ({rec.source})", "source": rec.source, "fit_id": rec.fit_id,
        "fit_label": fit_label(fit) if fit is not None else None,
        "mixture": {d: float(rec.mixture.get(d, 0.0)) for d in domains},
        "predicted": _num(rec.predicted), "interval_low": _num(rec.interval_low),
        "interval_high": _num(rec.interval_high), "binding": list(rec.binding or []),
        "fidelity": fidelity, "target_scale": rec.target_scale or {}, "created_at": rec.created_at,
        "explanation": (rec.details or {}).get("explanation"),
        "trusted": (rec.details or {}).get("trusted"),
        "extrapolation": ((rec.details or {}).get("extrapolation") or {}).get("reasons") or [],
        "group_totals": (rec.details or {}).get("group_totals") or {},
        "reference": (rec.details or {}).get("reference"),
        "phases": ((rec.details or {}).get("staged") or {}).get("phases") or [],
    }


def baseline_predictions(fits: list[Fit], refs: dict[str, dict[str, float]]) -> tuple[Fit | None, dict[str, float]]:
    """The baselines' predicted objective by the newest succeeded fit (none when it cannot)."""
    fit = next((f for f in sorted(fits, key=lambda f: -f.id) if f.status == "succeeded" and f.state), None)
    if fit is None or not refs:
        return None, {}
    try:
        out = fit_service.predict(fit, [refs[k] for k in refs])
    except (ServiceError, ValueError) as exc:
        log.info("baselines not predicted by fit %s: %s", fit.id, exc)
        return fit, {}
    return fit, {k: float(v) for k, v in zip(refs, out["objective"], strict=True) if v is not None}


def epoch_warnings(mixture: dict[str, float], project: Project, constraints: dict[str, Any] | None = None) -> list[str]:
    """Domains a mixture repeats beyond their epoch cap, or that have no tokens, at the
    target budget (``weight x target_tokens / token_count`` epochs against ``max_epochs``)."""
    cons = dict(project.constraints or {})
    cons.update({k: v for k, v in (constraints or {}).items() if v is not None})
    target = cons.get("target_tokens")
    if not target:
        return []
    per = cons.get("max_epochs_per_domain") or {}
    out = []
    for d in project.domains:
        w = float(mixture.get(d.name, 0.0))
        if w <= 0:
            continue
        if not d.token_count:
            out.append(f"{d.name}: weight {w:.3f} but no token count (availability unknown)")
            continue
        epochs = w * float(target) / float(d.token_count)
        cap = per.get(d.name, cons.get("max_epochs"))
        if cap is not None and epochs > float(cap) + 1e-9:
            out.append(f"{d.name}: {epochs:.2f} epochs at weight {w:.3f}, {epochs / float(cap):.1f}x its "
                       f"{float(cap):g}-epoch cap")
    return out


# -- runs -------------------------------------------------------------------------------
def runs_payload(session: Session, project: Project) -> dict[str, Any]:
    """Compact runs for the runs table and the coverage chart: mixtures as arrays in domain
    order, the objective (project's, else the mean of the metrics every run reports)."""
    rows, total = dash_service.table_runs(session, project)
    domains = [d.name for d in project.domains]
    done = [r for r in rows if r["status"] == "succeeded" and r["metrics"]]
    objective: dict[str, float] | None = None
    if done:
        try:
            objective = fit_service.resolve_target(project, None, _Metrics.wrap(done))
        except ServiceError:
            objective = None
    runs = []
    for r in rows:
        value = None
        metrics = r["metrics"] or {}
        if objective and all(t in metrics for t in objective):
            value = _num(sum(w * float(metrics[t]) for t, w in objective.items()))
        runs.append({
            "id": r["id"], "name": r["name"] or r["external_id"] or "", "status": r["status"],
            "origin": r["origin"], "tags": r["tags"] or [], "objective": value,
            "model_params": r["model_params"], "train_tokens": r["train_tokens"], "train_steps": r["train_steps"],
            "mixture": [round(float((r["mixture"] or {}).get(d, 0.0)), 6) for d in domains],
            "created_at": r["created_at"].isoformat() if r["created_at"] else None,
        })
    return {"domains": domains, "objective": objective, "runs": runs, "total": total,
            "truncated": total > len(runs)}


class _Metrics:
    """Adapter: resolve_target reads ``.metrics`` from run-like objects."""

    __slots__ = ("metrics",)

    def __init__(self, metrics: dict[str, float]):
        self.metrics = metrics

    @classmethod
    def wrap(cls, rows: list[dict[str, Any]]) -> list[_Metrics]:
        return [cls(r["metrics"]) for r in rows]


def validation_plot(result: dict[str, Any] | None, width: int = 640) -> tuple[dict[str, Any], list[str], float]:
    """Pixel positions of the validation page's interval plot (server-side SVG: the page's CSP
    allows no inline styles or scripts), the domains, and the per-domain bar scale (px/nat)."""
    if not result:
        return {"groups": [], "width": width}, [], 0.0
    comps = result.get("comparisons") or []
    values = [0.0]
    for c in comps:
        values += [c["mean"], *c["differences"]]
        values += [x for x in (c.get("interval_low"), c.get("interval_high")) if x is not None]
    lo, hi = min(values), max(values)
    pad = 0.05 * ((hi - lo) or 1.0)
    lo, hi = lo - pad, hi + pad
    left, right = 130.0, width - 160.0

    def x(v: float) -> float:
        return round(left + (v - lo) / (hi - lo) * (right - left), 1)

    groups: dict[str, list[dict[str, Any]]] = {}
    for c in comps:
        groups.setdefault(c["reference"], []).append({
            "label": c["label"], "mean": x(c["mean"]), "better": c["mean"] < 0,
            "lo": None if c.get("interval_low") is None else x(c["interval_low"]),
            "hi": None if c.get("interval_high") is None else x(c["interval_high"]),
            "ticks": [x(d) for d in c["differences"]],
            "text": f"{c['mean']:+.4f} ({c['wins']}/{c['seeds']} wins)"})
    domains = sorted({d for c in comps for d in c.get("domains", {})})
    biggest = max([abs(v) for c in comps for v in c.get("domains", {}).values()] or [1.0]) or 1.0
    plot = {"groups": list(groups.items()), "width": width, "zero": x(0.0), "left": left, "right": right,
            "min_label": f"{lo:+.3f}", "max_label": f"{hi:+.3f}"}
    return plot, domains, 30.0 / biggest
