"""Should a fit be trusted? Documented checks on parameters and held-out predictions.

A fit can converge and still be useless: on the public runs the mixing law's exponents reached
|t| > 1000 and predicted up to 1.9e92 nats; LightGBM with its defaults returned a constant model
at <= 32 runs and a negative CV rank correlation at 26 runs; a nested fit at 1B was marked
trusted although its own CV at that scale gave Spearman 0.26 and a negative R^2. Such a fit is
stored as succeeded with ``trusted: false`` and the reasons, and the service refuses
recommendations from it unless asked explicitly. The checks:

* **exponents at their bound** (mixing law and ``law_gp``; bounds in
  :mod:`mixopt.mixing.mixing_law`): the data did not determine the law;
* **held-out predictions outside the observed range**: a cross-validated prediction lies
  further than ``RANGE_MARGIN`` (50%) of the observed objective range below its minimum or
  above its maximum;
* **poor fidelity at the scale the fit answers at**: its CV there (for a fit through the
  scaling laws, the CV on the extrapolated losses) or its cross-scale check ("fit on the
  smaller, predict the largest") has R^2 <= 0 (it predicts held-out runs no better than their
  mean) or a Spearman rank correlation that is not significantly positive (one-sided test at
  ``RANK_ALPHA`` = 5%, Student's t approximation with n - 2 degrees of freedom: at n = 6 it
  needs rho >= 0.73, at n = 20 rho >= 0.38, at n = 100 rho >= 0.17). Whatever its same-scale
  CV, a fit that does not rank or predict at the target is not trusted. The threshold is a
  significance level, not a constant tuned on a data set;
* **constant model**: the predictions on the training runs do not vary
  (range < 1e-9 relative), e.g. trees that never split;
* **non-finite predictions** on the training runs.

Not blocking but always said (a line of ``reasons`` starting with ``"note:"``): how many of the
fit's mixtures the scaling laws left out or extrapolated on borrowed evidence (run at one model
size only), so that a fit that stands on 20 of 42 mixtures says so.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.stats import t as student_t

RANGE_MARGIN = 0.5
CONSTANT_RTOL = 1e-9
#: one-sided significance level of the "ranks better than chance" test
RANK_ALPHA = 0.05
#: a reason starting with this does not make the fit untrusted
NOTE = "note:"


def _inner(est: Any) -> Any:
    """The estimator that answers (a selecting one's choice: ``final_estimator``)."""
    return est.final_estimator() if hasattr(est, "final_estimator") else est


def rank_p_value(rho: float, n: int) -> float | None:
    """One-sided p-value of Spearman ``rho`` > 0 on ``n`` pairs (t approximation; None below
    4 pairs, where it cannot be told from chance)."""
    if n < 4 or not np.isfinite(rho):
        return None
    r = min(float(rho), 1.0 - 1e-12)
    t = r * np.sqrt((n - 2) / (1.0 - r * r))
    return float(student_t.sf(t, n - 2))


def _poor(label: str, n: int | None, rho: float | None, r2: float | None) -> list[str]:
    """Reasons why held-out ``rho``/``r2`` on ``n`` runs show a fit that does not transfer."""
    out = []
    if rho is not None and rho < 0:
        out.append(f"negative {label} rank correlation ({rho:.3f})")
    elif rho is not None and n:
        p = rank_p_value(rho, int(n))
        if p is not None and p > RANK_ALPHA:
            out.append(
                f"{label} rank correlation {rho:.3f} on {int(n)} runs is not significantly "
                f"above 0 (one-sided p = {p:.2f} > {RANK_ALPHA:g})"
            )
    if r2 is not None and r2 <= 0:
        out.append(
            f"{label} R^2 {r2:.3f} <= 0: it predicts the held-out runs no better than their mean"
        )
    return out


def _r2(predictions: list[dict] | None) -> float | None:
    pairs = [
        (p["actual"], p["predicted"])
        for p in predictions or []
        if p.get("actual") is not None and p.get("predicted") is not None
    ]
    if len(pairs) < 2:
        return None
    a, q = np.asarray(pairs, dtype=float).T
    ss = float(np.sum((a - a.mean()) ** 2))
    return None if ss <= 0 else float(1.0 - np.sum((a - q) ** 2) / ss)


def _range_check(fidelity: dict, y: np.ndarray) -> list[str]:
    lo, hi = float(y.min()), float(y.max())
    margin = RANGE_MARGIN * max(hi - lo, 1e-6 * max(1.0, abs(lo)))
    preds = np.array(
        [
            p["predicted"]
            for p in fidelity.get("predictions") or []
            if p.get("predicted") is not None
        ],
        dtype=float,
    )
    if not preds.size:
        return []
    out = (preds < lo - margin) | (preds > hi + margin) | ~np.isfinite(preds)
    if not out.any():
        return []
    worst = preds[out][np.argmax(np.abs(np.nan_to_num(preds[out], nan=np.inf) - (lo + hi) / 2))]
    return [
        f"{int(out.sum())} held-out prediction(s) outside the observed range "
        f"[{lo:.4g}, {hi:.4g}] by more than {RANGE_MARGIN:.0%} of it (worst {worst:.4g})"
    ]


def assess(
    estimator: Any,
    fidelity: dict | None,
    y_observed: Any,
    train_predictions: Any,
    cross_scale: dict | None = None,
    *,
    caveats: list[str] | None = None,
) -> tuple[bool, list[str]]:
    """``(trusted, reasons)`` for a fitted estimator (see the module docstring).

    ``caveats``: what the scaling laws did to the runs (mixtures left out, or run at one size),
    each said in a non-blocking ``"note: ..."`` reason."""
    reasons: list[str] = []
    est = _inner(estimator)
    at_bound = getattr(est, "at_bound_", None)
    if at_bound is not None and np.any(at_bound):
        reasons.append(
            f"{int(np.sum(at_bound))} target(s) have mixing-law exponents at their bound "
            "(the runs do not determine the law)"
        )
    y = np.asarray(y_observed, dtype=float).ravel()
    p_train = np.asarray(train_predictions, dtype=float).ravel()
    if p_train.size and not np.all(np.isfinite(p_train)):
        reasons.append("non-finite predictions on the training runs")
    elif p_train.size > 1 and np.ptp(p_train) <= CONSTANT_RTOL * max(
        1.0, float(np.abs(p_train).mean())
    ):
        reasons.append("constant model: the same prediction for every run")
    if fidelity and y.size:
        reasons += _range_check(fidelity, y)
        pooled = fidelity.get("pooled") or {}
        reasons += _poor(
            "cross-validated", pooled.get("n"), pooled.get("spearman"), pooled.get("r2")
        )
    if cross_scale and cross_scale.get("status") == "ok":
        reasons += _poor(
            "cross-scale",
            cross_scale.get("n"),
            cross_scale.get("spearman"),
            _r2(cross_scale.get("predictions")),
        )
    trusted = not reasons
    reasons += [f"{NOTE} {c}" for c in caveats or []]
    return trusted, reasons
