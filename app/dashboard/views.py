"""View models: plain dicts the templates and the dashboard's JSON routes render, assembled
from the services (no SQL here)."""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np
from sqlalchemy.orm import Session

from app.services import dashboard as dash_service
from app.services import exports as export_service
from app.services import fits as fit_service
from app.services import recommendations as rec_service
from app.services import runs as run_service
from app.services.constraints import science_constraints
from app.services.domain_rules import declared_groups
from app.services.errors import Invalid, ServiceError
from app.store.models import Fit, Project, Recommendation
from mixopt.exports import epochs_read
from mixopt.mixing import hierarchy, pareto
from mixopt.mixing.constraints import Constraints, InfeasibleConstraintsError

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
    return [
        {
            "name": d.name,
            "token_count": d.token_count,
            "measured": d.token_count_measured,
            "source": d.source,
        }
        for d in project.domains
    ]


def epoch_constraints(project: Project, constraints: dict[str, Any] | None = None) -> Constraints:
    """The science's :class:`~mixopt.mixing.constraints.Constraints` that answer the epoch
    questions: the project's token counts, target tokens and caps (``constraints`` override)."""
    cons = dict(project.constraints or {})
    cons.update({k: v for k, v in (constraints or {}).items() if v is not None})
    per = {k: _num(v) for k, v in (cons.get("max_epochs_per_domain") or {}).items()}
    return Constraints.for_epochs(
        {d.name: d.token_count for d in project.domains},
        _num(cons.get("target_tokens")),
        _num(cons.get("max_epochs")),
        per,
    )


def max_epochs_for(project: Project) -> dict[str, float | None]:
    return epoch_constraints(project).epoch_caps([d.name for d in project.domains])


def reference_mixtures(
    project: Project,
) -> tuple[dict[str, dict[str, float]], dict[str, str], str | None]:
    """Baselines (natural, uniform, temperature, UniMax) from the fits service; when it cannot
    answer, natural and uniform computed here so the charts still have references."""
    names = [d.name for d in project.domains]
    if not names:
        return {}, {}, "the project has no domains"
    try:
        out = rec_service.baselines(project)
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
        mixtures = {
            "natural": {n: c / total for n, c in zip(names, counts, strict=True)},
            **mixtures,
        }
    return mixtures, {}, error


def epochs_table(
    project: Project,
    mixtures: list[tuple[str, dict[str, float]]],
    phases: dict[str, list[dict[str, Any]]] | None = None,
) -> dict[str, Any]:
    """Epochs each mixture implies per domain at the target budget:
    ``epochs_i = w_i * target_tokens / token_count_i``, flagged above the domain's max epochs;
    a staged recommendation's (``phases[label]``) over its phases, the exports' figure
    (:func:`mixopt.exports.epochs_read`)."""
    target = _num((project.constraints or {}).get("target_tokens"))
    c = epoch_constraints(project)
    names = [d.name for d in project.domains]
    caps = c.epoch_caps(names)
    used = {label: (c.epochs_used(mix, names), c.over_cap(mix, names)) for label, mix in mixtures}
    counts = {d.name: d.token_count for d in project.domains}
    for label, staged in (phases or {}).items():
        if staged and label in used:
            parts = [(p["mixture_by_domain"], float(p["tokens"])) for p in staged]
            epochs = epochs_read(parts, counts)
            over = {
                n: e is not None and caps.get(n) is not None and e > float(caps[n]) * (1 + 1e-9)
                for n, e in epochs.items()
            }
            used[label] = (epochs, over)
    rows, warnings = [], 0
    for d in project.domains:
        cells = []
        for label, mix in mixtures:
            epochs, over = used[label][0][d.name], used[label][1][d.name]
            warnings += over
            cells.append(
                {
                    "mixture": label,
                    "weight": float(mix.get(d.name, 0.0)),
                    "epochs": epochs,
                    "over": over,
                }
            )
        rows.append(
            {
                "name": d.name,
                "token_count": d.token_count,
                "measured": d.token_count_measured,
                "max_epochs": caps.get(d.name),
                "cells": cells,
            }
        )
    return {
        "target_tokens": target,
        "columns": [label for label, _ in mixtures],
        "rows": rows,
        "warnings": warnings,
        "has_epochs": bool(target) and any(d.token_count for d in project.domains),
    }


