"""Answers at a target scale: the nested use of scaling laws end to end (Ye et al. 2024, ICLR
2025, Sec. 4, Eq. 5; reference pipeline ``yegcjs/mixinglaws`` ``pipeline/run.sh``:
``steplaw.py`` -> ``sizelaw.py`` -> ``mixlaw.py``).

A *scale* is ``{"model_params", "train_steps" | "train_tokens"}``. Every fit answers at one:

* the runs' own, when they all share one model size and one budget and no target is given;
* a ``target_scale`` given by the user. When it lies beyond the runs:

  (a) a steps law ``L(S) = E + B / S^beta`` per run on its loss curve (the run's curve points
      plus its final metrics), fitted on the points from a third of the run on (the reference
      fits 10k-30k of 30k) and selected on the last checkpoints (reference ``valid_split=5``),
      extrapolates each run to the target budget; replicates of a mixture and size are
      averaged;
  (b) a size law ``L(N) = E + A / N^alpha`` per mixture across model sizes (non-embedding
      parameters; the exponent shared by all mixtures and targets, the reference's
      ``tie_alpha="all"``), selected on the largest size (``valid_split=1``), extrapolates
      each mixture to the target size (needs >= 3 sizes);
  (c) any estimator is then fitted on those extrapolated losses (one row per mixture) and
      predicts at the target.

:func:`prepare_at_scale` does (a)-(b) and returns the data for (c) with the *chain*: each law's
form, parameters and held-out error. :func:`cross_scale_validate` answers "fit on the smaller
scales, predict the largest": the runs of the largest size (or, with one size, the last half of
every curve) are held out, the pipeline runs on the rest, and the estimator's predictions are
compared with what those runs reached (Spearman, MAE, mean relative error).

Runs of several scales without a target are refused (:class:`ScaleError`): pooling a 70M run
with a 410M run as if they were replicates is what the fit used to do silently.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mixopt.mixing.fidelity import fidelity_metrics, mixture_groups
from mixopt.mixing.objective import objective_vector
from mixopt.mixing.scaling import PowerLawFit, fit_size_law, fit_steps_law
from mixopt.progress import ProgressFn, report, scaled

#: reference: steps law fitted from 10k of 30k steps, the last 5 checkpoints held out
FIT_FROM = 1.0 / 3.0
STEPS_HOLDOUT = 5
MIN_SIZES_FOR_SIZE_LAW = 3
BUDGET_KEYS = ("train_steps", "train_tokens")


class ScaleError(ValueError):
    """The runs and the requested scale do not allow an answer (the message says what to do)."""


def _clean(v: Any) -> float | None:
    if v is None:
        return None
    v = float(v)
    return v if np.isfinite(v) else None


def describe_scale(scale: dict[str, Any]) -> str:
    parts = []
    if scale.get("model_params"):
        parts.append(f"{scale['model_params']:.4g} parameters")
    for k in BUDGET_KEYS:
        if scale.get(k):
            parts.append(f"{scale[k]:.4g} {k.split('_')[1]}")
    return ", ".join(parts) or "unspecified scale"


@dataclass
class ScaledData:
    """What an estimator is fitted on to answer at ``scale``.

    ``X`` (n, K), ``Y`` (n, m): the runs themselves (same scale) or one row per mixture of
    extrapolated losses; ``groups`` the mixture of each row; ``scale`` the scale of ``Y``;
    ``chain`` the laws applied (JSON-able); ``extrapolated`` whether any law was applied;
    ``context`` the per-row fit context for the estimator (curves/steps only at the runs'
    own scale); ``notes`` what was left out and why.
    """

    X: np.ndarray
    Y: np.ndarray
    groups: np.ndarray
    scale: dict[str, Any]
    chain: list[dict[str, Any]]
    extrapolated: bool
    context: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def _arr(v: Any, n: int) -> np.ndarray:
    if v is None:
        return np.full(n, np.nan)
    a = np.asarray(
        [np.nan if x is None else float(x) for x in np.asarray(v, dtype=object).ravel()],
        dtype=float,
    )
    return a if a.size == n else np.full(n, np.nan)


def _distinct(a: np.ndarray) -> list[float]:
    return sorted({float(x) for x in a if np.isfinite(x)})


def run_scales(model_params: Any, steps: Any, tokens: Any, n: int) -> dict[str, list[float]]:
    """Distinct model sizes and budgets among ``n`` runs (unknown values left out)."""
    return {
        "model_params": _distinct(_arr(model_params, n)),
        "train_steps": _distinct(_arr(steps, n)),
        "train_tokens": _distinct(_arr(tokens, n)),
    }


def _budget_unit(target: dict[str, Any], steps: np.ndarray, tokens: np.ndarray) -> str:
    if target.get("train_steps"):
        return "train_steps"
    if target.get("train_tokens"):
        return "train_tokens"
    return "train_steps" if np.all(np.isfinite(steps)) else "train_tokens"


def _run_curve(
    i: int,
    unit: str,
    Y: np.ndarray,
    steps: np.ndarray,
    tokens: np.ndarray,
    curves: Sequence[Any] | None,
    targets: list[str],
) -> tuple[np.ndarray, np.ndarray]:
    """(x, L) of run ``i`` in ``unit``: its curve points and its final metrics, sorted by x."""
    per_step = (
        tokens[i] / steps[i]
        if np.isfinite(tokens[i]) and np.isfinite(steps[i]) and steps[i] > 0
        else np.nan
    )
    xs, rows = [], []
    for step, losses in curves[i] if curves is not None and i < len(curves) and curves[i] else []:
        x = float(step) if unit == "train_steps" else float(step) * per_step
        if not np.isfinite(x) or x <= 0:
            continue
        if isinstance(losses, dict):
            rows.append([float(losses.get(t, np.nan)) for t in targets])
        else:
            rows.append([float(v) for v in np.atleast_1d(losses)])
        xs.append(x)
    final = steps[i] if unit == "train_steps" else tokens[i]
    if np.isfinite(final) and final > 0 and not any(np.isclose(final, x) for x in xs):
        xs.append(float(final))
        rows.append(list(Y[i]))
    if not xs:
        return np.zeros(0), np.zeros((0, len(targets)))
    order = np.argsort(xs)
    return np.asarray(xs)[order], np.asarray(rows, dtype=float)[order]


def _steps_law(
    x: np.ndarray,
    L: np.ndarray,
    *,
    fit_from: float,
    random_state: int | None,
    upto: float | None = None,
) -> tuple[PowerLawFit, int]:
    inside = np.ones(x.size, dtype=bool) if upto is None else x <= upto * (1 + 1e-9)
    xmax = x[inside].max() if inside.any() else 0.0
    keep = inside & (x >= fit_from * xmax) & np.all(np.isfinite(L), axis=1)
    n_pts = int(keep.sum())
    if n_pts < 3:
        raise ScaleError(
            f"a steps law needs at least 3 curve points from a third of the run on, got {n_pts}"
        )
    holdout = min(STEPS_HOLDOUT, max(0, n_pts // 3))
    return fit_steps_law(x[keep], L[keep], holdout=holdout, random_state=random_state), n_pts


def fit_run_steps_law(
    x: Any,
    L: Any,
    *,
    upto: float | None = None,
    fit_from: float = FIT_FROM,
    random_state: int | None = 0,
) -> PowerLawFit:
    """The steps law of one run as the pipeline fits it (points from ``fit_from`` of the
    budget on, up to ``upto``; the last checkpoints held out for selection): the benchmark's
    "leave the longest steps out" uses exactly this."""
    x = np.asarray(x, dtype=float)
    L = np.asarray(L, dtype=float)
    if L.ndim == 1:
        L = L[:, None]
    return _steps_law(x, L, fit_from=fit_from, random_state=random_state, upto=upto)[0]


def _stats(v: list[float]) -> dict[str, float | None]:
    a = np.asarray([x for x in v if x is not None and np.isfinite(x)], dtype=float)
    if a.size == 0:
        return {"median": None, "min": None, "max": None}
    return {"median": float(np.median(a)), "min": float(a.min()), "max": float(a.max())}


def prepare_at_scale(
    X: Any,
    Y: Any,
    *,
    targets: list[str],
    target_scale: dict[str, Any] | None = None,
    model_params: Any = None,
    steps: Any = None,
    tokens: Any = None,
    curves: Sequence[Any] | None = None,
    fit_from: float = FIT_FROM,
    truncate_at: float | None = None,
    random_state: int | None = 0,
    progress: ProgressFn | None = None,
    law_cache: dict | None = None,
) -> ScaledData:
    """The data an estimator is fitted on to answer at ``target_scale`` (module docstring).

    Parameters
    ----------
    X, Y : runs' mixtures (n, K) and final metrics (n, m), metric columns named by ``targets``.
    target_scale : ``{"model_params", "train_steps" | "train_tokens"}`` (missing entries are the
        runs' common value); ``None``: the runs' own scale, which they must share.
    model_params, steps, tokens : per-run scale (NaN/None unknown).
    curves : per run a list of ``(step, {metric: loss})`` (or None).
    truncate_at : budget beyond which curve points are ignored (cross-scale validation).
    progress : called after each steps-law fit; may raise :class:`mixopt.progress.Cancelled`.
    law_cache : a dict kept between calls on the same runs (several target budgets): each
        run's steps law is fitted once, whatever the target.

    Raises
    ------
    ScaleError
        With what to pass or filter when the runs and the target do not allow an answer.
    """
    X = np.asarray(X, dtype=float)
    Y = np.asarray(Y, dtype=float)
    if Y.ndim == 1:
        Y = Y[:, None]
    n = X.shape[0]
    P, S, T = _arr(model_params, n), _arr(steps, n), _arr(tokens, n)
    have = run_scales(P, S, T, n)
    target = {k: v for k, v in (target_scale or {}).items() if v}
    context_same = {"steps": S, "tokens": T, "model_params": P, "curves": curves}

    chain: list[dict[str, Any]]
    if not target:
        scale = _own_scale(have)
        chain = [{"law": "none", "note": "the runs' own scale: no extrapolation"}]
        return ScaledData(X, Y, mixture_groups(X), scale, chain, False, context_same)

    unit = _budget_unit(target, S, T)
    budgets = _arr(S if unit == "train_steps" else T, n)
    scale = _target_scale(target, have, budgets, unit)
    t_budget = scale[unit]
    t_params = scale["model_params"]
    need_steps = t_budget is not None and bool(
        np.any(~np.isclose(budgets, t_budget)) or truncate_at is not None
    )
    sizes = _distinct(P)
    need_size = t_params is not None and (
        len(sizes) > 1 or (sizes and not np.isclose(sizes[0], t_params))
    )
    if not need_steps and not need_size:
        chain = [{"law": "none", "note": "the target is the runs' own scale: no extrapolation"}]
        return ScaledData(X, Y, mixture_groups(X), scale, chain, False, context_same)
    if need_size:
        _check_sizes(P, sizes)

    # -- (a) steps law per run ---------------------------------------------------------------
    chain = []
    notes: list[str] = []
    groups = mixture_groups(X)
    steps_fit = _StepsFit(unit, t_budget, fit_from, truncate_at, random_state, law_cache)
    at_budget, per_run = _at_budget(
        X, Y, P, S, T, curves, targets, groups, steps_fit, need_steps, progress
    )
    report(progress, 0.9, "steps laws done")
    if need_steps:
        chain.append(
            {
                "law": "steps",
                "form": "L(S) = E + B / S^beta (per run, exponent shared across metrics)",
                "source": "Ye et al. 2024, Eq. 5; yegcjs/mixinglaws pipeline/steplaw.py",
                "unit": unit,
                "to": t_budget,
                "n_fits": len(per_run),
                "fit_points": (
                    f"from {fit_from:.3g} of each run's budget on; "
                    f"the last <= {STEPS_HOLDOUT} held out"
                ),
                "beta": _stats([r["beta"] for r in per_run]),
                "heldout_mae": _stats([r["heldout_mae"] for r in per_run]),
                "runs": per_run,
            }
        )

    # -- (b) size law per mixture ------------------------------------------------------------
    n_mix, m = int(groups.max()) + 1, Y.shape[1]
    mix_X = np.vstack([X[np.flatnonzero(groups == g)[0]] for g in range(n_mix)])
    if need_size:
        keep, Yout, entry = _size_law(
            at_budget, sizes, n_mix, m, t_params, random_state, progress, notes
        )
        chain.append(entry)
        mix_X = mix_X[keep]
    else:
        Yout = np.full((n_mix, m), np.nan)
        for (g, _sz), ps in at_budget.items():
            Yout[g] = np.mean(ps, axis=0)
    report(progress, 1.0, "extrapolated")
    return ScaledData(
        mix_X,
        Yout,
        np.arange(mix_X.shape[0]),
        scale,
        chain,
        True,
        {"steps": None, "tokens": None, "model_params": None, "curves": None},
        notes,
    )


def _own_scale(have: dict[str, list[float]]) -> dict[str, Any]:
    """The runs' common scale; :class:`ScaleError` when they span several."""
    if (
        len(have["model_params"]) > 1
        or len(have["train_steps"]) > 1
        or len(have["train_tokens"]) > 1
    ):
        raise ScaleError(
            f"runs span several scales (model_params {have['model_params']}, train_steps "
            f"{have['train_steps']}, train_tokens {have['train_tokens']}); "
            "pass target_scale to answer at "
            "one scale through the scaling laws, or filter the runs by scale (run_filter)"
        )
    return {k: (have[k][0] if have[k] else None) for k in ("model_params", *BUDGET_KEYS)}


def _target_scale(
    target: dict[str, Any], have: dict[str, list[float]], budgets: np.ndarray, unit: str
) -> dict[str, Any]:
    """The target scale, its missing entries filled with the runs' common value."""
    scale = {
        "model_params": target.get("model_params"),
        "train_steps": target.get("train_steps"),
        "train_tokens": target.get("train_tokens"),
    }
    if scale["model_params"] is None:
        if len(have["model_params"]) > 1:
            raise ScaleError(
                f"runs have {len(have['model_params'])} model sizes; give target_scale.model_params"
            )
        scale["model_params"] = have["model_params"][0] if have["model_params"] else None
    if scale[unit] is None:
        b = _distinct(budgets)
        if len(b) > 1:
            raise ScaleError(f"runs have {len(b)} budgets ({unit}: {b}); give target_scale.{unit}")
        scale[unit] = b[0] if b else None
    return scale


def _check_sizes(P: np.ndarray, sizes: list[float]) -> None:
    if not sizes or np.any(~np.isfinite(P)):
        raise ScaleError(
            "every run needs model_params (non-embedding parameters) to extrapolate to "
            "target_scale.model_params"
        )
    if len(sizes) < MIN_SIZES_FOR_SIZE_LAW:
        raise ScaleError(
            f"a size law needs runs at >= {MIN_SIZES_FOR_SIZE_LAW} model sizes, the runs have "
            f"{len(sizes)} ({sizes}); give target_scale.model_params equal to the runs' size"
        )


@dataclass
class _StepsFit:
    """Settings of the per-run steps law (a cache shared between calls on the same runs)."""

    unit: str
    to: float
    fit_from: float
    truncate_at: float | None
    random_state: int | None
    cache: dict | None


def _fit_run_steps(i: int, x: np.ndarray, L: np.ndarray, sf: _StepsFit) -> tuple[PowerLawFit, int]:
    if x.size == 0:
        raise ScaleError(f"run #{i} has no {sf.unit} and no loss curve: the steps law needs one")
    key = (sf.unit, sf.truncate_at, tuple(np.round(x, 6)), tuple(np.round(L.ravel(), 12)))
    if sf.cache is not None and key in sf.cache:
        return sf.cache[key]
    try:
        out = _steps_law(
            x, L, fit_from=sf.fit_from, random_state=sf.random_state, upto=sf.truncate_at
        )
    except ScaleError as exc:
        raise ScaleError(
            f"run #{i}: {exc} (give runs loss curves, or target the runs' budget)"
        ) from None
    if sf.cache is not None:
        sf.cache[key] = out
    return out


def _at_budget(
    X: np.ndarray,
    Y: np.ndarray,
    P: np.ndarray,
    S: np.ndarray,
    T: np.ndarray,
    curves: Any,
    targets: list[str],
    groups: np.ndarray,
    sf: _StepsFit,
    need_steps: bool,
    progress: ProgressFn | None,
) -> tuple[dict[tuple[int, float], list[np.ndarray]], list[dict[str, Any]]]:
    """Each run's losses at the target budget (its steps law's prediction, or its own losses
    without ``need_steps``), grouped by ``(mixture, size)``; and the per-run law reports."""
    n = X.shape[0]
    size_of = np.where(np.isfinite(P), P, -1.0)
    at_budget: dict[tuple[int, float], list[np.ndarray]] = {}
    per_run = []
    for i in range(n):
        report(progress, 0.9 * i / n, f"steps law {i + 1}/{n}")
        x, L = _run_curve(i, sf.unit, Y, S, T, curves, targets)
        if need_steps:
            law, n_pts = _fit_run_steps(i, x, L, sf)
            pred = law.predict(sf.to)[0]
            per_run.append(
                {
                    "run_index": i,
                    "mixture": int(groups[i]),
                    "model_params": _clean(P[i]),
                    "beta": float(law.alpha[0]),
                    "E": law.E.tolist(),
                    "B": law.B.tolist(),
                    "points": n_pts,
                    "heldout_points": law.n_heldout,
                    "heldout_mae": _clean(law.heldout_mae),
                    "at_target": pred.tolist(),
                }
            )
        else:
            pred = Y[i]
        at_budget.setdefault((int(groups[i]), float(size_of[i])), []).append(
            np.asarray(pred, dtype=float)
        )
    return at_budget, per_run


def _size_law(
    at_budget: dict[tuple[int, float], list[np.ndarray]],
    sizes: list[float],
    n_mix: int,
    m: int,
    t_params: float,
    random_state: int | None,
    progress: ProgressFn | None,
    notes: list[str],
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """The size law across model sizes per mixture, extrapolated to ``t_params``: the mixtures
    kept, their losses at the target and the chain entry."""
    grid = np.full((len(sizes), n_mix, m), np.nan)
    for (g, sz), ps in at_budget.items():
        grid[sizes.index(sz), g] = np.mean(ps, axis=0)
    have_sizes = np.isfinite(grid[:, :, 0]).sum(axis=0)
    keep = have_sizes >= MIN_SIZES_FOR_SIZE_LAW
    if not keep.any():
        raise ScaleError(
            f"no mixture was run at >= {MIN_SIZES_FOR_SIZE_LAW} model sizes: the size law "
            "needs each mixture at several sizes"
        )
    if (~keep).any():
        notes.append(
            f"{int((~keep).sum())} mixtures run at fewer than {MIN_SIZES_FOR_SIZE_LAW} sizes were "
            "left out (the size law needs them at several sizes)"
        )
    flat = grid[:, keep, :].reshape(len(sizes), -1)
    holdout = 1 if len(sizes) > MIN_SIZES_FOR_SIZE_LAW else 0
    report(progress, 0.92, "size law")
    law = fit_size_law(np.asarray(sizes), flat, holdout=holdout, random_state=random_state)
    Yx = law.predict(t_params)[0].reshape(int(keep.sum()), m)
    Ek, Bk = law.E.reshape(-1, m), law.B.reshape(-1, m)
    entry = {
        "law": "size",
        "form": "L(N) = E + A / N^alpha (per mixture and metric, exponent shared)",
        "source": "Ye et al. 2024, Eq. 5; yegcjs/mixinglaws pipeline/sizelaw.py",
        "sizes": sizes,
        "to": t_params,
        "alpha": float(law.alpha[0]),
        "heldout": "the largest size" if holdout else "none (3 sizes: all used for fitting)",
        "heldout_mae": _clean(law.heldout_mae),
        "n_mixtures": int(keep.sum()),
        "mixtures": [
            {"E": Ek[j].tolist(), "A": Bk[j].tolist(), "at_target": Yx[j].tolist()}
            for j in range(int(keep.sum()))
        ],
    }
    return keep, Yx, entry


def cross_scale_validate(
    fit_predict: Callable[[np.ndarray, np.ndarray], Callable[[np.ndarray], np.ndarray]] | None,
    X: Any,
    Y: Any,
    *,
    targets: list[str],
    objective_weights: Any = None,
    model_params: Any = None,
    steps: Any = None,
    tokens: Any = None,
    curves: Sequence[Any] | None = None,
    random_state: int | None = 0,
    progress: ProgressFn | None = None,
    _prepared: dict | None = None,
) -> dict[str, Any]:
    """ "Fit on the smaller, predict the largest": how well the pipeline + an estimator extrapolate.

    With >= 4 model sizes the runs of the largest size are held out and the others (>= 3 sizes)
    are extrapolated to it, at each held-out run's own budget. With one size and loss curves,
    every curve is cut at half its budget and the steps law extrapolates to the full budget.
    ``fit_predict(X, Y)`` fits an estimator and returns its predict function (objective).

    Returns ``{"status": "ok", "mode", "fit_on", "predict", "n", "spearman", "mae",
    "mean_rel_error", "predictions"}`` or ``{"status": "untested", "reason"}``. ``_prepared``
    caches the extrapolated data between calls for several estimators (auto).
    """
    X = np.asarray(X, dtype=float)
    Y = np.asarray(Y, dtype=float)
    if Y.ndim == 1:
        Y = Y[:, None]
    n = X.shape[0]
    w = objective_vector(objective_weights, Y.shape[1])
    P, S, T = _arr(model_params, n), _arr(steps, n), _arr(tokens, n)
    sizes = _distinct(P)
    unit = "train_steps" if np.all(np.isfinite(S)) else "train_tokens"
    budgets = S if unit == "train_steps" else T
    cache = _prepared if _prepared is not None else {}
    if len(sizes) >= MIN_SIZES_FOR_SIZE_LAW + 1 and np.all(np.isfinite(P)):
        held = np.isclose(P, sizes[-1])
        mode = "size"
        jobs: list[tuple[np.ndarray, dict[str, float | None], float | None]] = []
        for b in sorted({float(v) for v in budgets[held] if np.isfinite(v)}):
            jobs.append((held & np.isclose(budgets, b), {"model_params": sizes[-1], unit: b}, None))
        train = ~held
        fit_on = f"{int(train.sum())} runs at {sizes[:-1]} parameters"
    elif len(sizes) <= 1 and curves is not None and any(curves) and np.all(np.isfinite(budgets)):
        mode = "budget"
        half = {float(b): 0.5 * float(b) for b in budgets}
        train = np.ones(n, dtype=bool)
        held = np.ones(n, dtype=bool)
        jobs = [
            (np.isclose(budgets, b), {"model_params": sizes[0] if sizes else None, unit: b}, h)
            for b, h in sorted(half.items())
        ]
        fit_on = "every run's curve up to half its budget"
    else:
        reason = (
            "runs have one scale and no loss curves"
            if len(sizes) <= 1
            else f"runs have {len(sizes)} model sizes; holding out the largest needs >= "
            f"{MIN_SIZES_FOR_SIZE_LAW + 1} (a size law on >= {MIN_SIZES_FOR_SIZE_LAW})"
        )
        return {"status": "untested", "reason": f"extrapolation untested: {reason}"}
    actual, pred, idx = [], [], []
    for j, (rows, tscale, cut) in enumerate(jobs):
        key = (mode, tuple(sorted((k, v) for k, v in tscale.items() if v)), cut)
        if key not in cache:
            tr = np.flatnonzero(train)
            try:
                cache[key] = prepare_at_scale(
                    X[tr],
                    Y[tr],
                    targets=targets,
                    target_scale=tscale,
                    model_params=P[tr],
                    steps=S[tr],
                    tokens=T[tr],
                    curves=[curves[int(i)] for i in tr] if curves is not None else None,
                    truncate_at=cut,
                    random_state=random_state,
                    law_cache=cache.setdefault("_laws", {}),
                    progress=scaled(progress, j / len(jobs), (j + 1) / len(jobs)),
                )
            except ScaleError as exc:
                cache[key] = exc
        prep = cache[key]
        if isinstance(prep, ScaleError):
            return {"status": "untested", "reason": f"extrapolation untested: {prep}"}
        if fit_predict is None:
            continue
        f = fit_predict(prep.X, prep.Y)
        hi = np.flatnonzero(rows)
        pred.extend(np.ravel(f(X[hi])).tolist())
        actual.extend((Y[hi] @ w).tolist())
        idx.extend(hi.tolist())
    if fit_predict is None:
        return {"status": "prepared"}
    a, p = np.asarray(actual), np.asarray(pred)
    m = fidelity_metrics(a, p)
    return {
        "status": "ok",
        "mode": mode,
        "fit_on": fit_on,
        "predict": (
            f"{len(a)} held-out runs at their own scale "
            f"({'largest size' if mode == 'size' else 'full budget'})"
        ),
        "n": int(a.size),
        "spearman": m["spearman"],
        "pearson": m["pearson"],
        "mae": m["mae"],
        "mean_rel_error": float(np.mean(np.abs(p - a) / np.abs(a))) if a.size else None,
        "max_rel_error": float(np.max(np.abs(p - a) / np.abs(a))) if a.size else None,
        "predictions": [
            {"run_index": int(i), "actual": float(x), "predicted": float(y)}
            for i, x, y in zip(idx, a, p, strict=True)
        ],
    }
