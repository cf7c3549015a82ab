"""Recommendations that survive refitting, and the support of the runs (issue 23, items 6-7).

An optimiser goes where the fit is most optimistic: a demo fit that ranked its runs well
recommended a mixture that then lost to uniform, and ``law_gp`` or ``regmix_linear`` fits
recommended 67-100% of a domain no run gave more than 2-6%. Two guards:

* **Bootstrap survival.** ``n_boot`` refits of the chosen estimator on resamples of the runs
  (with replacement; Efron & Tibshirani 1993, Ch. 6) each predict the recommended mixture and
  the baseline it should beat (the ``reference`` when given, else the prior: the natural
  mixture when the domains' token counts are known). ``share_beating`` is the share of refits
  under which the recommendation is still predicted better; the refits' spread of the gain is
  reported with it.
* **Robust recommendation** (``robust=True``, the default for smooth estimators): the average
  of the refits' argmins (bagging, Breiman 1996, applied to the optimiser's answer), projected
  back onto the constraints. An argmin that only one fit believes in is averaged away; a
  recommendation every refit agrees on is kept. Unless ``allow_extrapolation`` (or a
  ``trust_region``), each refit's argmin is searched within :func:`support_bound`: the average
  of argmins spread over rare domains would otherwise leave the support where no single one
  did (RegMix, 512 runs, ``mixing_law``: enron_emails at 0.100 against a bound of 0.098).
* **Support.** A weight more than ``SUPPORT_FACTOR`` times the largest weight any run gave that
  domain (plus ``SUPPORT_TOL``) is a recommendation the runs cannot vouch for: it is refused
  (:class:`OffSupportError`) unless ``allow_extrapolation`` is asked for (or a ``trust_region``
  bounds the search). ``SUPPORT_FACTOR`` (3) is chosen in ``bench/robust.py`` on every setting
  at once (RegMix 17 domains at 1M, Data Mixing Laws 5Mix at four sizes and 3Mix at 410M):
  held-out runs beyond the training runs' largest weight are predicted with an error that grows
  with the ratio (median error over the in-support error, worst setting: 1.19 up to 1.5x,
  1.95 up to 2x, 1.68 up to 3x, 2.67 up to 5x; pooled beyond 5x: 4.4); the factor is the
  largest ratio at which every setting stays within twice its in-support error.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from mixopt.progress import ProgressFn, report

__all__ = [
    "ROBUST_BY_DEFAULT",
    "SUPPORT_FACTOR",
    "SUPPORT_TOL",
    "OffSupportError",
    "bootstrap_refits",
    "check_support",
    "robust_mixture",
    "support_bound",
    "survival",
]

#: a weight may reach this many times the largest weight the runs gave its domain (bench/robust.py)
SUPPORT_FACTOR = 3.0
#: plus this absolute slack (the support flag's tolerance: numerical dust, tiny domains)
SUPPORT_TOL = 0.02
#: a recommendation without ``robust`` given is robust (smooth estimators, runs and n_boot >= 2)
ROBUST_BY_DEFAULT = True


class OffSupportError(ValueError):
    """A recommendation puts weight where no run went: refused unless extrapolation is allowed."""


def support_bound(X: np.ndarray) -> np.ndarray:
    """The largest weight per domain a recommendation may give without extrapolating:
    ``min(1, SUPPORT_FACTOR * max_run_weight + SUPPORT_TOL)``."""
    return np.minimum(SUPPORT_FACTOR * np.asarray(X, dtype=float).max(axis=0) + SUPPORT_TOL, 1.0)


def check_support(w: np.ndarray, X: np.ndarray | None, names: list[str]) -> None:
    """Raise :class:`OffSupportError` naming every domain of ``w`` beyond :func:`support_bound`
    (its recommended weight, the largest weight a run gave it, the bound and the options)."""
    if X is None or X.shape[0] == 0:
        return
    seen = X.max(axis=0)
    bound = support_bound(X)
    over = [i for i in np.argsort(-(w - bound)) if w[i] > bound[i] + 1e-9]
    if not over:
        return
    parts = [
        f"{names[i]} at {w[i]:.3f} (the largest weight any of the {X.shape[0]} runs gave it: "
        f"{seen[i]:.3f}; at most {bound[i]:.3f} = {SUPPORT_FACTOR:g} x {seen[i]:.3f} + "
        f"{SUPPORT_TOL:g} is supported)"
        for i in over
    ]
    raise OffSupportError(
        "the recommendation extrapolates beyond the runs: "
        + "; ".join(parts)
        + ". The fit's prediction there is not backed by any run: pass allow_extrapolation: true "
        "to accept it, or trust_region: d to search within d of the weights the runs tried"
    )


def bootstrap_refits(
    estimator: Any,
    X: Any,
    Y: Any,
    n_boot: int,
    random_state: int = 0,
    progress: ProgressFn | None = None,
    **context: Any,
) -> list[Any]:
    """``n_boot`` refits of the chosen estimator (for ``auto``, the one it kept: the selection
    is not repeated) on resamples of the runs; resamples it cannot fit are skipped."""
    Xt = np.atleast_2d(np.asarray(X, dtype=float))
    Yt = np.asarray(Y, dtype=float)
    Yt = Yt[:, None] if Yt.ndim == 1 else Yt
    rng = np.random.default_rng(random_state)
    chosen = estimator.final_estimator()
    # an estimator may keep discrete choices of its fit across refits (the GP: its input warp)
    proto = getattr(chosen, "refit_prototype", chosen.clone)
    out = []
    for b in range(int(n_boot)):
        report(progress, b / max(int(n_boot), 1), f"bootstrap refit {b + 1}/{int(n_boot)}")
        idx = rng.integers(0, Xt.shape[0], Xt.shape[0])
        try:
            out.append(proto().fit(Xt[idx], Yt[idx], **context))
        except (ValueError, np.linalg.LinAlgError):  # e.g. too few distinct runs in a resample
            continue
    return out


def survival(
    refits: list[Any],
    estimator: Any,
    w: np.ndarray,
    baseline: np.ndarray,
    weights: Any,
    against: str,
    interval: list[float] | None,
) -> dict[str, Any]:
    """How far the recommendation ``w`` beats ``baseline`` (labelled ``against``): the fit's
    predicted gain, whether that gain lies inside the recommendation's interval (half its
    width), and under the ``refits`` the share still predicting a gain with the gains' 5-95%
    range."""
    pair = np.vstack([baseline, w])
    f = np.ravel(estimator.predict_objective(pair, weights))
    gain = float(f[0] - f[1])
    half = None if interval is None else (float(interval[1]) - float(interval[0])) / 2
    out: dict[str, Any] = {
        "against": against,
        "baseline_mixture": baseline.tolist(),
        "predicted_gain": gain,
        "gain_within_interval": None if half is None else bool(gain <= half),
        "share_beating": None,
        "n_refits": len(refits),
        "gain_range": None,
    }
    if refits:
        F = np.array([np.ravel(r.predict_objective(pair, weights)) for r in refits])
        g = F[:, 0] - F[:, 1]  # baseline minus recommendation: > 0 when it still wins
        out["share_beating"] = float(np.mean(g > 0))
        out["gain_range"] = [float(np.quantile(g, 0.05)), float(np.quantile(g, 0.95))]
    return out


def robust_mixture(
    refits: list[Any],
    argmin: Callable[[Any], np.ndarray],
    project: Callable[[np.ndarray], np.ndarray],
    progress: ProgressFn | None = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """The average of the refits' argmins (each from ``argmin(refit)``), projected by
    ``project``; with the argmins' spread (mean L1 distance to the average)."""
    if len(refits) < 2:
        raise ValueError(
            f"robust recommendation needs at least 2 bootstrap refits, got {len(refits)} "
            "(raise n_boot, or give the fit's runs)"
        )
    W = []
    for b, r in enumerate(refits):
        report(progress, b / len(refits), f"argmin of refit {b + 1}/{len(refits)}")
        W.append(np.asarray(argmin(r), dtype=float))
    A = np.array(W)
    w = project(A.mean(axis=0))
    return w, {
        "method": f"mean of {len(refits)} bootstrap argmins",
        "n_refits": len(refits),
        "argmin_spread_l1": float(np.abs(A - w).sum(axis=1).mean()),
    }