# -- fits -------------------------------------------------------------------------------
def fidelity_view(fit: Fit) -> dict[str, Any]:
    """Metrics and held-out predictions from a fit's stored fidelity, whatever its shape:
    ``{pooled, mean, folds, predictions}`` (cross_validate), ``{summary: ...}`` or flat keys."""
    fid = fit.fidelity if isinstance(fit.fidelity, dict) else {}
    source = (
        fid.get("pooled")
        if isinstance(fid.get("pooled"), dict)
        else fid.get("summary")
        if isinstance(fid.get("summary"), dict)
        else fid
    )
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
        points.append(
            {"actual": actual, "predicted": predicted, "run_id": run_id, "fold": p.get("fold")}
        )
    fitted = (fit.state or {}).get("fitted") if isinstance(fit.state, dict) else None
    fitted = fitted if isinstance(fitted, dict) else {}
    table = [r for r in fitted.get("table") or [] if isinstance(r, dict)]
    timings = fit.timings if isinstance(fit.timings, dict) else {}
    return {
        "id": fit.id,
        "name": fit.name,
        "tags": list(fit.tags or []),
        "estimator": fit.estimator,
        "status": fit.status,
        "error": fit.error,
        "chosen": fitted.get("chosen"),
        "n_runs": len(run_ids),
        "n": n if isinstance(n, int) else len(points) or None,
        "n_folds": fid.get("n_folds"),
        "metrics": metrics,
        "points": points,
        "table": [
            {
                "name": r.get("name"),
                "status": r.get("status"),
                "reason": r.get("reason"),
                "rank": r.get("rank"),
                "fit_s": _num(r.get("fit_s")),
                **{k: _num(r.get(k)) for k in METRIC_KEYS},
            }
            for r in table
        ],
        "fit_s": _num(timings.get("fit_s")),
        "cv_s": _num(timings.get("cv_s")),
        "notes": fit.notes,
        "target": fit.target,
        "created_at": fit.created_at,
        "trusted": fit.trusted,
        "trust_reasons": list(fit.trust_reasons or []),
        "scale": fit.scale or {},
    }


def fit_label(fit: Fit) -> str:
    fitted = (fit.state or {}).get("fitted") if isinstance(fit.state, dict) else None
    chosen = fitted.get("chosen") if isinstance(fitted, dict) else None
    return f"#{fit.id} {fit.estimator}" + (f" ({chosen})" if chosen else "")


# -- recommendations ----------------------------------------------------------------------
def recommendation_view(
    rec: Recommendation, fits_by_id: dict[int, Fit], domains: list[str]
) -> dict[str, Any]:
    fit = fits_by_id.get(rec.fit_id) if rec.fit_id is not None else None
    fidelity = fidelity_view(fit)["metrics"] if fit is not None else None
    if fidelity is None:
        stored = (rec.details or {}).get("fidelity")
        if isinstance(stored, dict):
            src = stored.get("pooled") if isinstance(stored.get("pooled"), dict) else stored
            fidelity = {k: _num(src.get(k)) for k in METRIC_KEYS}
    return {
        "id": rec.id,
        "label": f"rec #{rec.id} ({rec.name or rec.source})",
        "name": rec.name,
        "tags": list(rec.tags or []),
        "source": rec.source,
        "fit_id": rec.fit_id,
        "fit_label": fit_label(fit) if fit is not None else None,
        "mixture": {d: float(rec.mixture.get(d, 0.0)) for d in domains},
        "predicted": _num(rec.predicted),
        "interval_low": _num(rec.interval_low),
        "interval_high": _num(rec.interval_high),
        "binding": list(rec.binding or []),
        "fidelity": fidelity,
        "target_scale": rec.target_scale or {},
        "created_at": rec.created_at,
        "explanation": (rec.details or {}).get("explanation"),
        "trusted": (rec.details or {}).get("trusted"),
        "extrapolation": ((rec.details or {}).get("extrapolation") or {}).get("reasons") or [],
        "group_totals": (rec.details or {}).get("group_totals") or {},
        "reference": (rec.details or {}).get("reference"),
        "phases": ((rec.details or {}).get("staged") or {}).get("phases") or [],
    }


