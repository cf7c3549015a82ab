"""Fidelity of an estimator: k-fold cross-validated agreement between predicted and true
objective on held-out runs.

Metrics (per fold and pooled over all held-out predictions):

* ``spearman``: rank correlation, RegMix's headline metric (Liu et al. 2024, Sec. 4.1);
* ``pearson``: linear correlation;
* ``mae``: mean absolute error;
* ``r2``: ``1 - SS_res / SS_tot``;
* ``regret``: top-1 regret among held-out runs, ``y[argmin(pred)] - min(y)`` (0 when the
  estimator's best-ranked held-out run is truly the best).

A metric that is undefined (fewer than 2 runs, or constant values for a correlation) is
``None``. Works with any registered estimator: each fold fits ``estimator.clone()``.

Folds are grouped by mixture (:func:`group_kfold_indices`): replicates of one mixture (several
seeds) stay in the same fold, so a held-out mixture was never seen in training; splitting them
would let an interpolating model "predict" a run from its own replicate.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.stats import pearsonr, spearmanr

from mixopt.mixing.base import MixingEstimator
from mixopt.mixing.objective import objective_vector
from mixopt.progress import ProgressFn, report


def _objective_weights(n_targets: int, objective_weights: Any) -> np.ndarray:
    return objective_vector(objective_weights, n_targets)


def fidelity_metrics(actual: Any, predicted: Any) -> dict[str, float | None]:
    """Spearman, Pearson, MAE, R^2 and top-1 regret of ``predicted`` against ``actual``."""
    a = np.asarray(actual, dtype=float).ravel()
    p = np.asarray(predicted, dtype=float).ravel()
    if a.size != p.size:
        raise ValueError("actual and predicted differ in length")
    out: dict[str, float | None] = {
        "n": int(a.size),
        "spearman": None,
        "pearson": None,
        "mae": None,
        "r2": None,
        "regret": None,
    }
    if a.size == 0:
        return out
    out["mae"] = float(np.mean(np.abs(a - p)))
    out["regret"] = float(a[int(np.argmin(p))] - a.min())
    if a.size >= 2:
        ss_tot = float(np.sum((a - a.mean()) ** 2))
        if ss_tot > 0:
            out["r2"] = float(1.0 - np.sum((a - p) ** 2) / ss_tot)
        if np.ptp(a) > 0 and np.ptp(p) > 0:
            out["spearman"] = float(spearmanr(a, p)[0])
            out["pearson"] = float(pearsonr(a, p)[0])
    return out


def slice_context(context: dict[str, Any], idx: np.ndarray, n: int) -> dict[str, Any]:
    """Per-run context entries (length ``n``: steps, tokens, params, curves) follow the fold."""
    out = {}
    for k, v in context.items():
        if (
            k in ("steps", "tokens", "params", "model_params", "curves")
            and v is not None
            and len(v) == n
        ):
            out[k] = [v[i] for i in idx] if isinstance(v, list) else np.asarray(v)[idx]
        else:
            out[k] = v
    return out


def kfold_indices(n: int, n_folds: int = 5, random_state: int | None = 0) -> list[np.ndarray]:
    """Seeded shuffled k-fold split of ``range(n)`` into test index arrays."""
    k = max(2, min(int(n_folds), n))
    perm = np.random.default_rng(random_state).permutation(n)
    return [np.sort(f) for f in np.array_split(perm, k)]


def mixture_groups(X: Any, decimals: int = 9) -> np.ndarray:
    """Group id per run: runs with the same mixture (rounded to ``decimals``) share one."""
    X = np.asarray(X, dtype=float)
    _, inv = np.unique(np.round(X, decimals), axis=0, return_inverse=True)
    return np.asarray(inv).ravel()


def group_kfold_indices(
    groups: Any, n_folds: int = 5, random_state: int | None = 0
) -> list[np.ndarray]:
    """Seeded k-fold split of runs whose groups never straddle two folds (test index arrays).

    Groups are shuffled, then assigned greedily (largest first) to the fold with the fewest
    runs, so folds stay balanced when groups differ in size. With one run per group this is a
    shuffled k-fold split.
    """
    groups = np.asarray(groups).ravel()
    uniq = np.unique(groups)
    k = max(2, min(int(n_folds), uniq.size))
    rng = np.random.default_rng(random_state)
    order = rng.permutation(uniq.size)
    sizes = np.array([np.sum(groups == uniq[i]) for i in order])
    order = order[np.argsort(-sizes, kind="stable")]
    folds: list[list[int]] = [[] for _ in range(k)]
    counts = np.zeros(k, dtype=int)
    for gi in order:
        members = np.flatnonzero(groups == uniq[gi])
        f = int(np.argmin(counts))
        folds[f].extend(members.tolist())
        counts[f] += members.size
    return [np.sort(np.asarray(f, dtype=int)) for f in folds if f]


def cross_validate(
    estimator: MixingEstimator,
    X: Any,
    Y: Any,
    *,
    objective_weights: Any = None,
    n_folds: int = 5,
    random_state: int | None = 0,
    groups: Any = None,
    progress: ProgressFn | None = None,
    **context: Any,
) -> dict[str, Any]:
    """k-fold CV of ``estimator`` on the objective ``Y @ objective_weights``, folds grouped by
    mixture (``groups``: one id per run; default :func:`mixture_groups` of ``X``).

    Held-out runs are predicted with :meth:`MixingEstimator.predict_runs` at their own scale
    (BiMix at each run's steps, not at its target step). ``progress`` is called after each
    fold and may raise :class:`mixopt.progress.Cancelled`.

    Returns
    -------
    dict with ``pooled`` (metrics over all held-out predictions), ``folds`` (metrics per fold),
    ``mean`` (per-fold metrics averaged), ``predictions`` (``[{run_index, actual, predicted,
    fold}]``, for a predicted-vs-actual plot) and ``n_folds``.
    """
    X = np.asarray(X, dtype=float)
    Y = np.asarray(Y, dtype=float)
    if Y.ndim == 1:
        Y = Y[:, None]
    n = X.shape[0]
    if n < 2:
        raise ValueError(f"cross-validation needs at least 2 runs, got {n}")
    w = _objective_weights(Y.shape[1], objective_weights)
    y = Y @ w
    pred = np.empty(n)
    fold_of = np.empty(n, dtype=int)
    groups = mixture_groups(X) if groups is None else np.asarray(groups).ravel()
    split = group_kfold_indices(groups, n_folds, random_state)
    for f, te in enumerate(split):
        report(progress, f / len(split), f"CV fold {f + 1}/{len(split)}")
        tr = np.setdiff1d(np.arange(n), te)
        est = estimator.clone().fit(X[tr], Y[tr], **slice_context(context, tr, n))
        P = np.atleast_2d(est.predict_runs(X[te], **slice_context(context, te, n)))
        pred[te] = P @ w
        fold_of[te] = f
    report(progress, 1.0, "CV done")
    return cv_result(y, pred, fold_of, groups)


def cv_result(y: Any, pred: Any, fold_of: Any, groups: Any) -> dict[str, Any]:
    """:func:`cross_validate`'s result from held-out predictions ``pred`` of the objective
    ``y`` (``fold_of``: the fold of each run; ``groups``: the mixture group of each run)."""
    y = np.asarray(y, dtype=float)
    pred = np.asarray(pred, dtype=float)
    fold_of = np.asarray(fold_of, dtype=int)
    n_folds = int(fold_of.max()) + 1 if fold_of.size else 0
    folds = [fidelity_metrics(y[fold_of == f], pred[fold_of == f]) for f in range(n_folds)]
    keys = ("spearman", "pearson", "mae", "r2", "regret")
    mean = {}
    for k in keys:
        vals = [float(v) for m in folds if (v := m[k]) is not None]
        mean[k] = float(np.mean(vals)) if vals else None
    return {
        "n_folds": len(folds),
        "grouped_by": "mixture",
        "n_groups": int(np.unique(np.asarray(groups)).size),
        "pooled": fidelity_metrics(y, pred),
        "mean": mean,
        "folds": folds,
        "predictions": [
            {
                "run_index": int(i),
                "actual": float(y[i]),
                "predicted": float(pred[i]),
                "fold": int(fold_of[i]),
            }
            for i in range(y.size)
        ],
    }
