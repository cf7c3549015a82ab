"""Answers at a target scale: the nested use of scaling laws end to end (Ye et al. 2024, ICLR
2025, Sec. 4, Eq. 5; reference pipeline ``yegcjs/mixinglaws`` ``pipeline/run.sh``:
``steplaw.py`` -> ``sizelaw.py`` -> ``mixlaw.py``).

A *scale* is ``{"model_params", "train_steps" | "train_tokens"}``. Every fit answers at one:

* the runs' own, when they all share one model size and one budget and no target is given;
* a ``target_scale`` given by the user. When it lies beyond the runs:

  (a) a steps law ``L(S) = E + B / S^beta`` per run on its loss curve (the run's curve points
      plus its final metrics), fitted on the points from a third of the run on (the reference
      fits 10k-30k of 30k), the exponent shared by the runs of one model size (one joint fit
      per size, at most ``MAX_JOINT_RUNS`` runs), extrapolates each run to the target budget;
      replicates of a mixture and size are averaged;
  (b) a size law ``L(N) = E + A / N^alpha`` per mixture across model sizes (non-embedding
      parameters; the exponent shared by all mixtures and targets, the reference's
      ``tie_alpha="all"``, with a weakly informative prior, :mod:`mixopt.mixing.scaling`)
      extrapolates each mixture to the target size (needs >= 2 sizes; mixtures run at one size
      only get the shared exponent and the median size effect of the others instead of being
      dropped);
  (c) any estimator is then fitted on those extrapolated losses (one row per mixture) and
      predicts at the target.

:func:`prepare_at_scale` does (a)-(b) and returns the data for (c) with the *chain*: each law's
form, parameters and held-out error. :func:`cross_scale_validate` answers "fit on the smaller
scales, predict the largest": the runs of the largest size (or, with one size, the last half of
every curve) are held out, the pipeline runs on the rest, and the estimator's predictions are
compared with what those runs reached (Spearman, MAE, mean relative error).

Every extrapolated loss carries the chain's sd (``ScaledData.Y_sd``): each joint steps law is
refitted on its curves cut at the same extrapolation ratio it is asked for (or the largest the
curves allow, the error scaled by the log-ratio) and its error at the curves' ends is the
steps stage's relative sd; that sd is propagated linearly through the size law, and the size
law adds its own (with >= 3 sizes its error on the largest size when fitted without it,
scaled by the log-distance of the extrapolation; with 2 sizes the spread of its predictions
over the exponent prior's +-1 sd). :func:`chain_interval` adds the estimator's error.

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
from mixopt.mixing.scaling import SIZE_EXPONENT_PRIOR, PowerLawFit, fit_size_law, fit_steps_law
from mixopt.progress import ProgressFn, report, scaled

#: reference: steps law fitted from 10k of 30k steps, the last 5 checkpoints held out
FIT_FROM = 1.0 / 3.0
STEPS_HOLDOUT = 5
MIN_SIZES_FOR_SIZE_LAW = 2
#: most runs one joint steps-law fit takes (bounded memory and time)
MAX_JOINT_RUNS = 32
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
    own scale); ``notes`` what was left out and why; ``Y_sd`` (n, m) the sd of ``Y`` from the
    laws' chain (steps law's self-check propagated through the size law, plus the size law's
    own), None without extrapolation: :func:`chain_interval` adds the estimator's error.
    """

    X: np.ndarray
    Y: np.ndarray
    groups: np.ndarray
    scale: dict[str, Any]
    chain: list[dict[str, Any]]
    extrapolated: bool
    context: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    Y_sd: np.ndarray | None = None


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
    """The steps law of one run alone (points from ``fit_from`` of the budget on, up to
    ``upto``; the last checkpoints measure ``heldout_mae``). The pipeline fits the runs of one
    size together (:func:`fit_steps_laws`, the exponent shared)."""
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
    at_budget, per_run, steps_sd = _at_budget(
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
        keep, Yout, entry, Ysd = _size_law(
            at_budget, sizes, n_mix, m, t_params, random_state, progress, notes, steps_sd
        )
        chain.append(entry)
        mix_X = mix_X[keep]
    else:
        Yout = np.full((n_mix, m), np.nan)
        Ysd = np.zeros((n_mix, m))
        for (g, sz), ps in at_budget.items():
            Yout[g] = np.mean(ps, axis=0)
            Ysd[g] = np.nan_to_num(steps_sd.get((g, sz), 0.0)) * np.abs(Yout[g])
    rel = float(np.sqrt(np.mean(np.square(Ysd / np.abs(Yout))))) if Yout.size else 0.0
    # the chain's relative sd (steps law checked at its extrapolation ratio, propagated
    # through the size law, plus the size law's own): the estimator's error is added later
    chain[-1]["chain_rel_sd"] = _clean(rel)
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
        Ysd,
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


def _keep_points(x: np.ndarray, L: np.ndarray, sf: _StepsFit) -> np.ndarray:
    inside = (
        np.ones(x.size, dtype=bool) if sf.truncate_at is None else x <= sf.truncate_at * (1 + 1e-9)
    )
    xmax = x[inside].max() if inside.any() else 0.0
    return inside & (x >= sf.fit_from * xmax) & np.all(np.isfinite(L), axis=1)


def _joint_steps_law(
    curves: list[tuple[np.ndarray, np.ndarray]], random_state: int | None, cache: dict | None
) -> PowerLawFit:
    """One steps law for several runs' curves (each ``(x, L)`` already cut to its fit points),
    the exponent shared by all of them and their metrics; the last checkpoints of every curve
    held out for selection (``STEPS_HOLDOUT``, at most a third of the shortest curve)."""
    grid = np.unique(np.concatenate([x for x, _ in curves]))
    m = curves[0][1].shape[1]
    Yg = np.full((grid.size, len(curves) * m), np.nan)
    for j, (x, L) in enumerate(curves):
        Yg[np.searchsorted(grid, x), j * m : (j + 1) * m] = L
    key = (
        "joint",
        tuple(np.round(grid, 6)),
        tuple(np.round(np.nan_to_num(Yg, nan=-1).ravel(), 12)),
    )
    if cache is not None and key in cache:
        return cache[key]
    shortest = min(x.size for x, _ in curves)
    holdout = min(STEPS_HOLDOUT, max(0, shortest // 3))
    law = fit_steps_law(grid, Yg, holdout=holdout, random_state=random_state)
    if cache is not None:
        cache[key] = law
    return law


def _columns(law: PowerLawFit, cols: slice) -> PowerLawFit:
    return PowerLawFit(
        law.log_c[cols], law.log_k[cols], law.alpha[cols], law.huber, law.heldout_mae, law.n_heldout
    )


def _steps_groups(sizes: np.ndarray) -> list[list[int]]:
    """Runs fitted together: same model size, at most ``MAX_JOINT_RUNS`` per joint fit."""
    out = []
    for s in sorted(set(sizes.tolist())):
        idx = [int(i) for i in np.flatnonzero(sizes == s)]
        out += [idx[k : k + MAX_JOINT_RUNS] for k in range(0, len(idx), MAX_JOINT_RUNS)]
    return out


def _steps_self_check(
    curves: list[tuple[np.ndarray, np.ndarray]], to: float, random_state: int | None
) -> float | None:
    """Relative extrapolation error of the joint steps law at the ratio it is asked for:
    refit on each curve up to ``last / ratio`` and predict its last point (RMS over curves and
    metrics); when the curves are too short for that ratio, the largest ratio they allow, the
    error scaled by ``log(ratio) / log(ratio used)``. None: nothing to check."""
    ratio = max(to / max(float(x.max()) for x, _ in curves), 1.0)
    if ratio <= 1.0 + 1e-9:
        return 0.0
    for r in (ratio, 2.0, 1.5):
        r = min(r, ratio)
        cut = []
        for x, L in curves:
            k = x <= x.max() / r * (1 + 1e-9)
            if k.sum() < 3:
                break
            cut.append((x[k], L[k]))
        else:
            law = fit_steps_law(
                np.unique(np.concatenate([x for x, _ in cut])),
                _on_grid(cut),
                holdout=0,
                random_state=random_state,
            )
            m = curves[0][1].shape[1]
            errs = [
                (law.predict(x.max())[0, j * m : (j + 1) * m] - L[-1]) / L[-1]
                for j, (x, L) in enumerate(curves)
            ]
            rms = float(np.sqrt(np.mean(np.square(errs))))
            return rms * (np.log(ratio) / np.log(r) if r < ratio else 1.0)
    return None


def _on_grid(curves: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    grid = np.unique(np.concatenate([x for x, _ in curves]))
    m = curves[0][1].shape[1]
    Yg = np.full((grid.size, len(curves) * m), np.nan)
    for j, (x, L) in enumerate(curves):
        Yg[np.searchsorted(grid, x), j * m : (j + 1) * m] = L
    return Yg


def fit_steps_laws(
    curves: Sequence[tuple[Any, Any]],
    *,
    upto: float | None = None,
    fit_from: float = FIT_FROM,
    random_state: int | None = 0,
) -> list[PowerLawFit]:
    """The steps laws of several runs of one model size as the pipeline fits them: one joint
    fit, the exponent shared (points from ``fit_from`` of each run's budget on, up to ``upto``;
    the last checkpoints held out for selection). The benchmark's "leave the longest steps
    out" uses exactly this."""
    sf = _StepsFit("train_steps", 0.0, fit_from, upto, random_state, None)
    cut = []
    for i, (x, L) in enumerate(curves):
        x = np.asarray(x, dtype=float)
        L = np.asarray(L, dtype=float)
        L = L[:, None] if L.ndim == 1 else L
        k = _keep_points(x, L, sf)
        if k.sum() < 3:
            raise ScaleError(f"curve #{i}: a steps law needs at least 3 points, got {k.sum()}")
        cut.append((x[k], L[k]))
    m = cut[0][1].shape[1]
    out: list[PowerLawFit] = []
    for g in range(0, len(cut), MAX_JOINT_RUNS):
        law = _joint_steps_law(cut[g : g + MAX_JOINT_RUNS], random_state, None)
        out += [
            _columns(law, slice(j * m, (j + 1) * m))
            for j in range(len(cut[g : g + MAX_JOINT_RUNS]))
        ]
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
) -> tuple[dict[tuple[int, float], list[np.ndarray]], list[dict[str, Any]], dict]:
    """Each run's losses at the target budget (the steps law's prediction, or its own losses
    without ``need_steps``), grouped by ``(mixture, size)``; the per-run law reports; and the
    relative extrapolation sd of the steps law per ``(mixture, size)`` (its self-check)."""
    n = X.shape[0]
    size_of = np.where(np.isfinite(P), P, -1.0)
    at_budget: dict[tuple[int, float], list[np.ndarray]] = {}
    rel_sd: dict[tuple[int, float], float] = {}
    per_run: list[dict[str, Any]] = []
    if not need_steps:
        for i in range(n):
            at_budget.setdefault((int(groups[i]), float(size_of[i])), []).append(Y[i].copy())
        return at_budget, per_run, rel_sd
    pts = []
    for i in range(n):
        x, L = _run_curve(i, sf.unit, Y, S, T, curves, targets)
        if x.size == 0:
            raise ScaleError(
                f"run #{i} has no {sf.unit} and no loss curve: the steps law needs one"
            )
        k = _keep_points(x, L, sf)
        if k.sum() < 3:
            raise ScaleError(
                f"run #{i}: a steps law needs at least 3 curve points from a third of the run "
                f"on, got {int(k.sum())} (give runs loss curves, or target the runs' budget)"
            )
        pts.append((x[k], L[k]))
    m = Y.shape[1]
    done = 0
    for idx in _steps_groups(size_of):
        report(progress, 0.9 * done / n, f"steps laws {done + 1}-{done + len(idx)}/{n}")
        law = _joint_steps_law([pts[i] for i in idx], sf.random_state, sf.cache)
        sd_key = ("selfcheck", sf.to, id(law))
        sd = sf.cache.get(sd_key) if sf.cache is not None else None
        if sd is None:
            sd = _steps_self_check([pts[i] for i in idx], sf.to, sf.random_state)
            if sf.cache is not None and sd is not None:
                sf.cache[sd_key] = sd
        for j, i in enumerate(idx):
            run_law = _columns(law, slice(j * m, (j + 1) * m))
            pred = run_law.predict(sf.to)[0]
            key = (int(groups[i]), float(size_of[i]))
            at_budget.setdefault(key, []).append(np.asarray(pred, dtype=float))
            rel_sd[key] = float(sd) if sd is not None else float("nan")
            per_run.append(
                {
                    "run_index": i,
                    "mixture": int(groups[i]),
                    "model_params": _clean(P[i]),
                    "beta": float(run_law.alpha[0]),
                    "E": run_law.E.tolist(),
                    "B": run_law.B.tolist(),
                    "points": int(pts[i][0].size),
                    "heldout_points": law.n_heldout,
                    "heldout_mae": _clean(law.heldout_mae),
                    "rel_sd": _clean(sd),
                    "at_target": pred.tolist(),
                }
            )
        done += len(idx)
    per_run.sort(key=lambda r: r["run_index"])
    return at_budget, per_run, rel_sd


def _fill_one_size(
    grid: np.ndarray, law: PowerLawFit, fitted: np.ndarray, sizes: list[float], t_params: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """E, A and the prediction at ``t_params`` of every (mixture x metric) curve: the fitted
    ones from ``law``, the others (one size only) with the shared exponent and the median A of
    the fitted curves (the size effect of a typical mixture), E from their one size."""
    n_curves = grid.shape[1]
    E = np.full(n_curves, np.nan)
    A = np.full(n_curves, np.nan)
    E[fitted] = law.E
    A[fitted] = law.B
    alpha = float(law.alpha[0])
    a_med = float(np.median(law.B))
    N = np.asarray(sizes, dtype=float)
    for c in np.flatnonzero(~fitted):
        k = np.flatnonzero(np.isfinite(grid[:, c]))
        A[c] = a_med
        E[c] = float(np.mean(grid[k, c] - a_med / N[k] ** alpha))
    return E, A, E + A / float(t_params) ** alpha


def _size_law(
    at_budget: dict[tuple[int, float], list[np.ndarray]],
    sizes: list[float],
    n_mix: int,
    m: int,
    t_params: float,
    random_state: int | None,
    progress: ProgressFn | None,
    notes: list[str],
    steps_sd: dict[tuple[int, float], float] | None = None,
) -> tuple[np.ndarray, np.ndarray, dict[str, Any], np.ndarray]:
    """The size law across model sizes, extrapolated to ``t_params``: the mixtures kept, their
    losses at the target, the chain entry and the chain's sd of those losses (steps law's
    self-check propagated through the size law, plus the size law's own)."""
    grid = np.full((len(sizes), n_mix, m), np.nan)
    sgrid = np.zeros((len(sizes), n_mix))
    for (g, sz), ps in at_budget.items():
        grid[sizes.index(sz), g] = np.mean(ps, axis=0)
        if steps_sd:
            sgrid[sizes.index(sz), g] = steps_sd.get((g, sz), 0.0)
    have_sizes = np.isfinite(grid[:, :, 0]).sum(axis=0)
    two = have_sizes >= MIN_SIZES_FOR_SIZE_LAW
    if not two.any():
        raise ScaleError(
            f"no mixture was run at >= {MIN_SIZES_FOR_SIZE_LAW} model sizes: the size law "
            "needs some mixtures at several sizes"
        )
    keep = have_sizes >= 1
    if (~two & keep).any():
        notes.append(
            f"{int((~two & keep).sum())} mixtures run at one size only were extrapolated with "
            "the shared size exponent and the median size effect of the others"
        )
    flat = grid[:, keep, :].reshape(len(sizes), -1)
    fitted = np.repeat(two[keep], m)
    holdout = 1 if len(sizes) > 3 else 0
    report(progress, 0.92, "size law")
    law = fit_size_law(
        np.asarray(sizes), flat[:, fitted], holdout=holdout, random_state=random_state
    )
    E, A, pred = _fill_one_size(flat, law, fitted, sizes, t_params)
    Yx = pred.reshape(int(keep.sum()), m)
    sd = _size_sd(flat, fitted, sgrid[:, keep], law, sizes, t_params, random_state, m)
    Ek, Bk = E.reshape(-1, m), A.reshape(-1, m)
    entry = {
        "law": "size",
        "form": "L(N) = E + A / N^alpha (per mixture and metric, exponent shared)",
        "source": "Ye et al. 2024, Eq. 5; yegcjs/mixinglaws pipeline/sizelaw.py",
        "prior": "log alpha ~ N(log 0.34, 0.5^2) (Hoffmann et al. 2022)",
        "sizes": sizes,
        "to": t_params,
        "alpha": float(law.alpha[0]),
        "heldout": "the largest size" if holdout else "none (<= 3 sizes: all used for fitting)",
        "heldout_mae": _clean(law.heldout_mae),
        "n_mixtures": int(keep.sum()),
        "n_one_size": int((~two & keep).sum()),
        "rel_sd": _clean(float(np.sqrt(np.mean(np.square(sd / np.abs(Yx)))))),
        "mixtures": [
            {"E": Ek[j].tolist(), "A": Bk[j].tolist(), "at_target": Yx[j].tolist()}
            for j in range(int(keep.sum()))
        ],
    }
    return keep, Yx, entry, sd


def _size_sd(
    flat: np.ndarray,
    fitted: np.ndarray,
    srel: np.ndarray,
    law: PowerLawFit,
    sizes: list[float],
    t_params: float,
    random_state: int | None,
    m: int,
) -> np.ndarray:
    """sd (n_mixtures, m) of the losses at ``t_params`` from the chain: (i) the steps law's
    relative sd at each size, propagated linearly through the size law (finite differences);
    (ii) the size law's own: with >= 3 sizes, its error when the largest size is left out
    (refit on the others), scaled by the log-distance of the extrapolation; with 2 sizes, the
    prior on the exponent (predictions at ``alpha * exp(+-sd)``)."""
    N = np.asarray(sizes, dtype=float)
    n_curves = flat.shape[1]
    base = _fill_one_size(flat, law, fitted, sizes, t_params)[2]
    alpha = float(law.alpha[0])
    # (i) the steps law's error: the prediction's sensitivity to each size's input
    var = np.zeros(n_curves)
    for k in range(len(sizes)):
        dy = 1e-3
        bumped = flat.copy()
        bumped[k] += dy
        sens = (_refit_fixed_alpha(bumped, fitted, N, alpha, t_params) - base) / dy
        var += (sens * np.nan_to_num(np.repeat(srel[k], m) * np.abs(flat[k]))) ** 2
    # (ii) the size law's own error
    if len(sizes) >= 3:
        n_sub = np.isfinite(flat[:-1]).sum(axis=0)
        fit_sub = n_sub >= 2
        have = (n_sub >= 1) & np.isfinite(flat[-1])
        scale = np.log(t_params / N[-1]) / np.log(N[-1] / N[-2]) if t_params > N[-1] else 0.0
        own = np.zeros(n_curves)
        if fit_sub.any() and have.any() and scale > 0:
            sub = fit_size_law(N[:-1], flat[:-1][:, fit_sub], random_state=random_state)
            p = _fill_one_size(flat[:-1][:, have], _sub_law(sub, fit_sub, have), fit_sub[have],
                               sizes[:-1], N[-1])[2]  # fmt: skip
            rel = np.abs(p - flat[-1][have]) / np.abs(flat[-1][have])
            own = float(np.sqrt(np.mean(rel**2))) * scale * np.abs(base)
    else:
        lo = _refit_fixed_alpha(flat, fitted, N, alpha * np.exp(-SIZE_EXPONENT_PRIOR[1]), t_params)
        hi = _refit_fixed_alpha(flat, fitted, N, alpha * np.exp(SIZE_EXPONENT_PRIOR[1]), t_params)
        own = np.abs(hi - lo) / 2
    return np.sqrt(var + own**2).reshape(-1, m)


def _sub_law(law: PowerLawFit, fitted: np.ndarray, have: np.ndarray) -> PowerLawFit:
    """``law`` (over the ``fitted`` curves) restricted to the curves in ``have``."""
    sel = (np.cumsum(fitted) - 1)[np.flatnonzero(have & fitted)]
    return PowerLawFit(law.log_c[sel], law.log_k[sel], law.alpha[sel])


def _refit_fixed_alpha(
    flat: np.ndarray, fitted: np.ndarray, N: np.ndarray, alpha: float, t_params: float
) -> np.ndarray:
    """Predictions at ``t_params`` with the exponent fixed: E, A per curve by least squares
    (curves at one size: the median A of the others)."""
    x = N ** (-alpha)
    out = np.full(flat.shape[1], np.nan)
    As = []
    for c in np.flatnonzero(fitted):
        k = np.isfinite(flat[:, c])
        coef = np.polyfit(x[k], flat[k, c], 1)
        As.append(coef[0])
        out[c] = coef[1] + coef[0] * t_params ** (-alpha)
    a_med = float(np.median(As)) if As else 0.0
    for c in np.flatnonzero(~fitted):
        k = np.isfinite(flat[:, c])
        out[c] = float(np.mean(flat[k, c] - a_med * x[k])) + a_med * t_params ** (-alpha)
    return out


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


def chain_sd(scaling: dict[str, Any] | None) -> float | None:
    """The relative sd of the extrapolated losses a fit's laws carry (its ``scaling.chain``'s
    ``chain_rel_sd``); None when the fit does not extrapolate."""
    for entry in reversed((scaling or {}).get("chain") or []):
        v = entry.get("chain_rel_sd") if isinstance(entry, dict) else None
        if v is not None:
            return float(v)
    return None


def chain_interval(
    mean: Any, rel_sd: float | None, estimator_sd: Any, level: float = 0.9
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(lower, upper, sd)`` of a prediction at a target scale: the laws' chain (relative sd
    ``rel_sd`` of the extrapolated losses) and the estimator's own error (``estimator_sd``: its
    posterior sd, or its CV error as a sd) added in quadrature (independent stages), normal
    quantiles at ``level``. Calibrated on ``bench/transfer.py`` (leave the largest size out,
    pooled over settings)."""
    from scipy.stats import norm

    mu = np.asarray(mean, dtype=float).ravel()
    sd_chain = (rel_sd or 0.0) * np.abs(mu)
    sd_est = np.broadcast_to(np.nan_to_num(np.asarray(estimator_sd, dtype=float)), mu.shape)
    sd = np.sqrt(sd_chain**2 + sd_est**2)
    z = float(norm.ppf(0.5 + level / 2))
    return mu - z * sd, mu + z * sd, sd