def baseline_predictions(
    fits: list[Fit], refs: dict[str, dict[str, float]]
) -> tuple[Fit | None, dict[str, float]]:
    """The baselines' predicted objective by the newest succeeded fit (none when it cannot)."""
    fit = next(
        (f for f in sorted(fits, key=lambda f: -f.id) if f.status == "succeeded" and f.state), None
    )
    if fit is None or not refs:
        return None, {}
    try:
        out = fit_service.predict(fit, [refs[k] for k in refs])
    except (ServiceError, ValueError) as exc:
        log.info("baselines not predicted by fit %s: %s", fit.id, exc)
        return fit, {}
    return fit, {k: float(v) for k, v in zip(refs, out["objective"], strict=True) if v is not None}


def epoch_warnings(
    mixture: dict[str, float], project: Project, constraints: dict[str, Any] | None = None
) -> list[str]:
    """Domains a mixture repeats beyond their epoch cap, or that have no tokens, at the
    target budget (:meth:`mixopt.mixing.constraints.Constraints.epoch_warnings`)."""
    return epoch_constraints(project, constraints).epoch_warnings(
        mixture, [d.name for d in project.domains]
    )


def recommendation_warnings(
    project: Project, rec: Recommendation, fits_by_id: dict[int, Fit]
) -> list[str]:
    """A recommendation's epoch warnings at the budget its exports use, over all its phases
    when staged (one figure with the exports: ``export_service.recommendation_epoch_warnings``;
    a staged one's first-phase mixture at the whole budget is not what it reads)."""
    fit = fits_by_id.get(rec.fit_id) if rec.fit_id is not None else None
    return export_service.recommendation_epoch_warnings(project, rec, fit)


# -- runs -------------------------------------------------------------------------------
def runs_payload(session: Session, project: Project) -> dict[str, Any]:
    """Compact runs for the runs table and the coverage chart: mixtures as arrays in domain
    order, the objective (project's, else the mean of the metrics every run reports)."""
    rows, total = dash_service.table_runs(session, project)
    current = [d.name for d in project.domains]
    # runs of older domain sets keep their mixtures: a retired domain they weighted gets a column
    # too (after the current ones), so their weights still add up to 1 on the page
    retired = sorted(
        {d for r in rows for d, w in (r["mixture"] or {}).items() if d not in current and w}
    )
    domains = current + retired
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
        runs.append(
            {
                "id": r["id"],
                "name": r["name"] or r["external_id"] or "",
                "status": r["status"],
                "origin": r["origin"],
                "tags": r["tags"] or [],
                "objective": value,
                "model_params": r["model_params"],
                "train_tokens": r["train_tokens"],
                "train_steps": r["train_steps"],
                "mixture": [round(float((r["mixture"] or {}).get(d, 0.0)), 6) for d in domains],
                "created_at": r["created_at"].isoformat() if r["created_at"] else None,
            }
        )
    return {
        "domains": domains,
        "retired": retired,
        "objective": objective,
        "runs": runs,
        "total": total,
        "truncated": total > len(runs),
    }


class _Metrics:
    """Adapter: resolve_target reads ``.metrics`` from run-like objects."""

    __slots__ = ("metrics",)

    def __init__(self, metrics: dict[str, float]):
        self.metrics = metrics

    @classmethod
    def wrap(cls, rows: list[dict[str, Any]]) -> list[_Metrics]:
        return [cls(r["metrics"]) for r in rows]


def validation_plot(
    result: dict[str, Any] | None, width: int = 640
) -> tuple[dict[str, Any], list[str], float]:
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
        groups.setdefault(c["reference"], []).append(
            {
                "label": c["label"],
                "mean": x(c["mean"]),
                "better": c["mean"] < 0,
                "lo": None if c.get("interval_low") is None else x(c["interval_low"]),
                "hi": None if c.get("interval_high") is None else x(c["interval_high"]),
                "ticks": [x(d) for d in c["differences"]],
                "text": f"{c['mean']:+.4f} ({c['wins']}/{c['seeds']} wins)",
            }
        )
    domains = sorted({d for c in comps for d in c.get("domains", {})})
    biggest = max([abs(v) for c in comps for v in c.get("domains", {}).values()] or [1.0]) or 1.0
    plot = {
        "groups": list(groups.items()),
        "width": width,
        "zero": x(0.0),
        "left": left,
        "right": right,
        "min_label": f"{lo:+.3f}",
        "max_label": f"{hi:+.3f}",
    }
    return plot, domains, 30.0 / biggest


# -- issue 17: comparison, Pareto front, what-if availability, overlaid curves -------------------
#: how many recommendations the comparison view puts side by side, and runs the curves overlay
COMPARE_MIN, COMPARE_MAX = 2, 4
MAX_OVERLAY_RUNS = 20
#: candidate mixtures the Pareto view predicts (bounded: one predict call per page view)
PARETO_CANDIDATES = 2000


def _group_of(project: Project) -> dict[str, str]:
    """The domains' declared group paths."""

    return declared_groups(project.domains)


def group_members(project: Project) -> dict[str, list[str]]:
    """``{group path: [member domains]}`` (declared paths, else parsed ``source:topic`` names)."""
    return hierarchy.groups_of([d.name for d in project.domains], _group_of(project))


def _constraint_summary(constraints: dict[str, Any] | None) -> list[str]:
    """One line per constraint a recommendation was made under (what its request carried)."""
    c = constraints or {}
    out = []
    for d, b in sorted((c.get("bounds") or {}).items()):
        lo, hi = (b or {}).get("min"), (b or {}).get("max")
        out.append(f"{d} in [{_num(lo) or 0:g}, {_num(hi) if hi is not None else 1:g}]")
    for d, w in sorted((c.get("fixed") or {}).items()):
        out.append(f"{d} fixed at {float(w):g}")
    if c.get("target_tokens"):
        out.append(f"target {float(c['target_tokens']):.3g} tokens")
    if c.get("max_epochs") is not None:
        out.append(f"at most {float(c['max_epochs']):g} epochs per domain")
    for d, e in sorted((c.get("max_epochs_per_domain") or {}).items()):
        out.append(f"{d}: at most {float(e):g} epochs")
    for g, b in sorted((c.get("groups") or {}).items()):
        parts = [f"{k} {float(v):g}" for k, v in (b or {}).items() if v is not None]
        out.append(f"group {g}: {', '.join(parts)}")
    if _num(c.get("kl_weight")):
        out.append(f"KL weight {float(c['kl_weight']):g}")
    return out


def _validation_results(validations: list, rec_id: int) -> list[dict[str, Any]]:
    """The paired comparisons (difference to each reference, wins) of every finished validation
    that trained recommendation ``rec_id``."""
    out = []
    for v in validations:
        mine = [m for m in (v.mixtures or []) if m.get("recommendation_id") == rec_id]
        if not mine or not isinstance(v.result, dict):
            continue
        labels = {m.get("label") for m in mine}
        stats = next((m for m in v.result.get("mixtures") or [] if m.get("label") in labels), None)
        comps = [c for c in v.result.get("comparisons") or [] if c.get("label") in labels]
        out.append(
            {
                "id": v.id,
                "seeds": len(v.seeds or []),
                "steps": v.train_steps,
                "mean": _num((stats or {}).get("mean")),
                "std": _num((stats or {}).get("std")),
                "comparisons": [
                    {
                        "reference": c.get("reference"),
                        "mean": _num(c.get("mean")),
                        "low": _num(c.get("interval_low")),
                        "high": _num(c.get("interval_high")),
                        "wins": c.get("wins"),
                        "seeds": c.get("seeds"),
                    }
                    for c in comps
                ],
            }
        )
    return out


def comparison(
    project: Project, recs: list[Recommendation], fits_by_id: dict[int, Fit], validations: list
) -> dict[str, Any]:
    """Recommendations side by side: weights per domain (and group totals), predicted objective
    with its interval, per-metric predictions by each one's own fit, the constraints it was made
    under and those binding, its fit's estimator, CV Spearman and trust, its comparison with its
    reference and the validations that trained it."""
    domains = [d.name for d in project.domains]
    cols = []
    for rec in recs:
        view = recommendation_view(rec, fits_by_id, domains)
        fit = fits_by_id.get(rec.fit_id) if rec.fit_id is not None else None
        metrics: dict[str, float] = {}
        if fit is not None and fit.status == "succeeded" and fit.state:
            try:
                out = fit_service.predict(
                    fit, [{d: float(rec.mixture.get(d, 0.0)) for d in fit.domains}], normalize=True
                )
                metrics = {
                    t: float(v) for t, v in zip(out["targets"], out["predictions"][0], strict=True)
                }
            except (ServiceError, ValueError) as exc:  # domains changed since the fit, say
                log.info(
                    "recommendation %s not predicted per metric by fit %s: %s", rec.id, fit.id, exc
                )
        cols.append(
            view
            | {
                "estimator": fit.estimator if fit is not None else rec.source,
                "chosen": fidelity_view(fit)["chosen"] if fit is not None else None,
                "fit_trusted": fit.trusted if fit is not None else view["trusted"],
                "trust_reasons": list(fit.trust_reasons or []) if fit is not None else [],
                "metrics": metrics,
                "constraints": _constraint_summary(rec.constraints),
                "validations": _validation_results(validations, rec.id),
                "warnings": recommendation_warnings(project, rec, fits_by_id),
            }
        )
    totals = [hierarchy.group_totals(c["mixture"], _group_of(project)) for c in cols]
    group_rows = [
        {"name": g, "cells": [t.get(g, 0.0) for t in totals]}
        for g in sorted(group_members(project))
    ]
    metric_names = sorted({m for c in cols for m in c["metrics"]})
    return {
        "columns": cols,
        "weights": [
            {"name": d, "cells": [c["mixture"].get(d, 0.0) for c in cols]} for d in domains
        ],
        "groups": group_rows,
        "metric_rows": [
            {"name": m, "cells": [c["metrics"].get(m) for c in cols]} for m in metric_names
        ],
    }


def metric_names(session: Session, project: Project) -> list[str]:
    """Metrics a fit may target: the objective's, then those the newest 200 runs report."""
    rows, _ = dash_service.table_runs(session, project, limit=200)
    names = list(project.objective or {})
    for r in rows:
        names += [m for m in (r["metrics"] or {}) if m not in names]
    return names


def whatif_availability(project: Project) -> dict[str, Any]:
    """What the what-if page's script needs to warn about a mixture: per domain its tokens and
    epoch cap at the project's target tokens, the groups' members, and ``limits``: the weight
    above which each domain draws a warning, computed by
    :meth:`~mixopt.mixing.constraints.Constraints.epoch_limits` (the script only compares)."""
    cons = project.constraints or {}
    caps = max_epochs_for(project)
    names = [d.name for d in project.domains]
    return {
        "target_tokens": _num(cons.get("target_tokens")),
        "tokens": {d.name: d.token_count for d in project.domains},
        "caps": caps,
        "groups": group_members(project),
        "limits": epoch_constraints(project).epoch_limits(names),
    }


def pareto_view(
    project: Project,
    fit: Fit,
    refs: dict[str, dict[str, float]],
    recs: list[Recommendation],
    x: str | None,
    y: str | None,
    reference_rec: Recommendation | None = None,
    count: int = PARETO_CANDIDATES,
) -> dict[str, Any]:
    """Candidate mixtures sampled under the project's constraints, predicted per metric by
    ``fit``; the non-dominated ones (:func:`mixopt.mixing.pareto.non_dominated`) on the two
    plotted metrics and on all of them; the reference (natural, or ``reference_rec``'s
    reference) and the recommendations as marked points."""

    targets = list(fit.target)
    if len(targets) < 2:
        raise Invalid(
            f"fit {fit.id} predicts one metric ({targets[0] if targets else 'none'}); "
            "the Pareto front needs a fit of two or more target metrics "
            "(fit with the project's multi-metric objective)",
            field="fit",
        )
    x = x or targets[0]
    y = y or targets[1]
    for name, value in (("x", x), ("y", y)):
        if value not in targets:
            raise Invalid(
                f"{name} must be one of fit {fit.id}'s metrics {targets}, not {value!r}", field=name
            )
    if x == y:
        raise Invalid("x and y must be two different metrics", field="y")
    domains = list(fit.domains)
    if domains != [d.name for d in project.domains]:
        raise Invalid(
            f"fit {fit.id} was made on domains {domains}, not the project's current ones; "
            "fit again",
            field="fit",
        )
    counts = [d.token_count for d in project.domains]
    spec = science_constraints(
        project.constraints or {}, domains, counts, declared_groups(project.domains)
    )
    prior_map = refs.get("natural") or refs.get("uniform")
    prior = [prior_map[d] for d in domains] if prior_map else None
    try:
        W = pareto.sample_candidates(
            count, domains, Constraints.from_dict(spec), prior=prior, random_state=0
        )
    except (InfeasibleConstraintsError, ValueError) as exc:
        raise Invalid(
            f"no candidate mixture satisfies the project's constraints: {exc}", field="constraints"
        ) from exc
    marks: list[tuple[str, str, dict[str, float]]] = []
    if reference_rec is not None:
        ref = (reference_rec.details or {}).get("reference") or {}
        if isinstance(ref.get("mixture"), dict):
            marks.append(
                ("reference", f"reference: {ref.get('label') or 'mixture'}", ref["mixture"])
            )
        else:
            raise Invalid(
                f"recommendation {reference_rec.id} was not made against a reference", field="rec"
            )
    elif "natural" in refs:
        marks.append(("reference", "reference: natural", refs["natural"]))
    for rec in recs:
        marks.append(("recommendation", f"rec #{rec.id}", rec.mixture))
    mixtures = [dict(zip(domains, map(float, w), strict=True)) for w in W]
    mixtures += [{d: float(m.get(d, 0.0)) for d in domains} for _, _, m in marks]
    try:
        out = fit_service.predict(fit, mixtures, normalize=True)
    except ValueError as exc:  # a stored state the science cannot evaluate here
        raise Invalid(f"fit {fit.id} cannot predict these mixtures: {exc}", field="fit") from exc
    P = np.asarray(out["predictions"], dtype=float)
    ix, iy = targets.index(x), targets.index(y)
    n = W.shape[0]
    cand = P[:n]
    front2, front_all, order = pareto.fronts(cand, ix, iy)
    points = [{"x": float(cand[i, ix]), "y": float(cand[i, iy])} for i in range(n)]
    marked = []
    for k, (kind, label, _) in enumerate(marks):
        row = P[n + k]
        marked.append(
            {
                "kind": kind,
                "label": label,
                "x": float(row[ix]),
                "y": float(row[iy]),
                "metrics": dict(zip(targets, map(float, row), strict=True)),
                "dominated_by": pareto.count_dominating(cand, row),
            }
        )
    reference = next((m for m in marked if m["kind"] == "reference"), None)
    beats = None
    if reference is not None:
        ref_row = np.array([reference["metrics"][t] for t in targets])
        beats = pareto.count_dominating(cand[front_all], ref_row)
    top = [
        {
            "weights": sorted(
                ((d, float(W[i, j])) for j, d in enumerate(domains)), key=lambda t: -t[1]
            )[:3],
            "metrics": dict(zip(targets, map(float, cand[i]), strict=True)),
        }
        for i in order
    ]
    return {
        "fit_id": fit.id,
        "targets": targets,
        "x": x,
        "y": y,
        "count": n,
        "front_count": int(front2.sum()),
        "front_all_count": int(front_all.sum()),
        "beats_reference": beats,
        "front_rows": top,
        "marked": marked,
        "reference": reference,
        "chart": {
            "x": x,
            "y": y,
            "points": points,
            "front": [points[i] for i in order],
            "marked": marked,
        },
    }


def curves_overlay(
    session: Session, project: Project, run_ids: list[int], metric: str | None, x: str
) -> dict[str, Any]:
    """Curves (:class:`~app.store.models.CurvePoint`) of several runs for one metric, x in steps
    or tokens; the metrics the runs' curves report; runs without points are named."""

    if x not in ("steps", "tokens"):
        raise Invalid(f"x must be 'steps' or 'tokens', not {x!r}", field="x")
    runs = [run_service.get_run(session, project, rid) for rid in run_ids]
    curves = {r.id: run_service.curve(session, r) for r in runs}
    names: list[str] = []
    for pts in curves.values():
        for p in pts:
            names += [k for k in p.metrics if k not in names]
    if metric is None:
        metric = next(
            (m for m in (project.objective or {}) if m in names), names[0] if names else None
        )
    elif metric not in names:
        raise Invalid(
            f"metric must be one the runs' curves report {sorted(names)}, not {metric!r}",
            field="metric",
        )
    series, empty, no_tokens = [], [], []
    for r in runs:
        pts = [
            p for p in curves[r.id] if metric in p.metrics and _num(p.metrics[metric]) is not None
        ]
        if not pts:
            empty.append(r.id)
            continue
        if x == "tokens" and any(p.tokens is None for p in pts):
            no_tokens.append(r.id)
            pts = [p for p in pts if p.tokens is not None]
        name = r.name or r.external_id
        series.append(
            {
                "run_id": r.id,
                "label": f"run {r.id}" + (f" ({name})" if name and name != str(r.id) else ""),
                "points": [
                    {"x": p.tokens if x == "tokens" else p.step, "y": float(p.metrics[metric])}
                    for p in pts
                ],
            }
        )
    return {
        "runs": runs,
        "metric": metric,
        "metrics": names,
        "x": x,
        "series": series,
        "empty": empty,
        "no_tokens": no_tokens,
    }
